//! The command side.
//!
//! Commands are handled by loading an aggregate's stream, deciding with the pure domain, and
//! appending the resulting events with the expected version ([`bus::CommandBus`]). Mutations
//! (GraphQL) validate input into domain value types, run commands and report domain
//! rejections as `userErrors`. Process managers run as projections that write their decisions
//! to an outbox ([`process`]); the dispatcher ([`outbox`]) sends them through [`actions`].

pub mod accounts;
pub mod actions;
pub mod bus;
pub mod carts;
pub mod catalog;
pub mod context;
pub mod deadlines;
pub mod failure;
pub mod gateway;
pub mod graphql;
pub mod licensing;
pub mod notifications;
pub mod orders;
pub mod outbox;
mod polling;
pub mod process;
pub mod retention;
pub mod sessions;
pub mod state_cache;
pub mod throttle;
pub mod trace;
pub mod webhooks;

pub use bus::{CommandBus, CommandError, Executed};
pub use context::CommandContext;
