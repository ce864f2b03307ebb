//! Realistic event histories for read-model tests: products with stock, carts, customers and
//! orders that go through checkout to an outcome, appended as real domain events through the
//! Postgres event store.
//!
//! Shared by the projection tests, the query-api tests and the end-to-end read-side tests
//! (included with `#[path]`), so every layer is tested against the same histories.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use purser_domain::cart::CartEvent;
use purser_domain::customer::{CustomerEvent, PasswordHash, Role};
use purser_domain::events::AnyEvent;
use purser_domain::inventory::{InventoryEvent, ReleaseReason};
use purser_domain::license::LicenseEvent;
use purser_domain::order::{CancelledBy, OrderEvent, OrderLine, ShippingAddress};
use purser_domain::payment::{PaymentEvent, PaymentFailureReason, PaymentMethod};
use purser_domain::product::{DigitalTerms, LicenseSource, ProductEvent, ProductKind};
use purser_domain::{
    CartId, Currency, CustomerId, Email, LicenseId, Money, OrderId, PaymentId, Quantity,
    ReservationId, Sku,
};
use purser_event_store::{
    EventStore, ExpectedVersion, Metadata, NewEvent, PgEventStore, Position, StreamName,
};
use uuid::Uuid;

/// A fixed origin, so histories (and what the read models derive from them) are the same on
/// every run.
pub fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap() + Duration::minutes(minutes)
}

pub fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::USD)
}

pub fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

pub fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

pub fn customer_of(e: &str) -> CustomerId {
    CustomerId::for_email(&email(e))
}

pub fn qty(n: i64) -> Quantity {
    Quantity::new(n).unwrap()
}

pub fn terms() -> DigitalTerms {
    DigitalTerms {
        license: LicenseSource::Pool,
        seats: 3,
        validity_days: Some(365),
    }
}

/// One line of an order to place.
#[derive(Debug, Clone)]
pub struct Line {
    pub sku: &'static str,
    pub name: &'static str,
    pub qty: i64,
    pub unit_minor: i64,
    pub digital: bool,
}

pub fn physical(sku: &'static str, name: &'static str, qty: i64, unit_minor: i64) -> Line {
    Line {
        sku,
        name,
        qty,
        unit_minor,
        digital: false,
    }
}

pub fn digital(sku: &'static str, name: &'static str, unit_minor: i64) -> Line {
    Line {
        sku,
        name,
        qty: 1,
        unit_minor,
        digital: true,
    }
}

/// How far an order gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Placed; nothing else yet.
    Placed,
    /// Paid (physical orders are confirmed; digital lines get their licenses).
    Paid,
    /// Like `Paid`, after one retried gateway timeout.
    PaidAfterRetry,
    Shipped,
    Delivered,
    /// Paid, then this much refunded.
    Refunded(i64),
    PaymentFailed(PaymentFailureReason),
    InventoryUnavailable,
}

/// An order to append.
#[derive(Debug, Clone)]
pub struct OrderSpec {
    pub order_id: OrderId,
    pub email: &'static str,
    pub lines: Vec<Line>,
    pub cart_id: Option<CartId>,
    /// Minutes after the origin when the order is placed.
    pub at: i64,
    pub outcome: Outcome,
}

impl OrderSpec {
    pub fn new(email: &'static str, lines: Vec<Line>, at: i64, outcome: Outcome) -> OrderSpec {
        OrderSpec {
            order_id: OrderId::new(),
            email,
            lines,
            cart_id: None,
            at,
            outcome,
        }
    }

    pub fn total(&self) -> i64 {
        self.lines.iter().map(|l| l.qty * l.unit_minor).sum()
    }

    pub fn payment_id(&self) -> PaymentId {
        PaymentId::derived(&["scenario-payment", &self.order_id.to_string()])
    }

    pub fn license_id(&self, sku: &str) -> LicenseId {
        LicenseId::derived(&["scenario-license", &self.order_id.to_string(), sku])
    }

    pub fn reservation_id(&self, sku: &str) -> ReservationId {
        ReservationId::derived(&["scenario-reservation", &self.order_id.to_string(), sku])
    }
}

pub struct Scenario {
    pub store: Arc<dyn EventStore>,
    pool: sqlx::PgPool,
    /// The furthest position appended so far.
    last: std::sync::Mutex<Position>,
}

impl Scenario {
    pub fn new(pool: sqlx::PgPool) -> Scenario {
        Scenario {
            store: Arc::new(PgEventStore::new(pool.clone())),
            pool,
            last: std::sync::Mutex::new(Position::START),
        }
    }

    /// The furthest position appended so far.
    pub fn last(&self) -> Position {
        *self.last.lock().unwrap()
    }

    /// Appends events to a stream, whatever its version. Returns the last position.
    pub async fn append(
        &self,
        stream: impl Into<String>,
        events: impl IntoIterator<Item = AnyEvent>,
    ) -> Position {
        let events: Vec<NewEvent> = events
            .into_iter()
            .map(|e| {
                let (event_type, schema_version, data) = e.encode();
                NewEvent {
                    id: Uuid::now_v7(),
                    event_type: event_type.into(),
                    schema_version,
                    data,
                    metadata: Metadata::default(),
                }
            })
            .collect();
        let at = self
            .store
            .append(
                &StreamName::new(stream.into()).unwrap(),
                ExpectedVersion::Any,
                events,
            )
            .await
            .expect("append")
            .last_position;
        let mut last = self.last.lock().unwrap();
        *last = (*last).max(at);
        at
    }

    /// A product in the catalog, with `stock` units received when physical.
    #[allow(clippy::too_many_arguments)]
    pub async fn product(
        &self,
        code: &str,
        name: &str,
        brand: &str,
        category: &str,
        price_minor: i64,
        is_digital: bool,
        stock: i64,
        at: i64,
    ) -> Position {
        let s = sku(code);
        let kind = if is_digital {
            ProductKind::digital(terms())
        } else {
            ProductKind::Physical
        };
        let mut last = self
            .append(
                s.product_stream(),
                [ProductEvent::ProductCreated {
                    sku: s.clone(),
                    name: name.into(),
                    description: format!("{name} by {brand}"),
                    brand: brand.into(),
                    category: category.into(),
                    kind,
                    price: usd(price_minor),
                    at: t(at),
                }
                .into()],
            )
            .await;
        if !is_digital && stock > 0 {
            last = self
                .append(
                    s.inventory_stream(),
                    [InventoryEvent::StockReceived {
                        sku: s.clone(),
                        qty: qty(stock),
                        at: t(at),
                    }
                    .into()],
                )
                .await;
        }
        last
    }

    pub async fn register(&self, e: &str, name: &str, at: i64) -> Position {
        let id = customer_of(e);
        self.append(
            id.stream(),
            [CustomerEvent::CustomerRegistered {
                customer_id: id,
                email: email(e),
                name: name.into(),
                password_hash: PasswordHash::from_phc(
                    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
                )
                .unwrap(),
                at: t(at),
            }
            .into()],
        )
        .await
    }

    pub async fn grant(&self, e: &str, role: Role, at: i64) -> Position {
        let id = customer_of(e);
        self.append(
            id.stream(),
            [CustomerEvent::RoleGranted {
                customer_id: id,
                role,
                at: t(at),
            }
            .into()],
        )
        .await
    }

    /// A cart with these items, created at `at` (one minute per item added after that).
    pub async fn cart(
        &self,
        cart_id: CartId,
        owner: Option<&str>,
        items: &[Line],
        at: i64,
    ) -> Position {
        let mut events: Vec<AnyEvent> = vec![
            CartEvent::CartCreated {
                cart_id,
                customer_id: owner.map(customer_of),
                currency: Currency::USD,
                at: t(at),
            }
            .into(),
        ];
        for (i, l) in items.iter().enumerate() {
            events.push(
                CartEvent::CartItemAdded {
                    cart_id,
                    sku: sku(l.sku),
                    name: l.name.into(),
                    digital: l.digital,
                    qty: qty(l.qty),
                    unit_price: usd(l.unit_minor),
                    at: t(at + 1 + i as i64),
                }
                .into(),
            );
        }
        self.append(cart_id.stream(), events).await
    }

    pub async fn cart_event(&self, e: CartEvent) -> Position {
        let cart_id = match &e {
            CartEvent::CartCreated { cart_id, .. }
            | CartEvent::CartItemAdded { cart_id, .. }
            | CartEvent::CartItemQuantityChanged { cart_id, .. }
            | CartEvent::CartItemRemoved { cart_id, .. }
            | CartEvent::CartCustomerAssigned { cart_id, .. }
            | CartEvent::CartCheckedOut { cart_id, .. }
            | CartEvent::CartAbandoned { cart_id, .. } => *cart_id,
        };
        self.append(cart_id.stream(), [e.into()]).await
    }

    /// Appends an order's whole history up to its outcome, the way checkout writes it:
    /// order, payment, inventory, customer and license events in causal order.
    pub async fn order(&self, o: &OrderSpec) -> Position {
        let oid = o.order_id;
        let m = o.at;
        let customer_id = customer_of(o.email);
        let lines: Vec<OrderLine> = o
            .lines
            .iter()
            .map(|l| {
                OrderLine::new(
                    sku(l.sku),
                    l.name,
                    qty(l.qty),
                    usd(l.unit_minor),
                    l.digital.then(terms),
                )
                .unwrap()
            })
            .collect();
        let physical: Vec<&Line> = o.lines.iter().filter(|l| !l.digital).collect();
        let digital: Vec<&Line> = o.lines.iter().filter(|l| l.digital).collect();
        let address = (!physical.is_empty()).then(|| {
            ShippingAddress::parse("Ann", "1 Main St", None, "Springfield", "12345", "US").unwrap()
        });
        let order = |e: OrderEvent| -> AnyEvent { e.into() };
        let mut last = self
            .append(
                oid.stream(),
                [order(OrderEvent::OrderPlaced {
                    order_id: oid,
                    customer_id,
                    email: email(o.email),
                    lines,
                    total: usd(o.total()),
                    cart_id: o.cart_id,
                    payment_method: PaymentMethod::parse("pm_card_visa").unwrap(),
                    shipping_address: address,
                    at: t(m),
                })],
            )
            .await;
        if o.outcome == Outcome::Placed {
            return last;
        }
        if !digital.is_empty() {
            self.append(
                customer_id.stream(),
                [CustomerEvent::AccountProvisioned {
                    customer_id,
                    email: email(o.email),
                    order_id: oid,
                    guest: true,
                    at: t(m),
                }
                .into()],
            )
            .await;
        }
        // Reserve the physical lines; an unavailable order has its first line rejected.
        for (i, l) in physical.iter().enumerate() {
            let s = sku(l.sku);
            let e = if o.outcome == Outcome::InventoryUnavailable && i == 0 {
                InventoryEvent::ReservationRejected {
                    sku: s.clone(),
                    reservation_id: o.reservation_id(l.sku),
                    order_id: oid,
                    requested: qty(l.qty),
                    available: 0,
                    at: t(m),
                }
            } else {
                InventoryEvent::StockReserved {
                    sku: s.clone(),
                    reservation_id: o.reservation_id(l.sku),
                    order_id: oid,
                    qty: qty(l.qty),
                    expires_at: t(m + 10),
                    at: t(m),
                }
            };
            self.append(s.inventory_stream(), [e.into()]).await;
        }
        if o.outcome == Outcome::InventoryUnavailable {
            self.release_all(o, &physical[1..], ReleaseReason::OrderUnfulfillable, m + 1)
                .await;
            return self
                .append(
                    oid.stream(),
                    [
                        order(OrderEvent::OrderInventoryUnavailable {
                            order_id: oid,
                            skus: vec![sku(physical[0].sku)],
                            at: t(m + 1),
                        }),
                        order(OrderEvent::OrderCancelled {
                            order_id: oid,
                            reason: "inventory unavailable".into(),
                            by: CancelledBy::System,
                            was_paid: false,
                            at: t(m + 1),
                        }),
                    ],
                )
                .await;
        }
        let pid = o.payment_id();
        self.append(
            pid.stream(),
            [PaymentEvent::PaymentIntentCreated {
                payment_id: pid,
                order_id: oid,
                amount: usd(o.total()),
                payment_method: PaymentMethod::parse("pm_card_visa").unwrap(),
                idempotency_key: format!("checkout-{oid}-payment"),
                at: t(m + 1),
            }
            .into()],
        )
        .await;
        self.append(
            oid.stream(),
            [order(OrderEvent::OrderPaymentStarted {
                order_id: oid,
                payment_id: pid,
                at: t(m + 1),
            })],
        )
        .await;
        if let Outcome::PaymentFailed(reason) = &o.outcome {
            self.append(
                pid.stream(),
                [PaymentEvent::PaymentFailed {
                    payment_id: pid,
                    order_id: oid,
                    reason: *reason,
                    message: "the card was refused".into(),
                    at: t(m + 2),
                }
                .into()],
            )
            .await;
            self.release_all(o, &physical, ReleaseReason::PaymentFailed, m + 2)
                .await;
            return self
                .append(
                    oid.stream(),
                    [
                        order(OrderEvent::OrderPaymentFailed {
                            order_id: oid,
                            reason: reason.code().into(),
                            message: "the card was refused".into(),
                            at: t(m + 2),
                        }),
                        order(OrderEvent::OrderCancelled {
                            order_id: oid,
                            reason: "payment failed".into(),
                            by: CancelledBy::System,
                            was_paid: false,
                            at: t(m + 3),
                        }),
                    ],
                )
                .await;
        }
        if o.outcome == Outcome::PaidAfterRetry {
            self.append(
                pid.stream(),
                [PaymentEvent::PaymentAttemptFailed {
                    payment_id: pid,
                    order_id: oid,
                    attempt: 1,
                    error: "gateway timeout".into(),
                    retry_at: t(m + 2),
                    at: t(m + 1),
                }
                .into()],
            )
            .await;
        }
        let reference = format!("ch_{}", &oid.to_string()[..8]);
        self.append(
            pid.stream(),
            [PaymentEvent::PaymentCaptured {
                payment_id: pid,
                order_id: oid,
                amount: usd(o.total()),
                gateway_reference: reference.clone(),
                at: t(m + 2),
            }
            .into()],
        )
        .await;
        for l in &physical {
            let s = sku(l.sku);
            self.append(
                s.inventory_stream(),
                [InventoryEvent::ReservationConfirmed {
                    sku: s.clone(),
                    reservation_id: o.reservation_id(l.sku),
                    order_id: oid,
                    qty: qty(l.qty),
                    at: t(m + 2),
                }
                .into()],
            )
            .await;
        }
        last = self
            .append(
                oid.stream(),
                [order(OrderEvent::OrderPaid {
                    order_id: oid,
                    payment_id: pid,
                    gateway_reference: reference,
                    amount: usd(o.total()),
                    at: t(m + 2),
                })],
            )
            .await;
        if !physical.is_empty() {
            last = self
                .append(
                    oid.stream(),
                    [order(OrderEvent::OrderConfirmed {
                        order_id: oid,
                        at: t(m + 3),
                    })],
                )
                .await;
        }
        if !digital.is_empty() {
            let mut licenses = std::collections::BTreeMap::new();
            for l in &digital {
                let lid = o.license_id(l.sku);
                licenses.insert(sku(l.sku), lid);
                self.append(
                    lid.stream(),
                    [
                        LicenseEvent::LicenseIssued {
                            license_id: lid,
                            sku: sku(l.sku),
                            order_id: oid,
                            customer_id,
                            seats: 3,
                            key: format!("KEY-{}-{}", l.sku, &oid.to_string()[..8]),
                            expires_at: Some(t(m + 3) + Duration::days(365)),
                            at: t(m + 3),
                        }
                        .into(),
                        LicenseEvent::LicenseAttached {
                            license_id: lid,
                            customer_id,
                            order_id: oid,
                            at: t(m + 3),
                        }
                        .into(),
                    ],
                )
                .await;
                self.append(
                    oid.stream(),
                    [order(OrderEvent::OrderLicenseAttached {
                        order_id: oid,
                        sku: sku(l.sku),
                        license_id: lid,
                        at: t(m + 3),
                    })],
                )
                .await;
            }
            last = self
                .append(
                    oid.stream(),
                    [order(OrderEvent::OrderFulfilled {
                        order_id: oid,
                        licenses,
                        at: t(m + 3),
                    })],
                )
                .await;
        }
        if matches!(o.outcome, Outcome::Shipped | Outcome::Delivered) {
            last = self
                .append(
                    oid.stream(),
                    [
                        order(OrderEvent::OrderProcessingStarted {
                            order_id: oid,
                            at: t(m + 4),
                        }),
                        order(OrderEvent::OrderShipped {
                            order_id: oid,
                            tracking_number: "1Z999".into(),
                            carrier: "UPS".into(),
                            estimated_delivery: Some(t(m + 3 * 24 * 60)),
                            at: t(m + 5),
                        }),
                    ],
                )
                .await;
        }
        if o.outcome == Outcome::Delivered {
            last = self
                .append(
                    oid.stream(),
                    [order(OrderEvent::OrderDelivered {
                        order_id: oid,
                        at: t(m + 2 * 24 * 60),
                    })],
                )
                .await;
        }
        if let Outcome::Refunded(amount) = o.outcome {
            let refund_reference = format!("re_{}", &oid.to_string()[..8]);
            self.append(
                pid.stream(),
                [PaymentEvent::PaymentRefunded {
                    payment_id: pid,
                    order_id: oid,
                    amount: usd(amount),
                    reason: "customer request".into(),
                    refund_reference: refund_reference.clone(),
                    at: t(m + 10),
                }
                .into()],
            )
            .await;
            last = self
                .append(
                    oid.stream(),
                    [order(OrderEvent::OrderRefunded {
                        order_id: oid,
                        amount: usd(amount),
                        reason: "customer request".into(),
                        refund_reference,
                        at: t(m + 10),
                    })],
                )
                .await;
        }
        last
    }

    async fn release_all(&self, o: &OrderSpec, lines: &[&Line], reason: ReleaseReason, at: i64) {
        for l in lines {
            let s = sku(l.sku);
            self.append(
                s.inventory_stream(),
                [InventoryEvent::ReservationReleased {
                    sku: s.clone(),
                    reservation_id: o.reservation_id(l.sku),
                    order_id: o.order_id,
                    qty: qty(l.qty),
                    reason,
                    at: t(at),
                }
                .into()],
            )
            .await;
        }
    }

    /// The head of the log.
    pub async fn head(&self) -> Position {
        self.store
            .head()
            .await
            .unwrap()
            .map(|h| h.position)
            .unwrap_or(Position::START)
    }
}

/// Runs every projection live until each has applied everything this scenario appended.
///
/// A projector catches up only to the log's visible head, and the head is held back while any
/// transaction of the Postgres cluster is open (parallel tests share it), so "the head now" may
/// be short of the last append. Running live and awaiting the checkpoints reaching the
/// scenario's last position is exact.
pub async fn catch_up_all(s: &Scenario) {
    let checkpoints = purser_projections::Checkpoints::new(s.pool.clone());
    let projector = purser_projections::Projector::new(
        s.store.clone(),
        s.pool.clone(),
        purser_projections::all(),
        checkpoints.clone(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let (projector, stop) = (projector.clone(), stop.clone());
        async move { projector.run(stop).await }
    });
    let reached = checkpoints
        .wait_for(
            &projector.names(),
            s.last(),
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("read checkpoints");
    stop.cancel();
    running.await.expect("the projector stops cleanly");
    assert!(reached, "the read models did not catch up within 60 s");
}
