//! The mapping from internal events to the public contract, through the crate's API.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use purser_domain::events::AnyEvent;
use purser_domain::inventory::InventoryEvent;
use purser_domain::license::LicenseEvent;
use purser_domain::order::{CancelledBy, OrderEvent, OrderLine};
use purser_domain::payment::{PaymentEvent, PaymentFailureReason, PaymentMethod};
use purser_domain::product::ProductEvent;
use purser_domain::{
    Currency, CustomerId, Email, LicenseId, Money, OrderId, PaymentId, Quantity, ReservationId, Sku,
};
use purser_event_store::{Metadata, Position, RecordedEvent, StreamName};
use purser_integrations::stock::StockLevels;
use purser_integrations::{EventType, IntegrationEvent, Mapper};
use uuid::Uuid;

fn at() -> DateTime<Utc> {
    "2026-12-03T12:00:00Z".parse().unwrap()
}

fn recorded(stream: &str, e: &AnyEvent) -> RecordedEvent {
    let (event_type, schema_version, data) = e.encode();
    RecordedEvent {
        id: Uuid::now_v7(),
        stream: StreamName::new(stream).unwrap(),
        version: 0,
        position: Position::new(1, 1),
        event_type: event_type.into(),
        schema_version,
        data,
        metadata: Metadata {
            correlation_id: Some(Uuid::from_u128(42)),
            ..Metadata::default()
        },
        recorded_at: at(),
    }
}

fn map_with(mapper: Mapper, stock: &mut StockLevels, e: AnyEvent) -> Option<IntegrationEvent> {
    let source = recorded(&format!("{}-x", e.category()), &e);
    mapper.map(&source, &e, stock)
}

fn map(e: impl Into<AnyEvent>) -> Option<IntegrationEvent> {
    map_with(Mapper::default(), &mut StockLevels::default(), e.into())
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

fn sku() -> Sku {
    Sku::parse("BOOK-1").unwrap()
}

#[test]
fn an_order_placed_carries_lines_and_total_but_no_personal_data() {
    let order_id = OrderId::new();
    let line = OrderLine::new(sku(), "A book", Quantity::new(2).unwrap(), eur(1250), None).unwrap();
    let e = map(OrderEvent::OrderPlaced {
        order_id,
        customer_id: CustomerId::new(),
        email: Email::parse("someone@example.com").unwrap(),
        lines: vec![line],
        total: eur(2500),
        cart_id: None,
        payment_method: PaymentMethod::parse("4242424242424242").unwrap(),
        shipping_address: None,
        at: at(),
    })
    .unwrap();
    assert_eq!(e.event_type, EventType::OrderPlaced);
    assert_eq!(e.version, 1);
    assert_eq!(e.occurred_at, at());
    assert_eq!(e.correlation_id, Some(Uuid::from_u128(42)));
    assert_eq!(e.key, format!("order-{order_id}"));
    assert_eq!(
        e.data["total"],
        serde_json::json!({"amount": 2500, "currency": "EUR"})
    );
    assert_eq!(e.data["lines"][0]["sku"], "BOOK-1");
    assert_eq!(e.data["lines"][0]["quantity"], 2);
    let wire = String::from_utf8(e.to_json()).unwrap();
    assert!(!wire.contains("someone@example.com"), "{wire}");
    assert!(!wire.contains("4242"), "{wire}");
}

#[test]
fn the_same_source_event_always_gives_the_same_id() {
    let e: AnyEvent = OrderEvent::OrderConfirmed {
        order_id: OrderId::new(),
        at: at(),
    }
    .into();
    let source = recorded("order-x", &e);
    let mapper = Mapper::default();
    let a = mapper
        .map(&source, &e, &mut StockLevels::default())
        .unwrap();
    let b = mapper
        .map(&source, &e, &mut StockLevels::default())
        .unwrap();
    assert_eq!(a.id, b.id);
    let other = recorded("order-x", &e);
    assert_ne!(
        a.id,
        mapper
            .map(&other, &e, &mut StockLevels::default())
            .unwrap()
            .id
    );
}

#[test]
fn order_steps_map_to_their_public_types() {
    let order_id = OrderId::new();
    let cases: Vec<(OrderEvent, Option<EventType>)> = vec![
        (
            OrderEvent::OrderPaid {
                order_id,
                payment_id: PaymentId::new(),
                gateway_reference: "ch_secret".into(),
                amount: eur(100),
                at: at(),
            },
            Some(EventType::OrderPaid),
        ),
        (
            OrderEvent::OrderConfirmed { order_id, at: at() },
            Some(EventType::OrderConfirmed),
        ),
        (
            OrderEvent::OrderFulfilled {
                order_id,
                licenses: BTreeMap::new(),
                at: at(),
            },
            Some(EventType::OrderFulfilled),
        ),
        (
            OrderEvent::OrderShipped {
                order_id,
                tracking_number: "TRK1".into(),
                carrier: "DHL".into(),
                estimated_delivery: None,
                at: at(),
            },
            Some(EventType::OrderShipped),
        ),
        (
            OrderEvent::OrderDelivered { order_id, at: at() },
            Some(EventType::OrderDelivered),
        ),
        (
            OrderEvent::OrderCancelled {
                order_id,
                reason: "changed mind".into(),
                by: CancelledBy::Customer,
                was_paid: false,
                at: at(),
            },
            Some(EventType::OrderCancelled),
        ),
        (
            OrderEvent::OrderRefunded {
                order_id,
                amount: eur(100),
                reason: "damaged".into(),
                refund_reference: "re_1".into(),
                at: at(),
            },
            Some(EventType::OrderRefunded),
        ),
        (
            OrderEvent::OrderPaymentStarted {
                order_id,
                payment_id: PaymentId::new(),
                at: at(),
            },
            None,
        ),
        (
            OrderEvent::OrderProcessingStarted { order_id, at: at() },
            None,
        ),
    ];
    for (internal, expected) in cases {
        let got = map(internal.clone());
        assert_eq!(got.as_ref().map(|e| e.event_type), expected, "{internal:?}");
        if let Some(e) = got {
            assert_eq!(e.data["order_id"], order_id.to_string());
            assert!(
                !String::from_utf8(e.to_json())
                    .unwrap()
                    .contains("ch_secret")
            );
        }
    }
    let cancelled = map(OrderEvent::OrderCancelled {
        order_id,
        reason: "r".into(),
        by: CancelledBy::System,
        was_paid: true,
        at: at(),
    })
    .unwrap();
    assert_eq!(cancelled.data["cancelled_by"], "system");
    assert_eq!(cancelled.data["was_paid"], true);
}

#[test]
fn a_failed_payment_says_why_by_code_and_keeps_the_gateway_message_inside() {
    let order_id = OrderId::new();
    let e = map(PaymentEvent::PaymentFailed {
        payment_id: PaymentId::new(),
        order_id,
        reason: PaymentFailureReason::InsufficientFunds,
        message: "card 4000 0000 0000 9995 declined".into(),
        at: at(),
    })
    .unwrap();
    assert_eq!(e.event_type, EventType::PaymentFailed);
    assert_eq!(e.key, format!("order-{order_id}"));
    assert_eq!(e.data["reason"], "insufficient_funds");
    assert!(!String::from_utf8(e.to_json()).unwrap().contains("9995"));
    // Captures are told by order.paid; they give nothing of their own.
    let captured = PaymentEvent::PaymentCaptured {
        payment_id: PaymentId::new(),
        order_id,
        amount: eur(1),
        gateway_reference: "g".into(),
        at: at(),
    };
    assert!(map(captured).is_none());
}

#[test]
fn product_changes_are_product_updated_with_only_what_changed() {
    let e = map(ProductEvent::ProductPriceChanged {
        sku: sku(),
        old: eur(1),
        new: eur(2),
        at: at(),
    })
    .unwrap();
    assert_eq!(e.event_type, EventType::ProductUpdated);
    assert_eq!(e.key, "product-BOOK-1");
    assert_eq!(
        e.data,
        serde_json::json!({"sku": "BOOK-1", "changes": {"price": {"amount": 2, "currency": "EUR"}}})
    );
    let e = map(ProductEvent::ProductDetailsUpdated {
        sku: sku(),
        name: Some("New".into()),
        description: None,
        brand: None,
        category: None,
        at: at(),
    })
    .unwrap();
    assert_eq!(e.data["changes"], serde_json::json!({"name": "New"}));
    let e = map(ProductEvent::ProductDiscontinued {
        sku: sku(),
        reason: "old".into(),
        at: at(),
    })
    .unwrap();
    assert_eq!(e.data["changes"], serde_json::json!({"active": false}));
}

#[test]
fn a_license_issued_never_carries_the_key() {
    let e = map(LicenseEvent::LicenseIssued {
        license_id: LicenseId::new(),
        sku: sku(),
        order_id: OrderId::new(),
        customer_id: CustomerId::new(),
        seats: 3,
        key: "SECRET-KEY-1234".into(),
        expires_at: None,
        at: at(),
    })
    .unwrap();
    assert_eq!(e.event_type, EventType::LicenseIssued);
    assert_eq!(e.data["seats"], 3);
    assert!(
        !String::from_utf8(e.to_json())
            .unwrap()
            .contains("SECRET-KEY")
    );
}

#[test]
fn inventory_low_fires_once_when_availability_falls_below_the_threshold() {
    let mapper = Mapper { low_stock: 3 };
    let mut stock = StockLevels::default();
    let q = |n| Quantity::new(n).unwrap();
    let reserve = |n| {
        AnyEvent::from(InventoryEvent::StockReserved {
            sku: sku(),
            reservation_id: ReservationId::new(),
            order_id: OrderId::new(),
            qty: q(n),
            expires_at: at(),
            at: at(),
        })
    };
    let received = InventoryEvent::StockReceived {
        sku: sku(),
        qty: q(5),
        at: at(),
    };
    let mut types = vec![];
    for e in [received.into(), reserve(2), reserve(1), reserve(1)] {
        types.push(
            map_with(mapper, &mut stock, e).map(|e| (e.event_type, e.data["available"].clone())),
        );
    }
    assert_eq!(
        types,
        [
            None,
            None,
            Some((EventType::InventoryLow, serde_json::json!(2))),
            None
        ]
    );
    assert_eq!(stock.get("BOOK-1").available(), 1);
}
