//! Every event of the domain in one enum, for consumers that read the whole log (projections,
//! process managers, the auditor's replay) and decode by stream category.

use serde_json::Value;

use crate::cart::CartEvent;
use crate::customer::CustomerEvent;
use crate::inventory::InventoryEvent;
use crate::license::{LicenseEvent, LicensePoolEvent};
use crate::notification::NotificationEvent;
use crate::order::OrderEvent;
use crate::payment::PaymentEvent;
use crate::product::ProductEvent;
use crate::{DecodeError, Event};

/// Generates the enum, its `From` conversions and the per-category dispatch from one table of
/// (variant, event type, stream category), so adding an aggregate is one line here.
macro_rules! any_event {
    ($($variant:ident($ty:ty) = $category:literal),+ $(,)?) => {
        #[derive(Debug, Clone, PartialEq)]
        pub enum AnyEvent {
            $($variant($ty),)+
        }

        $(impl From<$ty> for AnyEvent {
            fn from(e: $ty) -> Self {
                AnyEvent::$variant(e)
            }
        })+

        impl AnyEvent {
            /// Decodes stored event data, dispatching on the stream's category (`order` for
            /// `order-…`) and upcasting older schema versions.
            pub fn decode(
                stream_category: &str,
                event_type: &str,
                schema_version: u16,
                data: Value,
            ) -> Result<AnyEvent, DecodeError> {
                match stream_category {
                    $($category => <$ty>::decode(event_type, schema_version, data).map(AnyEvent::$variant),)+
                    other => Err(DecodeError::UnknownType(format!(
                        "{event_type} (in unknown stream category {other:?})"
                    ))),
                }
            }

            /// (event type, schema version, JSON data), as stored.
            pub fn encode(&self) -> (&'static str, u16, Value) {
                match self {
                    $(AnyEvent::$variant(e) => e.encode(),)+
                }
            }

            pub fn event_type(&self) -> &'static str {
                match self {
                    $(AnyEvent::$variant(e) => e.event_type(),)+
                }
            }

            /// The category of the stream this event belongs in.
            pub fn category(&self) -> &'static str {
                match self {
                    $(AnyEvent::$variant(_) => $category,)+
                }
            }
        }

        /// Every event type name in the domain.
        pub fn all_event_types() -> Vec<&'static str> {
            let mut all = Vec::new();
            $(all.extend_from_slice(<$ty>::event_types());)+
            all
        }

        /// Every stream category that has events.
        pub fn all_categories() -> Vec<&'static str> {
            vec![$($category),+]
        }
    };
}

any_event! {
    Product(ProductEvent) = "product",
    Inventory(InventoryEvent) = "inventory",
    Cart(CartEvent) = "cart",
    Order(OrderEvent) = "order",
    Payment(PaymentEvent) = "payment",
    Customer(CustomerEvent) = "customer",
    License(LicenseEvent) = "license",
    LicensePool(LicensePoolEvent) = "licensepool",
    Notification(NotificationEvent) = "notification",
}

/// [`AnyEvent::decode`] as a free function.
pub fn decode(
    stream_category: &str,
    event_type: &str,
    schema_version: u16,
    data: Value,
) -> Result<AnyEvent, DecodeError> {
    AnyEvent::decode(stream_category, event_type, schema_version, data)
}

/// The category of a stream name: `order` for `order-<uuid>`, `licensepool` for
/// `licensepool-<SKU>`. Categories contain no `-`, so the first one ends the category.
pub fn stream_category(stream: &str) -> Option<&str> {
    stream.split_once('-').map(|(category, _)| category).filter(|c| !c.is_empty())
}

/// Removes secrets that events written by older versions carry (the password hash of a
/// `CustomerRegistered` v1) from an event's stored data. Views of the raw log — `streamHistory`
/// and `audit export` — show what is left; answers whether anything was removed.
pub fn redact_secrets(event_type: &str, data: &mut serde_json::Value) -> bool {
    match (event_type, data.as_object_mut()) {
        ("CustomerRegistered", Some(map)) => map.remove("password_hash").is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::inventory::AdjustmentReason;
    use crate::test_support::{sku, t};

    #[test]
    fn event_type_names_are_unique_across_the_domain() {
        let all = all_event_types();
        let unique: BTreeSet<_> = all.iter().collect();
        assert_eq!(all.len(), unique.len(), "duplicate event type in {all:?}");
        for known in ["ProductCreated", "StockReserved", "OrderPlaced", "LicensePoolExhausted"] {
            assert!(all.contains(&known), "{known} missing");
        }
        assert!(all.iter().all(|t| t.chars().next().unwrap().is_ascii_uppercase()));
    }

    #[test]
    fn decodes_by_category_and_round_trips() {
        let event = AnyEvent::from(InventoryEvent::StockAdjusted {
            sku: sku("LAP-13"),
            delta: 3,
            reason: AdjustmentReason::Found,
            note: "behind the shelf".into(),
            at: t(0),
        });
        let (event_type, version, data) = event.encode();
        assert_eq!((event_type, version, event.category()), ("StockAdjusted", 2, "inventory"));
        assert_eq!(decode("inventory", event_type, version, data.clone()).unwrap(), event);
        assert!(matches!(
            decode("order", event_type, version, data.clone()),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            decode("nope", event_type, version, data),
            Err(DecodeError::UnknownType(_))
        ));
    }

    #[test]
    fn stream_names_split_into_categories() {
        assert_eq!(stream_category("order-0191e8d2-aaaa"), Some("order"));
        assert_eq!(stream_category("licensepool-AV-1Y"), Some("licensepool"));
        assert_eq!(stream_category("nodash"), None);
        for category in all_categories() {
            assert!(!category.contains('-'));
        }
    }
}
