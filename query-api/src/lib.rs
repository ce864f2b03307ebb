//! The GraphQL read side: shared schema types, queries over the read models, read-your-writes
//! waiting, and the context every resolver reads from.
//!
//! Resolvers here read only read-model tables (and, for subscriptions, the event log); they
//! never append events. Mutations live in `purser-command-api` and reuse these types.
//!
//! Per-object lookups (an order's lines, a line's product) go through the dataloaders of
//! [`loaders`], which a schema gets from [`loaders::with_loaders`].

pub mod analytics;
pub mod audit;
pub mod auth;
pub mod carts;
pub mod catalog;
pub mod checkout_status;
pub mod context;
pub mod customers;
pub mod loaders;
pub mod ops;
pub mod orders;
pub mod subscriptions;
pub mod trace;
pub mod types;

pub use context::ReadContext;
