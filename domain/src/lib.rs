//! Purser's pure core.
//!
//! Everything here is deterministic and synchronous: value types that cannot hold a bad value,
//! aggregates written as `decide(&state, command) -> Result<Vec<Event>, Error>` and
//! `evolve(state, &event) -> state`, and process managers written the same way. Anything that
//! needs the outside world (the clock, a price lookup, the payment gateway) is looked up by the
//! caller and passed in with the command.

/// Implements `event_type` and `event_types` inside an `impl Event for ...` block from the list
/// of the enum's variants. The match is exhaustive, so forgetting a variant fails to compile, and
/// the stored type name is always exactly the variant name.
macro_rules! event_names {
    ($($variant:ident),+ $(,)?) => {
        fn event_type(&self) -> &'static str {
            match self {
                $(Self::$variant { .. } => stringify!($variant),)+
            }
        }

        fn event_types() -> &'static [&'static str] {
            &[$(stringify!($variant)),+]
        }
    };
}

pub mod aggregate;
pub mod ids;
pub mod money;
pub mod values;

pub mod cart;
pub mod checkout;
pub mod customer;
pub mod events;
pub mod inventory;
pub mod license;
pub mod notification;
pub mod order;
pub mod payment;
pub mod product;

#[cfg(test)]
mod test_support;

pub use aggregate::{Aggregate, CommandName, DecodeError, DomainError, Event};
pub use events::AnyEvent;
pub use ids::*;
pub use money::{Currency, Money, MoneyError};
pub use values::*;
