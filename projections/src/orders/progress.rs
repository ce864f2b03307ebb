//! The columns of an order row that move after its placing, and how each event moves them.

use chrono::{DateTime, Utc};
use purser_domain::order::{OrderEvent, OrderStatus};
use purser_domain::payment::PaymentEvent;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{PgQuery, StatusChange, cancelled_by, status_change};
use crate::column as col;

/// The columns of a `sales.orders` row that the events after its placing change, plus
/// `has_physical`, which decides what `OrderFulfilled` does to the status.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct Progress {
    pub(super) order_id: Uuid,
    has_physical: bool,
    pub(super) status: String,
    payment_id: Option<Uuid>,
    payment_reference: Option<String>,
    captured_minor: Option<i64>,
    paid_at: Option<DateTime<Utc>>,
    failure_reason: Option<String>,
    failure_message: Option<String>,
    cancel_reason: Option<String>,
    cancelled_by: Option<String>,
    cancelled_at: Option<DateTime<Utc>>,
    refunded_minor: i64,
    tracking_number: Option<String>,
    carrier: Option<String>,
    estimated_delivery: Option<DateTime<Utc>>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    fulfilled_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    pub(super) timeline_length: i32,
}

/// The columns of [`Progress`] as they are selected and written.
pub(super) const PROGRESS_COLUMNS: &str =
    "order_id, has_physical, status, payment_id, payment_reference,
    captured_minor, paid_at, failure_reason, failure_message, cancel_reason, cancelled_by,
    cancelled_at, refunded_minor, tracking_number, carrier, estimated_delivery, shipped_at,
    delivered_at, fulfilled_at, updated_at, timeline_length";

impl Progress {
    /// A freshly placed order's row.
    pub(super) fn placed(order_id: Uuid, has_physical: bool, at: DateTime<Utc>) -> Progress {
        Progress {
            order_id,
            has_physical,
            status: OrderStatus::Pending.as_str().to_owned(),
            payment_id: None,
            payment_reference: None,
            captured_minor: None,
            paid_at: None,
            failure_reason: None,
            failure_message: None,
            cancel_reason: None,
            cancelled_by: None,
            cancelled_at: None,
            refunded_minor: 0,
            tracking_number: None,
            carrier: None,
            estimated_delivery: None,
            shipped_at: None,
            delivered_at: None,
            fulfilled_at: None,
            updated_at: at,
            timeline_length: 1,
        }
    }

    /// Moves the row by an order event after the placing; returns the detail of the timeline
    /// step the event makes (every order event makes one).
    pub(super) fn order_event(&mut self, e: &OrderEvent) -> Value {
        let at = e.at();
        match status_change(e) {
            StatusChange::To(s) => self.status = s.as_str().to_owned(),
            StatusChange::Keep => {}
            StatusChange::FulfilledIfDigitalOnly => {
                if !self.has_physical {
                    self.status = OrderStatus::Fulfilled.as_str().to_owned();
                }
            }
        }
        self.updated_at = at;
        self.timeline_length += 1;
        match e {
            // The placing makes the row (see `Batch::place`); it never reaches here.
            OrderEvent::OrderPlaced { .. } => json!({}),
            OrderEvent::OrderPaymentStarted { payment_id, .. } => {
                self.payment_id = Some(payment_id.as_uuid());
                json!({ "payment_id": payment_id })
            }
            OrderEvent::OrderPaid {
                payment_id,
                gateway_reference,
                amount,
                ..
            } => {
                self.payment_id = Some(payment_id.as_uuid());
                self.payment_reference = Some(gateway_reference.clone());
                self.captured_minor = Some(amount.minor);
                self.paid_at.get_or_insert(at);
                json!({
                    "payment_reference": gateway_reference,
                    "amount_minor": amount.minor,
                    "currency": amount.currency.code(),
                })
            }
            OrderEvent::OrderPaymentFailed {
                reason, message, ..
            } => {
                self.failure_reason = Some(reason.clone());
                self.failure_message = Some(message.clone());
                json!({ "failure_reason": reason, "message": message })
            }
            OrderEvent::OrderInventoryUnavailable { skus, .. } => {
                let skus: Vec<&str> = skus.iter().map(|s| s.as_str()).collect();
                json!({ "skus": skus })
            }
            OrderEvent::OrderConfirmed { .. } | OrderEvent::OrderProcessingStarted { .. } => {
                json!({})
            }
            OrderEvent::OrderDelivered { .. } => {
                self.delivered_at = Some(at);
                json!({})
            }
            OrderEvent::OrderLicenseAttached {
                sku, license_id, ..
            } => json!({ "sku": sku.as_str(), "license_id": license_id }),
            OrderEvent::OrderFulfilled { licenses, .. } => {
                self.fulfilled_at.get_or_insert(at);
                let licenses: serde_json::Map<String, Value> = licenses
                    .iter()
                    .map(|(sku, id)| (sku.as_str().to_owned(), json!(id)))
                    .collect();
                json!({ "licenses": licenses })
            }
            OrderEvent::OrderShipped {
                tracking_number,
                carrier,
                estimated_delivery,
                ..
            } => {
                self.tracking_number = Some(tracking_number.clone());
                self.carrier = Some(carrier.clone());
                self.estimated_delivery = *estimated_delivery;
                self.shipped_at = Some(at);
                json!({
                    "tracking_number": tracking_number,
                    "carrier": carrier,
                    "estimated_delivery": estimated_delivery,
                })
            }
            OrderEvent::OrderCancelled {
                reason,
                by,
                was_paid,
                ..
            } => {
                self.cancel_reason = Some(reason.clone());
                self.cancelled_by = Some(cancelled_by(*by).to_owned());
                self.cancelled_at = Some(at);
                json!({ "reason": reason, "by": cancelled_by(*by), "was_paid": was_paid })
            }
            OrderEvent::OrderClaimed { customer_id, .. } => {
                json!({ "customer_id": customer_id })
            }
            OrderEvent::OrderRefunded {
                amount,
                reason,
                refund_reference,
                ..
            } => {
                self.refunded_minor += amount.minor;
                json!({
                    "refund_minor": amount.minor,
                    "currency": amount.currency.code(),
                    "reason": reason,
                    "refund_reference": refund_reference,
                })
            }
        }
    }

    /// Moves the row by a payment event; returns `(at, detail)` of the timeline step when the
    /// event makes one (a retried attempt does; the others only fill in columns).
    pub(super) fn payment_event(&mut self, e: &PaymentEvent) -> Option<(DateTime<Utc>, Value)> {
        match e {
            // The order learns its payment id from `OrderPaymentStarted` too; whichever comes
            // first fills it in, and both carry the same id.
            PaymentEvent::PaymentIntentCreated { payment_id, .. } => {
                self.payment_id.get_or_insert(payment_id.as_uuid());
                None
            }
            PaymentEvent::PaymentAttemptFailed {
                payment_id,
                attempt,
                error,
                retry_at,
                at,
                ..
            } => {
                self.updated_at = *at;
                self.timeline_length += 1;
                Some((
                    *at,
                    json!({
                        "payment_id": payment_id,
                        "attempt": attempt,
                        "error": error,
                        "retry_at": retry_at,
                    }),
                ))
            }
            // The payment's own record of the capture. It also covers a capture that arrived
            // after the order was cancelled, which the order itself never records.
            PaymentEvent::PaymentCaptured {
                gateway_reference, ..
            } => {
                self.payment_reference = Some(gateway_reference.clone());
                None
            }
            PaymentEvent::PaymentFailed {
                reason, message, ..
            } => {
                self.failure_reason = Some(reason.code().to_owned());
                self.failure_message = Some(message.clone());
                None
            }
            // Refunds are recorded from `OrderRefunded`, the order's own account of them.
            PaymentEvent::PaymentRefunded { .. } => None,
        }
    }
}

/// The [`PROGRESS_COLUMNS`] an update sets (all but the key and `has_physical`, which never
/// change), each with `prefix`.
pub(super) fn progress_tail(prefix: &str) -> String {
    PROGRESS_COLUMNS
        .split(',')
        .map(str::trim)
        .filter(|c| !matches!(*c, "order_id" | "has_physical"))
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$1..$21`: every moved or placed order's [`Progress`] columns.
pub(super) fn bind_progress<'q>(q: PgQuery<'q>, rows: &'q [&'q Progress]) -> PgQuery<'q> {
    q.bind(col(rows, |r| r.order_id))
        .bind(col(rows, |r| r.has_physical))
        .bind(col(rows, |r| r.status.as_str()))
        .bind(col(rows, |r| r.payment_id))
        .bind(col(rows, |r| r.payment_reference.as_deref()))
        .bind(col(rows, |r| r.captured_minor))
        .bind(col(rows, |r| r.paid_at))
        .bind(col(rows, |r| r.failure_reason.as_deref()))
        .bind(col(rows, |r| r.failure_message.as_deref()))
        .bind(col(rows, |r| r.cancel_reason.as_deref()))
        .bind(col(rows, |r| r.cancelled_by.as_deref()))
        .bind(col(rows, |r| r.cancelled_at))
        .bind(col(rows, |r| r.refunded_minor))
        .bind(col(rows, |r| r.tracking_number.as_deref()))
        .bind(col(rows, |r| r.carrier.as_deref()))
        .bind(col(rows, |r| r.estimated_delivery))
        .bind(col(rows, |r| r.shipped_at))
        .bind(col(rows, |r| r.delivered_at))
        .bind(col(rows, |r| r.fulfilled_at))
        .bind(col(rows, |r| r.updated_at))
        .bind(col(rows, |r| r.timeline_length))
}
