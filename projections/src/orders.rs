//! The order read model: `sales.orders`, `sales.order_lines` and `sales.order_timeline`.
//!
//! Order events give the summary, the lines and one timeline step each. Payment events (they
//! carry the order id) fill in what the order's own events do not say: the payment id as soon
//! as the intent exists, the gateway reference, the failure code and message, and a timeline
//! step for each retried attempt (`PaymentAttemptFailed`, which does not change the status).
//!
//! Every value written comes from the events (never the clock), so a rebuild from zero gives
//! the same rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use purser_domain::events::AnyEvent;
use purser_domain::order::{CancelledBy, OrderEvent, OrderLine, OrderStatus};
use purser_domain::payment::PaymentEvent;
use purser_event_store::{EventFilter, RecordedEvent};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Projection, ProjectionError, decode};

pub struct OrdersProjection;

impl OrdersProjection {
    pub const NAME: &'static str = "orders";
}

/// How an order event moves the order's status. Shared with the analytics projection so the
/// two can never disagree about an order's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusChange {
    To(OrderStatus),
    Keep,
    /// `OrderFulfilled` completes a digital-only order; a mixed order records it and carries on
    /// along its physical path (the domain's `evolve` does the same).
    FulfilledIfDigitalOnly,
}

pub(crate) fn status_change(e: &OrderEvent) -> StatusChange {
    use OrderStatus as S;
    use StatusChange::{Keep, To};
    match e {
        OrderEvent::OrderPlaced { .. } => To(S::Pending),
        OrderEvent::OrderPaymentStarted { .. } => To(S::PaymentProcessing),
        OrderEvent::OrderPaid { .. } => To(S::Paid),
        OrderEvent::OrderPaymentFailed { .. } => To(S::PaymentFailed),
        OrderEvent::OrderInventoryUnavailable { .. } => To(S::InventoryUnavailable),
        OrderEvent::OrderConfirmed { .. } => To(S::Confirmed),
        OrderEvent::OrderLicenseAttached { .. } => Keep,
        OrderEvent::OrderFulfilled { .. } => StatusChange::FulfilledIfDigitalOnly,
        OrderEvent::OrderProcessingStarted { .. } => To(S::Processing),
        OrderEvent::OrderShipped { .. } => To(S::Shipped),
        OrderEvent::OrderDelivered { .. } => To(S::Delivered),
        OrderEvent::OrderCancelled { .. } => To(S::Cancelled),
        OrderEvent::OrderRefunded { .. } => To(S::Refunded),
    }
}

/// The SQL expression for the status after a change, given the `status` and `has_physical`
/// columns of the row being updated.
pub(crate) fn status_sql(change: StatusChange) -> String {
    match change {
        StatusChange::To(s) => format!("'{}'", s.as_str()),
        StatusChange::Keep => "status".to_owned(),
        StatusChange::FulfilledIfDigitalOnly => {
            "case when has_physical then status else 'FULFILLED' end".to_owned()
        }
    }
}

pub(crate) fn cancelled_by(by: CancelledBy) -> &'static str {
    match by {
        CancelledBy::Customer => "customer",
        CancelledBy::Admin => "admin",
        CancelledBy::System => "system",
    }
}

/// Binds an order's lines as the seven arrays (sku, name, kind, qty, unit price, line total,
/// currency) that `unnest(…) with ordinality` turns into line rows, numbered from 1.
pub fn bind_lines<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    lines: &'q [OrderLine],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    q.bind(lines.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.name.as_str()).collect::<Vec<_>>())
        .bind(lines.iter().map(line_kind).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.qty.get() as i32).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.unit_price.minor).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.line_total.minor).collect::<Vec<_>>())
        .bind(
            lines
                .iter()
                .map(|l| l.unit_price.currency.code())
                .collect::<Vec<_>>(),
        )
}

pub(crate) fn line_kind(line: &OrderLine) -> &'static str {
    if line.is_digital() {
        "digital"
    } else {
        "physical"
    }
}

/// The order id every order event carries.
pub(crate) fn order_id_of(e: &OrderEvent) -> Uuid {
    match e {
        OrderEvent::OrderPlaced { order_id, .. }
        | OrderEvent::OrderPaymentStarted { order_id, .. }
        | OrderEvent::OrderPaid { order_id, .. }
        | OrderEvent::OrderPaymentFailed { order_id, .. }
        | OrderEvent::OrderInventoryUnavailable { order_id, .. }
        | OrderEvent::OrderConfirmed { order_id, .. }
        | OrderEvent::OrderLicenseAttached { order_id, .. }
        | OrderEvent::OrderFulfilled { order_id, .. }
        | OrderEvent::OrderProcessingStarted { order_id, .. }
        | OrderEvent::OrderShipped { order_id, .. }
        | OrderEvent::OrderDelivered { order_id, .. }
        | OrderEvent::OrderCancelled { order_id, .. }
        | OrderEvent::OrderRefunded { order_id, .. } => order_id.as_uuid(),
    }
}

/// The time every order event carries.
pub(crate) fn order_event_at(e: &OrderEvent) -> DateTime<Utc> {
    match e {
        OrderEvent::OrderPlaced { at, .. }
        | OrderEvent::OrderPaymentStarted { at, .. }
        | OrderEvent::OrderPaid { at, .. }
        | OrderEvent::OrderPaymentFailed { at, .. }
        | OrderEvent::OrderInventoryUnavailable { at, .. }
        | OrderEvent::OrderConfirmed { at, .. }
        | OrderEvent::OrderLicenseAttached { at, .. }
        | OrderEvent::OrderFulfilled { at, .. }
        | OrderEvent::OrderProcessingStarted { at, .. }
        | OrderEvent::OrderShipped { at, .. }
        | OrderEvent::OrderDelivered { at, .. }
        | OrderEvent::OrderCancelled { at, .. }
        | OrderEvent::OrderRefunded { at, .. } => *at,
    }
}

#[async_trait]
impl Projection for OrdersProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::categories(["order", "payment"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["sales.orders", "sales.order_lines", "sales.order_timeline"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        match decode(event)? {
            AnyEvent::Order(e) => apply_order(tx, e, event.event_type.as_str()).await,
            AnyEvent::Payment(e) => apply_payment(tx, e, event.event_type.as_str()).await,
            _ => Ok(()),
        }
    }
}

/// What one order event writes to its `sales.orders` row besides the status, the timeline
/// length and `updated_at`: extra `SET` assignments over a fixed set of parameters, each
/// variant using the ones it needs ($5 a uuid, $6 and $7 texts, $8 an amount, $9 a time).
/// sqlx declares every parameter's type, so an unused one costs nothing.
#[derive(Default)]
struct RowChange {
    set: &'static str,
    id: Option<Uuid>,
    text: Option<String>,
    text2: Option<String>,
    amount: Option<i64>,
    time: Option<DateTime<Utc>>,
}

/// Moves the order's status, stamps the event's own columns, and appends the timeline step,
/// all in one statement. Does nothing when the order is unknown (a payment event for an order
/// this model never saw placed).
async fn step(
    tx: &mut PgConnection,
    order_id: Uuid,
    change: StatusChange,
    event: &str,
    at: DateTime<Utc>,
    detail: Value,
    row: RowChange,
) -> Result<(), sqlx::Error> {
    let status = status_sql(change);
    let set = if row.set.is_empty() {
        String::new()
    } else {
        format!(", {}", row.set)
    };
    sqlx::query(&format!(
        "with o as (
             update sales.orders
             set timeline_length = timeline_length + 1, status = {status}, updated_at = $3{set}
             where order_id = $1
             returning timeline_length, status)
         insert into sales.order_timeline (order_id, seq, status, event, at, detail)
         select $1, o.timeline_length, o.status, $2, $3, $4 from o"
    ))
    .bind(order_id)
    .bind(event)
    .bind(at)
    .bind(detail)
    .bind(row.id)
    .bind(row.text)
    .bind(row.text2)
    .bind(row.amount)
    .bind(row.time)
    .execute(tx)
    .await?;
    Ok(())
}

/// `OrderPlaced`: the order row, its lines and its first timeline step in one statement.
async fn place(
    tx: &mut PgConnection,
    order_id: Uuid,
    e: &OrderEvent,
    event_type: &str,
) -> Result<(), ProjectionError> {
    let OrderEvent::OrderPlaced {
        customer_id,
        email,
        lines,
        total,
        cart_id,
        shipping_address,
        at,
        ..
    } = e
    else {
        return Ok(());
    };
    let item_count: i64 = lines.iter().map(|l| i64::from(l.qty.get())).sum();
    let address = shipping_address
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| ProjectionError::Other(format!("shipping address: {e}")))?;
    let detail = json!({
        "total_minor": total.minor,
        "currency": total.currency.code(),
        "item_count": item_count,
    });
    // The lines and the timeline step reference the order row inserted beside them; foreign
    // keys are checked at the end of the statement, when it exists.
    let q = sqlx::query(
        "with o as (
             insert into sales.orders
                (order_id, customer_id, email, status, currency, total_minor, item_count,
                 line_count, cart_id, has_digital, has_physical, shipping_address, placed_at,
                 updated_at, timeline_length)
             values ($1, $2, $3, 'PENDING', $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, 1)
             returning order_id),
         l as (
             insert into sales.order_lines
                (order_id, line_no, sku, name, kind, qty, unit_price_minor, line_total_minor,
                 currency)
             select $1, t.ord, t.sku, t.name, t.kind, t.qty, t.unit, t.total, t.currency
             from unnest($15::text[], $16::text[], $17::text[], $18::int[], $19::bigint[],
                         $20::bigint[], $21::text[])
                  with ordinality as t(sku, name, kind, qty, unit, total, currency, ord))
         insert into sales.order_timeline (order_id, seq, status, event, at, detail)
         select o.order_id, 1, 'PENDING', $13, $12, $14 from o",
    )
    .bind(order_id)
    .bind(customer_id.as_uuid())
    .bind(email.as_str())
    .bind(total.currency.code())
    .bind(total.minor)
    .bind(item_count)
    .bind(lines.len() as i32)
    .bind(cart_id.map(|c| c.as_uuid()))
    .bind(lines.iter().any(OrderLine::is_digital))
    .bind(lines.iter().any(|l| !l.is_digital()))
    .bind(address)
    .bind(at)
    .bind(event_type)
    .bind(detail);
    bind_lines(q, lines).execute(&mut *tx).await?;
    Ok(())
}

async fn apply_order(
    tx: &mut PgConnection,
    e: OrderEvent,
    event_type: &str,
) -> Result<(), ProjectionError> {
    let order_id = order_id_of(&e);
    let at = order_event_at(&e);
    let change = status_change(&e);
    let (detail, row) = match &e {
        OrderEvent::OrderPlaced { .. } => return place(tx, order_id, &e, event_type).await,
        OrderEvent::OrderPaymentStarted { payment_id, .. } => (
            json!({ "payment_id": payment_id }),
            RowChange {
                set: "payment_id = $5",
                id: Some(payment_id.as_uuid()),
                ..RowChange::default()
            },
        ),
        OrderEvent::OrderPaid {
            payment_id,
            gateway_reference,
            amount,
            ..
        } => (
            json!({
                "payment_reference": gateway_reference,
                "amount_minor": amount.minor,
                "currency": amount.currency.code(),
            }),
            RowChange {
                set: "payment_id = $5, payment_reference = $6, captured_minor = $8,
                      paid_at = coalesce(paid_at, $3)",
                id: Some(payment_id.as_uuid()),
                text: Some(gateway_reference.clone()),
                amount: Some(amount.minor),
                ..RowChange::default()
            },
        ),
        OrderEvent::OrderPaymentFailed {
            reason, message, ..
        } => (
            json!({ "failure_reason": reason, "message": message }),
            RowChange {
                set: "failure_reason = $6, failure_message = $7",
                text: Some(reason.clone()),
                text2: Some(message.clone()),
                ..RowChange::default()
            },
        ),
        OrderEvent::OrderInventoryUnavailable { skus, .. } => {
            let skus: Vec<&str> = skus.iter().map(|s| s.as_str()).collect();
            (json!({ "skus": skus }), RowChange::default())
        }
        OrderEvent::OrderConfirmed { .. } | OrderEvent::OrderProcessingStarted { .. } => {
            (json!({}), RowChange::default())
        }
        OrderEvent::OrderLicenseAttached {
            sku, license_id, ..
        } => {
            sqlx::query(
                "update sales.order_lines set license_id = $3
                 where order_id = $1 and sku = $2 and kind = 'digital'",
            )
            .bind(order_id)
            .bind(sku.as_str())
            .bind(license_id.as_uuid())
            .execute(&mut *tx)
            .await?;
            (
                json!({ "sku": sku.as_str(), "license_id": license_id }),
                RowChange::default(),
            )
        }
        OrderEvent::OrderFulfilled { licenses, .. } => {
            let licenses: serde_json::Map<String, Value> = licenses
                .iter()
                .map(|(sku, id)| (sku.as_str().to_owned(), json!(id)))
                .collect();
            (
                json!({ "licenses": licenses }),
                RowChange {
                    set: "fulfilled_at = coalesce(fulfilled_at, $3)",
                    ..RowChange::default()
                },
            )
        }
        OrderEvent::OrderShipped {
            tracking_number,
            carrier,
            estimated_delivery,
            ..
        } => (
            json!({
                "tracking_number": tracking_number,
                "carrier": carrier,
                "estimated_delivery": estimated_delivery,
            }),
            RowChange {
                set: "tracking_number = $6, carrier = $7, estimated_delivery = $9,
                      shipped_at = $3",
                text: Some(tracking_number.clone()),
                text2: Some(carrier.clone()),
                time: *estimated_delivery,
                ..RowChange::default()
            },
        ),
        OrderEvent::OrderDelivered { .. } => (
            json!({}),
            RowChange {
                set: "delivered_at = $3",
                ..RowChange::default()
            },
        ),
        OrderEvent::OrderCancelled {
            reason,
            by,
            was_paid,
            ..
        } => (
            json!({ "reason": reason, "by": cancelled_by(*by), "was_paid": was_paid }),
            RowChange {
                set: "cancel_reason = $6, cancelled_by = $7, cancelled_at = $3",
                text: Some(reason.clone()),
                text2: Some(cancelled_by(*by).to_owned()),
                ..RowChange::default()
            },
        ),
        OrderEvent::OrderRefunded {
            amount,
            reason,
            refund_reference,
            ..
        } => (
            json!({
                "refund_minor": amount.minor,
                "currency": amount.currency.code(),
                "reason": reason,
                "refund_reference": refund_reference,
            }),
            RowChange {
                set: "refunded_minor = refunded_minor + $8",
                amount: Some(amount.minor),
                ..RowChange::default()
            },
        ),
    };
    step(tx, order_id, change, event_type, at, detail, row).await?;
    Ok(())
}

async fn apply_payment(
    tx: &mut PgConnection,
    e: PaymentEvent,
    event_type: &str,
) -> Result<(), ProjectionError> {
    match e {
        PaymentEvent::PaymentIntentCreated {
            payment_id,
            order_id,
            ..
        } => {
            // The order learns its payment id from `OrderPaymentStarted` too; whichever comes
            // first fills it in, and both carry the same id.
            sqlx::query(
                "update sales.orders set payment_id = coalesce(payment_id, $2) where order_id = $1",
            )
            .bind(order_id.as_uuid())
            .bind(payment_id.as_uuid())
            .execute(&mut *tx)
            .await?;
        }
        PaymentEvent::PaymentAttemptFailed {
            payment_id,
            order_id,
            attempt,
            error,
            retry_at,
            at,
        } => {
            let detail = json!({
                "payment_id": payment_id,
                "attempt": attempt,
                "error": error,
                "retry_at": retry_at,
            });
            step(
                tx,
                order_id.as_uuid(),
                StatusChange::Keep,
                event_type,
                at,
                detail,
                RowChange::default(),
            )
            .await?;
        }
        PaymentEvent::PaymentCaptured {
            order_id,
            gateway_reference,
            ..
        } => {
            // The payment's own record of the capture. It also covers a capture that arrived
            // after the order was cancelled, which the order itself never records.
            sqlx::query("update sales.orders set payment_reference = $2 where order_id = $1")
                .bind(order_id.as_uuid())
                .bind(gateway_reference)
                .execute(&mut *tx)
                .await?;
        }
        PaymentEvent::PaymentFailed {
            order_id,
            reason,
            message,
            ..
        } => {
            sqlx::query(
                "update sales.orders set failure_reason = $2, failure_message = $3 where order_id = $1",
            )
            .bind(order_id.as_uuid())
            .bind(reason.code())
            .bind(message)
            .execute(&mut *tx)
            .await?;
        }
        // Refunds are recorded from `OrderRefunded`, the order's own account of them.
        PaymentEvent::PaymentRefunded { .. } => {}
    }
    Ok(())
}
