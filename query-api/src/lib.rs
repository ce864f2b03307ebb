//! The GraphQL read side: queries over the read models, the auditor's queries over the log,
//! and the order-status subscription.
//!
//! Resolvers here read only read-model tables (and, for the auditor and the subscription, the
//! event log); they never append events. Wire types, the viewer, errors and read-your-writes
//! come from `purser-api-core`, which the mutations in `purser-command-api` share; this crate
//! and that one never depend on each other.
//!
//! Per-object lookups (an order's lines, a line's product) go through the dataloaders of
//! [`loaders`], which a schema gets from [`loaders::with_loaders`].

pub mod analytics;
pub mod audit;
pub mod carts;
pub mod catalog;
pub mod checkout_status;
pub mod customers;
pub mod loaders;
pub mod ops;
pub mod orders;
pub mod subscriptions;
