//! Orders, appended the way checkout writes them, step by step up to their outcome.

use std::collections::BTreeMap;

use chrono::Duration;
use purser_domain::customer::CustomerEvent;
use purser_domain::events::AnyEvent;
use purser_domain::inventory::{InventoryEvent, ReleaseReason};
use purser_domain::license::LicenseEvent;
use purser_domain::order::{CancelledBy, OrderEvent, OrderLine, ShippingAddress};
use purser_domain::payment::{PaymentEvent, PaymentFailureReason, PaymentMethod};
use purser_domain::{CustomerId, OrderId, PaymentId};
use purser_event_store::Position;

use super::{Line, OrderSpec, Outcome, Scenario, customer_of, email, qty, sku, t, terms, usd};

/// One order being appended: its spec, ids, and its lines split by kind.
struct Placing<'a> {
    o: &'a OrderSpec,
    oid: OrderId,
    pid: PaymentId,
    customer_id: CustomerId,
    /// Minutes after the origin when it is placed; later steps are a few minutes after.
    m: i64,
    physical: Vec<&'a Line>,
    digital: Vec<&'a Line>,
}

fn order(e: OrderEvent) -> AnyEvent {
    e.into()
}

impl Scenario {
    /// Appends an order's whole history up to its outcome, the way checkout writes it:
    /// order, payment, inventory, customer and license events in causal order.
    pub async fn order(&self, o: &OrderSpec) -> Position {
        let p = Placing {
            o,
            oid: o.order_id,
            pid: o.payment_id(),
            customer_id: customer_of(o.email),
            m: o.at,
            physical: o.lines.iter().filter(|l| !l.digital).collect(),
            digital: o.lines.iter().filter(|l| l.digital).collect(),
        };
        let placed = self.place(&p).await;
        if o.outcome == Outcome::Placed {
            return placed;
        }
        if !p.digital.is_empty() {
            self.provision_guest(&p).await;
        }
        self.reserve(&p).await;
        if o.outcome == Outcome::InventoryUnavailable {
            return self.fail_inventory(&p).await;
        }
        self.start_payment(&p).await;
        if let Outcome::PaymentFailed(reason) = &o.outcome {
            return self.fail_payment(&p, *reason).await;
        }
        let mut last = self.capture(&p).await;
        if !p.digital.is_empty() {
            last = self.fulfil_digital(&p).await;
        }
        if matches!(o.outcome, Outcome::Shipped | Outcome::Delivered) {
            last = self.ship(&p).await;
        }
        if o.outcome == Outcome::Delivered {
            last = self
                .append(
                    p.oid.stream(),
                    [order(OrderEvent::OrderDelivered {
                        order_id: p.oid,
                        at: t(p.m + 2 * 24 * 60),
                    })],
                )
                .await;
        }
        if let Outcome::Refunded(amount) = o.outcome {
            last = self.refund(&p, amount).await;
        }
        last
    }

    async fn place(&self, p: &Placing<'_>) -> Position {
        let o = p.o;
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
        let address = (!p.physical.is_empty()).then(|| {
            ShippingAddress::parse("Ann", "1 Main St", None, "Springfield", "12345", "US").unwrap()
        });
        self.append(
            p.oid.stream(),
            [order(OrderEvent::OrderPlaced {
                order_id: p.oid,
                customer_id: p.customer_id,
                email: email(o.email),
                lines,
                total: usd(o.total()),
                cart_id: o.cart_id,
                payment_method: PaymentMethod::parse("pm_card_visa").unwrap(),
                shipping_address: address,
                at: t(p.m),
            })],
        )
        .await
    }

    /// A guest buying a digital product gets an account for its licenses.
    async fn provision_guest(&self, p: &Placing<'_>) {
        self.append(
            p.customer_id.stream(),
            [CustomerEvent::AccountProvisioned {
                customer_id: p.customer_id,
                email: email(p.o.email),
                order_id: p.oid,
                guest: true,
                at: t(p.m),
            }
            .into()],
        )
        .await;
    }

    /// Reserves the physical lines; an unavailable order has its first line rejected.
    async fn reserve(&self, p: &Placing<'_>) {
        let o = p.o;
        for (i, l) in p.physical.iter().enumerate() {
            let s = sku(l.sku);
            let e = if o.outcome == Outcome::InventoryUnavailable && i == 0 {
                InventoryEvent::ReservationRejected {
                    sku: s.clone(),
                    reservation_id: o.reservation_id(l.sku),
                    order_id: p.oid,
                    requested: qty(l.qty),
                    available: 0,
                    at: t(p.m),
                }
            } else {
                InventoryEvent::StockReserved {
                    sku: s.clone(),
                    reservation_id: o.reservation_id(l.sku),
                    order_id: p.oid,
                    qty: qty(l.qty),
                    expires_at: t(p.m + 10),
                    at: t(p.m),
                }
            };
            self.append(s.inventory_stream(), [e.into()]).await;
        }
    }

    /// The other reservations released, the order cancelled as unfulfillable.
    async fn fail_inventory(&self, p: &Placing<'_>) -> Position {
        let m = p.m;
        self.release_all(
            p.o,
            &p.physical[1..],
            ReleaseReason::OrderUnfulfillable,
            m + 1,
        )
        .await;
        self.append(
            p.oid.stream(),
            [
                order(OrderEvent::OrderInventoryUnavailable {
                    order_id: p.oid,
                    skus: vec![sku(p.physical[0].sku)],
                    at: t(m + 1),
                }),
                order(OrderEvent::OrderCancelled {
                    order_id: p.oid,
                    reason: "inventory unavailable".into(),
                    by: CancelledBy::System,
                    was_paid: false,
                    at: t(m + 1),
                }),
            ],
        )
        .await
    }

    async fn start_payment(&self, p: &Placing<'_>) {
        let (oid, pid, m) = (p.oid, p.pid, p.m);
        self.append(
            pid.stream(),
            [PaymentEvent::PaymentIntentCreated {
                payment_id: pid,
                order_id: oid,
                amount: usd(p.o.total()),
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
    }

    /// The payment failed: reservations released, the order cancelled.
    async fn fail_payment(&self, p: &Placing<'_>, reason: PaymentFailureReason) -> Position {
        let (oid, pid, m) = (p.oid, p.pid, p.m);
        self.append(
            pid.stream(),
            [PaymentEvent::PaymentFailed {
                payment_id: pid,
                order_id: oid,
                reason,
                message: "the card was refused".into(),
                at: t(m + 2),
            }
            .into()],
        )
        .await;
        self.release_all(p.o, &p.physical, ReleaseReason::PaymentFailed, m + 2)
            .await;
        self.append(
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
        .await
    }

    /// The capture (after one retried timeout for `PaidAfterRetry`), the reservations
    /// confirmed, the order paid and, with physical lines, confirmed.
    async fn capture(&self, p: &Placing<'_>) -> Position {
        let (o, oid, pid, m) = (p.o, p.oid, p.pid, p.m);
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
        for l in &p.physical {
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
        let mut last = self
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
        if !p.physical.is_empty() {
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
        last
    }

    /// A license issued and attached per digital line, then the order fulfilled.
    async fn fulfil_digital(&self, p: &Placing<'_>) -> Position {
        let (o, oid, m) = (p.o, p.oid, p.m);
        let mut licenses = BTreeMap::new();
        for l in &p.digital {
            let lid = o.license_id(l.sku);
            licenses.insert(sku(l.sku), lid);
            self.append(
                lid.stream(),
                [
                    LicenseEvent::LicenseIssued {
                        license_id: lid,
                        sku: sku(l.sku),
                        order_id: oid,
                        customer_id: p.customer_id,
                        seats: 3,
                        key: format!("KEY-{}-{}", l.sku, &oid.to_string()[..8]),
                        expires_at: Some(t(m + 3) + Duration::days(365)),
                        at: t(m + 3),
                    }
                    .into(),
                    LicenseEvent::LicenseAttached {
                        license_id: lid,
                        customer_id: p.customer_id,
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
        self.append(
            oid.stream(),
            [order(OrderEvent::OrderFulfilled {
                order_id: oid,
                licenses,
                at: t(m + 3),
            })],
        )
        .await
    }

    async fn ship(&self, p: &Placing<'_>) -> Position {
        let (oid, m) = (p.oid, p.m);
        self.append(
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
        .await
    }

    async fn refund(&self, p: &Placing<'_>, amount: i64) -> Position {
        let (oid, pid, m) = (p.oid, p.pid, p.m);
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
        self.append(
            oid.stream(),
            [order(OrderEvent::OrderRefunded {
                order_id: oid,
                amount: usd(amount),
                reason: "customer request".into(),
                refund_reference,
                at: t(m + 10),
            })],
        )
        .await
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
}
