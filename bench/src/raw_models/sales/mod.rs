//! Row 4's baseline for the order read model (`sales.orders`, `sales.order_lines`,
//! `sales.order_timeline`): a page's order and payment events folded per order by hand, then
//! written with the statements the projection issues (`projections/src/orders`): one query
//! reading the stored rows the page moves, one statement writing everything. Only the events
//! the generator makes are handled.

use std::collections::{HashMap, HashSet};

use anyhow::bail;
use chrono::{DateTime, Utc};
use purser_domain::order::{CancelledBy, OrderEvent, OrderLine};
use purser_domain::payment::PaymentEvent;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

mod write;

/// A page's order and payment events, in log order, with their event types.
#[derive(Default)]
pub(in crate::raw_models) struct SalesPage {
    events: Vec<(String, Sales)>,
}

enum Sales {
    Order(OrderEvent),
    Payment(PaymentEvent),
}

/// An order row's columns that change after the placing (and `has_physical`).
#[derive(sqlx::FromRow)]
struct Row {
    order_id: Uuid,
    has_physical: bool,
    status: String,
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
    timeline_length: i32,
}

impl Row {
    /// A freshly placed order's row.
    fn placed(order_id: Uuid, has_physical: bool, at: DateTime<Utc>) -> Row {
        Row {
            order_id,
            has_physical,
            status: "PENDING".to_owned(),
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
}

/// An order placed in the page: its row is inserted.
struct New {
    customer_id: Uuid,
    email: String,
    currency: String,
    total_minor: i64,
    item_count: i32,
    cart_id: Option<Uuid>,
    has_digital: bool,
    shipping_address: Option<Value>,
    placed_at: DateTime<Utc>,
    lines: Vec<OrderLine>,
}

type Step = (Uuid, i32, String, String, DateTime<Utc>, Value);

impl SalesPage {
    pub(in crate::raw_models) fn order(&mut self, event_type: &str, e: &OrderEvent) {
        self.events
            .push((event_type.to_owned(), Sales::Order(e.clone())));
    }

    pub(in crate::raw_models) fn payment(&mut self, event_type: &str, e: &PaymentEvent) {
        self.events
            .push((event_type.to_owned(), Sales::Payment(e.clone())));
    }

    pub(in crate::raw_models) async fn finish(self, tx: &mut PgConnection) -> anyhow::Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<(Row, Option<New>)> = Vec::new();
        let mut index: HashMap<Uuid, usize> = HashMap::new();
        let read = self.rows_to_read();
        if !read.is_empty() {
            for r in load(&mut *tx, &read).await? {
                index.insert(r.order_id, rows.len());
                rows.push((r, None));
            }
        }
        let mut steps: Vec<Step> = Vec::new();
        for (event_type, e) in self.events {
            match e {
                Sales::Order(e) => fold_order(&mut rows, &mut index, &mut steps, event_type, e)?,
                Sales::Payment(e) => {
                    if let Some(&i) = index.get(&e.order_id().as_uuid()) {
                        fold_payment(&mut rows[i].0, e)?;
                    }
                }
            }
        }
        write::write(tx, rows, steps).await
    }

    /// The stored rows the page moves: orders with an event not preceded by their placing.
    fn rows_to_read(&self) -> Vec<Uuid> {
        let mut placed = HashSet::new();
        let mut read = Vec::new();
        for (_, e) in &self.events {
            match e {
                Sales::Order(OrderEvent::OrderPlaced { order_id, .. }) => {
                    placed.insert(order_id.as_uuid());
                }
                Sales::Order(e) => {
                    let id = e.order_id().as_uuid();
                    if !placed.contains(&id) {
                        read.push(id);
                    }
                }
                Sales::Payment(e) => {
                    let id = e.order_id().as_uuid();
                    if !placed.contains(&id) {
                        read.push(id);
                    }
                }
            }
        }
        read
    }
}

async fn load(tx: &mut PgConnection, ids: &[Uuid]) -> anyhow::Result<Vec<Row>> {
    Ok(sqlx::query_as(
        "select order_id, has_physical, status, payment_id, payment_reference,
                captured_minor, paid_at, failure_reason, failure_message, cancel_reason,
                cancelled_by, cancelled_at, refunded_minor, tracking_number, carrier,
                estimated_delivery, shipped_at, delivered_at, fulfilled_at, updated_at,
                timeline_length
         from sales.orders where order_id = any($1)",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?)
}

fn fold_payment(r: &mut Row, e: PaymentEvent) -> anyhow::Result<()> {
    match e {
        PaymentEvent::PaymentIntentCreated { payment_id, .. } => {
            r.payment_id.get_or_insert(payment_id.as_uuid());
        }
        PaymentEvent::PaymentCaptured {
            gateway_reference, ..
        } => r.payment_reference = Some(gateway_reference),
        PaymentEvent::PaymentFailed {
            reason, message, ..
        } => {
            r.failure_reason = Some(reason.code().to_owned());
            r.failure_message = Some(message);
        }
        PaymentEvent::PaymentRefunded { .. } => {}
        PaymentEvent::PaymentAttemptFailed { .. } => {
            bail!("the raw baseline does not handle PaymentAttemptFailed")
        }
    }
    Ok(())
}

fn fold_order(
    rows: &mut Vec<(Row, Option<New>)>,
    index: &mut HashMap<Uuid, usize>,
    steps: &mut Vec<Step>,
    event_type: String,
    e: OrderEvent,
) -> anyhow::Result<()> {
    if let OrderEvent::OrderPlaced { .. } = e {
        return place(rows, index, steps, event_type, e);
    }
    let Some(&i) = index.get(&e.order_id().as_uuid()) else {
        return Ok(());
    };
    let r = &mut rows[i].0;
    let (status, at, detail) = fold_later(r, e)?;
    r.status = status.to_owned();
    r.updated_at = at;
    r.timeline_length += 1;
    steps.push((
        r.order_id,
        r.timeline_length,
        status.to_owned(),
        event_type,
        at,
        detail,
    ));
    Ok(())
}

/// `OrderPlaced`: a new row (inserted, with its lines) and the first timeline step.
fn place(
    rows: &mut Vec<(Row, Option<New>)>,
    index: &mut HashMap<Uuid, usize>,
    steps: &mut Vec<Step>,
    event_type: String,
    e: OrderEvent,
) -> anyhow::Result<()> {
    let OrderEvent::OrderPlaced {
        order_id,
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
    let id = order_id.as_uuid();
    if index.contains_key(&id) {
        bail!("order {id} placed twice");
    }
    let item_count: i32 = lines.iter().map(|l| l.qty.get() as i32).sum();
    steps.push((
        id,
        1,
        "PENDING".to_owned(),
        event_type,
        at,
        json!({
            "total_minor": total.minor,
            "currency": total.currency.code(),
            "item_count": item_count,
        }),
    ));
    index.insert(id, rows.len());
    rows.push((
        Row::placed(id, lines.iter().any(|l| !l.is_digital()), at),
        Some(New {
            customer_id: customer_id.as_uuid(),
            email: email.as_str().to_owned(),
            currency: total.currency.code().to_owned(),
            total_minor: total.minor,
            item_count,
            cart_id: cart_id.map(|c| c.as_uuid()),
            has_digital: lines.iter().any(OrderLine::is_digital),
            shipping_address: shipping_address
                .as_ref()
                .map(serde_json::to_value)
                .transpose()?,
            placed_at: at,
            lines,
        }),
    ));
    Ok(())
}

/// Moves the row by an order event after the placing; returns the status, time and detail
/// of the timeline step it makes.
fn fold_later(r: &mut Row, e: OrderEvent) -> anyhow::Result<(&'static str, DateTime<Utc>, Value)> {
    Ok(match e {
        OrderEvent::OrderPaymentStarted { payment_id, at, .. } => {
            r.payment_id = Some(payment_id.as_uuid());
            (
                "PAYMENT_PROCESSING",
                at,
                json!({ "payment_id": payment_id }),
            )
        }
        OrderEvent::OrderPaid {
            payment_id,
            gateway_reference,
            amount,
            at,
            ..
        } => {
            r.payment_id = Some(payment_id.as_uuid());
            r.captured_minor = Some(amount.minor);
            r.paid_at.get_or_insert(at);
            let detail = json!({
                "payment_reference": gateway_reference,
                "amount_minor": amount.minor,
                "currency": amount.currency.code(),
            });
            r.payment_reference = Some(gateway_reference);
            ("PAID", at, detail)
        }
        OrderEvent::OrderPaymentFailed {
            reason,
            message,
            at,
            ..
        } => {
            let detail = json!({ "failure_reason": reason, "message": message });
            r.failure_reason = Some(reason);
            r.failure_message = Some(message);
            ("PAYMENT_FAILED", at, detail)
        }
        OrderEvent::OrderConfirmed { at, .. } => ("CONFIRMED", at, json!({})),
        OrderEvent::OrderProcessingStarted { at, .. } => ("PROCESSING", at, json!({})),
        OrderEvent::OrderShipped {
            tracking_number,
            carrier,
            estimated_delivery,
            at,
            ..
        } => {
            let detail = json!({
                "tracking_number": tracking_number,
                "carrier": carrier,
                "estimated_delivery": estimated_delivery,
            });
            r.tracking_number = Some(tracking_number);
            r.carrier = Some(carrier);
            r.estimated_delivery = estimated_delivery;
            r.shipped_at = Some(at);
            ("SHIPPED", at, detail)
        }
        OrderEvent::OrderDelivered { at, .. } => {
            r.delivered_at = Some(at);
            ("DELIVERED", at, json!({}))
        }
        OrderEvent::OrderCancelled {
            reason,
            by,
            was_paid,
            at,
            ..
        } => {
            let by = match by {
                CancelledBy::Customer => "customer",
                CancelledBy::Admin => "admin",
                CancelledBy::System => "system",
            };
            let detail = json!({ "reason": reason, "by": by, "was_paid": was_paid });
            r.cancel_reason = Some(reason);
            r.cancelled_by = Some(by.to_owned());
            r.cancelled_at = Some(at);
            ("CANCELLED", at, detail)
        }
        other => bail!(
            "the raw baseline does not handle {} (the generator does not make it)",
            purser_domain::Event::event_type(&other)
        ),
    })
}
