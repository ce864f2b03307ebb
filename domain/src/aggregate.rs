//! The shapes every aggregate and every event type share.

use std::fmt::{Debug, Display};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// A consistency boundary whose history is one event stream named `<CATEGORY>-<id>`.
///
/// `decide` is pure: it sees the current state and a command that already carries every outside
/// fact it needs (the time, a looked-up price, ids), and either rejects the command with a domain
/// error or returns the events that record what happened. `evolve` folds one event into the state
/// and never fails: an event is a fact that has already happened.
pub trait Aggregate {
    /// The stream category, e.g. `"order"`; streams are named `order-<id>`.
    const CATEGORY: &'static str;
    /// What tells one instance from another: a typed id, or the SKU for per-product streams.
    type Id: Display;
    /// Serialisable so that the command bus can weigh a cached state (its JSON size).
    type State: Default + Clone + Debug + Serialize;
    type Command: Debug + CommandName;
    type Event: Event;
    type Error: DomainError;

    fn decide(state: &Self::State, command: Self::Command)
    -> Result<Vec<Self::Event>, Self::Error>;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// The name of the stream that holds the history of instance `id`, `<CATEGORY>-<id>`.
    fn stream(id: &Self::Id) -> String {
        format!("{}-{id}", Self::CATEGORY)
    }

    /// Folds a history into a state.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::State::default(), Self::evolve)
    }
}

/// A command's kind as a short stable label (`place`, `mark_paid`): metrics and traces group
/// commands by it. Every command enum gets it by deriving `strum::IntoStaticStr` with
/// `serialize_all = "snake_case"`.
pub trait CommandName {
    fn command_name(&self) -> &'static str;
}

impl<T> CommandName for T
where
    for<'a> &'a T: Into<&'static str>,
{
    fn command_name(&self) -> &'static str {
        self.into()
    }
}

/// A domain rejection: something the caller asked for that the rules forbid. It is part of the
/// API (GraphQL `userErrors`), so it carries a stable machine-readable code and, where one input
/// is to blame, the name of that input.
pub trait DomainError: std::error::Error + Debug + Send + Sync + 'static {
    /// A stable SCREAMING_SNAKE_CASE code such as `INSUFFICIENT_STOCK`.
    fn code(&self) -> &'static str;
    /// The input field the error is about, if any (`"quantity"`, `"sku"`).
    fn field(&self) -> Option<&'static str> {
        None
    }
}

/// Why stored event data could not be turned back into a typed event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error(
        "event {event_type} has schema version {version}, newer than this build knows ({known})"
    )]
    FutureVersion { event_type: String, version: u16, known: u16 },
    #[error("event {event_type} v{version} cannot be upcast: {reason}")]
    Upcast { event_type: String, version: u16, reason: String },
    #[error("event {event_type} does not match its schema: {reason}")]
    Shape { event_type: String, reason: String },
}

/// A versioned, serialisable event type.
///
/// Implementors are enums with `#[serde(tag = "type", content = "data")]` whose variants are all
/// struct variants. The variant name is the event type stored in the envelope and `data` is the
/// JSON body. Every type has a schema version; when the shape of a variant changes, bump its
/// version in [`Event::schema_version`] and teach [`Event::upcast`] to turn the older JSON into
/// the current shape, so old events still load.
pub trait Event:
    Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static
{
    /// The stored name of this event's type, e.g. `"OrderPlaced"`.
    fn event_type(&self) -> &'static str;

    /// Every event type name this enum can decode.
    fn event_types() -> &'static [&'static str];

    /// The current schema version of `event_type`. Defaults to 1.
    fn schema_version(event_type: &str) -> u16 {
        let _ = event_type;
        1
    }

    /// Rewrites the JSON of `event_type` at schema `version` into the shape of `version + 1`.
    /// Called repeatedly until the data is current. The default knows no older versions.
    fn upcast_step(event_type: &str, version: u16, data: Value) -> Result<Value, String> {
        let _ = data;
        Err(format!("no upcaster from {event_type} v{version}"))
    }

    /// Serialises the event into (type, schema version, JSON data).
    fn encode(&self) -> (&'static str, u16, Value) {
        let event_type = self.event_type();
        let mut tagged = serde_json::to_value(self).expect("events serialise to JSON");
        let data = tagged
            .get_mut("data")
            .map(Value::take)
            .unwrap_or_else(|| Value::Object(Default::default()));
        (event_type, Self::schema_version(event_type), data)
    }

    /// Deserialises stored data, upcasting it from an older schema version first.
    fn decode(event_type: &str, version: u16, data: Value) -> Result<Self, DecodeError> {
        if !Self::event_types().contains(&event_type) {
            return Err(DecodeError::UnknownType(event_type.to_owned()));
        }
        let current = Self::schema_version(event_type);
        if version > current {
            return Err(DecodeError::FutureVersion {
                event_type: event_type.to_owned(),
                version,
                known: current,
            });
        }
        let mut data = data;
        let mut at = version.max(1);
        while at < current {
            data = Self::upcast_step(event_type, at, data).map_err(|reason| {
                DecodeError::Upcast { event_type: event_type.to_owned(), version: at, reason }
            })?;
            at += 1;
        }
        let tagged = serde_json::json!({ "type": event_type, "data": data });
        serde_json::from_value(tagged).map_err(|e| DecodeError::Shape {
            event_type: event_type.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Given/when/then tests for aggregates, without a database.
///
/// ```ignore
/// given::<Inventory>([StockReceived { .. }])
///     .when(InventoryCommand::Reserve { .. })
///     .then([StockReserved { .. }]);
/// ```
pub mod testing {
    use super::{Aggregate, DomainError, Event};

    pub struct Given<A: Aggregate> {
        state: A::State,
    }

    pub fn given<A: Aggregate>(history: impl IntoIterator<Item = A::Event>) -> Given<A> {
        let events: Vec<A::Event> = history.into_iter().collect();
        // Every event in a test history must also survive a round trip through its stored
        // form, so the tests double as serialisation tests.
        for e in &events {
            let (t, v, data) = e.encode();
            let back = A::Event::decode(t, v, data).expect("event round-trips");
            assert_eq!(&back, e, "event {t} does not round-trip through JSON");
        }
        Given { state: A::fold(events.iter()) }
    }

    pub struct When<A: Aggregate> {
        result: Result<Vec<A::Event>, A::Error>,
    }

    impl<A: Aggregate> Given<A> {
        pub fn when(self, command: A::Command) -> When<A> {
            When { result: A::decide(&self.state, command) }
        }

        pub fn state(&self) -> &A::State {
            &self.state
        }
    }

    impl<A: Aggregate> When<A> {
        #[track_caller]
        pub fn then(self, expected: impl IntoIterator<Item = A::Event>) {
            let expected: Vec<A::Event> = expected.into_iter().collect();
            match self.result {
                Ok(events) => assert_eq!(events, expected),
                Err(e) => panic!("expected events {expected:?}, got error {e:?}"),
            }
        }

        #[track_caller]
        pub fn then_error(self, expected_code: &str) {
            match self.result {
                Ok(events) => panic!("expected error {expected_code}, got events {events:?}"),
                Err(e) => assert_eq!(e.code(), expected_code, "wrong error: {e}"),
            }
        }

        /// The raw outcome, for assertions the helpers above do not cover.
        pub fn result(self) -> Result<Vec<A::Event>, A::Error> {
            self.result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Aggregate;
    use crate::cart::Cart;
    use crate::customer::Customer;
    use crate::inventory::Inventory;
    use crate::license::{License, LicensePool};
    use crate::notification::Notification;
    use crate::order::Order;
    use crate::payment::Payment;
    use crate::product::Product;
    use crate::*;

    /// Stored streams are found by name, so the typed names must be exactly the ones the ids
    /// and SKUs have always produced.
    #[test]
    fn stream_names_are_the_stored_ones() {
        let uuid = uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);
        let sku = Sku::parse("lap-13").unwrap();
        assert_eq!(Order::stream(&OrderId(uuid)), format!("order-{uuid}"));
        assert_eq!(Order::stream(&OrderId(uuid)), OrderId(uuid).stream());
        assert_eq!(Cart::stream(&CartId(uuid)), CartId(uuid).stream());
        assert_eq!(Payment::stream(&PaymentId(uuid)), PaymentId(uuid).stream());
        assert_eq!(Customer::stream(&CustomerId(uuid)), CustomerId(uuid).stream());
        assert_eq!(License::stream(&LicenseId(uuid)), LicenseId(uuid).stream());
        assert_eq!(Notification::stream(&NotificationId(uuid)), NotificationId(uuid).stream());
        assert_eq!(Product::stream(&sku), "product-LAP-13");
        assert_eq!(Product::stream(&sku), sku.product_stream());
        assert_eq!(Inventory::stream(&sku), sku.inventory_stream());
        assert_eq!(LicensePool::stream(&sku), sku.license_pool_stream());
    }
}
