//! The public contract: what an integration event looks like on the wire.
//!
//! ```json
//! {"id": "5b0f…", "type": "order.paid", "version": 1,
//!  "occurred_at": "2026-12-03T12:00:00Z", "correlation_id": "0193…",
//!  "key": "order-0193…", "data": {"order_id": "0193…", …}}
//! ```
//!
//! A type's payload only ever gains optional fields within a version; anything else is a new
//! version. docs/integrations.md documents every type.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Namespace of integration event ids (UUID v5 of the source event's id and the type).
/// Never change it: consumers de-duplicate on the ids it derives.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a57_93e4_4c0d_9b51_8a0e_3d27_c4f1);

macro_rules! event_types {
    ($($variant:ident = ($name:literal, $version:literal)),+ $(,)?) => {
        /// Every public event type, with the version of its payload.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $($variant,)+
        }

        impl EventType {
            /// Every type, in the order the documentation lists them.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)+];

            /// The wire name: also the AMQP routing key and the webhook subscription name.
            pub fn name(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)+
                }
            }

            /// The version of this type's payload.
            pub fn version(self) -> u32 {
                match self {
                    $(EventType::$variant => $version,)+
                }
            }

            pub fn parse(name: &str) -> Option<EventType> {
                match name {
                    $($name => Some(EventType::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

event_types! {
    OrderPlaced = ("order.placed", 1),
    OrderPaid = ("order.paid", 1),
    OrderConfirmed = ("order.confirmed", 1),
    OrderFulfilled = ("order.fulfilled", 1),
    OrderShipped = ("order.shipped", 1),
    OrderDelivered = ("order.delivered", 1),
    OrderCancelled = ("order.cancelled", 1),
    OrderRefunded = ("order.refunded", 1),
    PaymentFailed = ("payment.failed", 1),
    InventoryLow = ("inventory.low", 1),
    ProductCreated = ("product.created", 1),
    ProductUpdated = ("product.updated", 1),
    LicenseIssued = ("license.issued", 1),
    LicenseRevoked = ("license.revoked", 1),
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        EventType::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown event type {name:?}")))
    }
}

/// One public event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationEvent {
    /// Derived from the internal event it came from: the same fact always has the same id,
    /// however often it is delivered or republished.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub version: u32,
    /// When it happened in the business (the internal event's time), not when it was sent.
    pub occurred_at: DateTime<Utc>,
    /// Shared by everything one request set in motion (the id Purser's logs and traces use).
    pub correlation_id: Option<Uuid>,
    /// What the event is about (`order-<id>`, `product-<sku>`): events with the same key are
    /// published in the order they happened.
    pub key: String,
    pub data: Value,
}

impl IntegrationEvent {
    /// An event of `event_type` derived from the internal event `source_id`.
    pub fn new(
        source_id: Uuid,
        event_type: EventType,
        occurred_at: DateTime<Utc>,
        correlation_id: Option<Uuid>,
        key: String,
        data: Value,
    ) -> IntegrationEvent {
        IntegrationEvent {
            id: derive_id(source_id, event_type),
            event_type,
            version: event_type.version(),
            occurred_at,
            correlation_id,
            key,
            data,
        }
    }

    /// The JSON body carriers send.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an integration event always serialises")
    }
}

/// The id of the `event_type` event derived from internal event `source_id`.
pub fn derive_id(source_id: Uuid, event_type: EventType) -> Uuid {
    let mut name = Vec::with_capacity(16 + 24);
    name.extend_from_slice(source_id.as_bytes());
    name.extend_from_slice(event_type.name().as_bytes());
    Uuid::new_v5(&ID_NAMESPACE, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        let mut seen = std::collections::BTreeSet::new();
        for t in EventType::ALL {
            assert!(seen.insert(t.name()), "{} twice", t.name());
            assert_eq!(EventType::parse(t.name()), Some(*t));
            assert!(t.version() >= 1);
        }
        assert_eq!(EventType::parse("order.unknown"), None);
    }

    #[test]
    fn ids_are_stable_and_differ_by_source_and_type() {
        let source = Uuid::from_u128(1);
        let a = derive_id(source, EventType::OrderPlaced);
        assert_eq!(a, derive_id(source, EventType::OrderPlaced));
        assert_ne!(a, derive_id(source, EventType::OrderPaid));
        assert_ne!(a, derive_id(Uuid::from_u128(2), EventType::OrderPlaced));
        // Pinned: consumers de-duplicate on these ids across Purser versions.
        assert_eq!(
            derive_id(Uuid::nil(), EventType::OrderPlaced).to_string(),
            Uuid::new_v5(
                &ID_NAMESPACE,
                b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0order.placed"
            )
            .to_string()
        );
    }

    #[test]
    fn the_wire_form_has_the_documented_fields() {
        let e = IntegrationEvent::new(
            Uuid::from_u128(7),
            EventType::OrderConfirmed,
            "2026-12-03T12:00:00Z".parse().unwrap(),
            None,
            "order-x".into(),
            serde_json::json!({"order_id": "x"}),
        );
        let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["type"], "order.confirmed");
        assert_eq!(v["version"], 1);
        assert_eq!(v["occurred_at"], "2026-12-03T12:00:00Z");
        assert_eq!(v["correlation_id"], Value::Null);
        assert_eq!(v["key"], "order-x");
        let back: IntegrationEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
