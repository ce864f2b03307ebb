//! Purser's public integration events and the carriers that take them to other systems.
//!
//! Internal events (`OrderPlaced`, `StockReserved`, …) are free to change shape: they are
//! upcast on read and nobody outside Purser sees them. Integrators see [`IntegrationEvent`]s
//! instead: a small, documented set of types (`order.placed`, `payment.failed`,
//! `inventory.low`, …), each with its own version, a minimal payload and an id derived from
//! the internal event it came from, so a consumer that sees the same id twice knows it is the
//! same fact delivered again (every carrier is at-least-once).
//!
//! [`map`] turns one internal event into at most one integration event; it is pure, apart
//! from the per-SKU stock levels that `inventory.low` needs ([`stock`]).

pub mod amqp;
pub mod contract;
pub mod map;
pub mod stock;
pub mod webhooks;

pub use contract::{EventType, IntegrationEvent};
pub use map::Mapper;
