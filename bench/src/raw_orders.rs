//! Row 4's baseline for the order read model (`sales.orders`, `sales.order_lines`,
//! `sales.order_timeline`): a page's order and payment events folded per order by hand, then
//! written with the statements the projection issues (`projections/src/orders.rs`): one query
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

/// A page's order and payment events, in log order, with their event types.
#[derive(Default)]
pub(crate) struct SalesPage {
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
    pub(crate) fn order(&mut self, event_type: &str, e: &OrderEvent) {
        self.events
            .push((event_type.to_owned(), Sales::Order(e.clone())));
    }

    pub(crate) fn payment(&mut self, event_type: &str, e: &PaymentEvent) {
        self.events
            .push((event_type.to_owned(), Sales::Payment(e.clone())));
    }

    pub(crate) async fn finish(self, tx: &mut PgConnection) -> anyhow::Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        // The stored rows the page moves: orders with an event not preceded by their placing.
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
        let mut rows: Vec<(Row, Option<New>)> = Vec::new();
        let mut index: HashMap<Uuid, usize> = HashMap::new();
        if !read.is_empty() {
            let stored: Vec<Row> = sqlx::query_as(
                "select order_id, has_physical, status, payment_id, payment_reference,
                        captured_minor, paid_at, failure_reason, failure_message, cancel_reason,
                        cancelled_by, cancelled_at, refunded_minor, tracking_number, carrier,
                        estimated_delivery, shipped_at, delivered_at, fulfilled_at, updated_at,
                        timeline_length
                 from sales.orders where order_id = any($1)",
            )
            .bind(&read)
            .fetch_all(&mut *tx)
            .await?;
            for r in stored {
                index.insert(r.order_id, rows.len());
                rows.push((r, None));
            }
        }
        let mut steps: Vec<Step> = Vec::new();
        for (event_type, e) in self.events {
            match e {
                Sales::Order(e) => fold_order(&mut rows, &mut index, &mut steps, event_type, e)?,
                Sales::Payment(e) => {
                    let Some(&i) = index.get(&e.order_id().as_uuid()) else {
                        continue;
                    };
                    let r = &mut rows[i].0;
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
                }
            }
        }
        write(tx, rows, steps).await
    }
}

fn fold_order(
    rows: &mut Vec<(Row, Option<New>)>,
    index: &mut HashMap<Uuid, usize>,
    steps: &mut Vec<Step>,
    event_type: String,
    e: OrderEvent,
) -> anyhow::Result<()> {
    if let OrderEvent::OrderPlaced {
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
    {
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
            Row {
                order_id: id,
                has_physical: lines.iter().any(|l| !l.is_digital()),
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
            },
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
        return Ok(());
    }
    let Some(&i) = index.get(&e.order_id().as_uuid()) else {
        return Ok(());
    };
    let r = &mut rows[i].0;
    let (status, at, detail) = match e {
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
    };
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

async fn write(
    tx: &mut PgConnection,
    rows: Vec<(Row, Option<New>)>,
    steps: Vec<Step>,
) -> anyhow::Result<()> {
    fn col<T, U>(v: &[T], f: impl Fn(&T) -> U) -> Vec<U> {
        v.iter().map(f).collect()
    }
    let new: Vec<(Uuid, &New)> = rows
        .iter()
        .filter_map(|(r, n)| n.as_ref().map(|n| (r.order_id, n)))
        .collect();
    let lines: Vec<(Uuid, i32, &OrderLine)> = new
        .iter()
        .flat_map(|(id, n)| {
            n.lines
                .iter()
                .enumerate()
                .map(move |(k, l)| (*id, k as i32 + 1, l))
        })
        .collect();
    let r: Vec<&Row> = rows.iter().map(|(r, _)| r).collect();
    sqlx::query(
        "with p as (
             select * from unnest($1::uuid[], $2::bool[], $3::text[], $4::uuid[], $5::text[],
                 $6::bigint[], $7::timestamptz[], $8::text[], $9::text[], $10::text[],
                 $11::text[], $12::timestamptz[], $13::bigint[], $14::text[], $15::text[],
                 $16::timestamptz[], $17::timestamptz[], $18::timestamptz[],
                 $19::timestamptz[], $20::timestamptz[], $21::int[])
                 as p(order_id, has_physical, status, payment_id, payment_reference,
                      captured_minor, paid_at, failure_reason, failure_message, cancel_reason,
                      cancelled_by, cancelled_at, refunded_minor, tracking_number, carrier,
                      estimated_delivery, shipped_at, delivered_at, fulfilled_at, updated_at,
                      timeline_length)),
         placed as (
             insert into sales.orders
                (order_id, customer_id, email, currency, total_minor, item_count, line_count,
                 cart_id, has_digital, shipping_address, placed_at, status, payment_id,
                 payment_reference, captured_minor, paid_at, failure_reason, failure_message,
                 cancel_reason, cancelled_by, cancelled_at, refunded_minor, tracking_number,
                 carrier, estimated_delivery, shipped_at, delivered_at, fulfilled_at,
                 updated_at, timeline_length, has_physical)
             select n.order_id, n.customer_id, n.email, n.currency, n.total_minor,
                    n.item_count, n.line_count, n.cart_id, n.has_digital, n.shipping_address,
                    n.placed_at, p.status, p.payment_id, p.payment_reference, p.captured_minor,
                    p.paid_at, p.failure_reason, p.failure_message, p.cancel_reason,
                    p.cancelled_by, p.cancelled_at, p.refunded_minor, p.tracking_number,
                    p.carrier, p.estimated_delivery, p.shipped_at, p.delivered_at,
                    p.fulfilled_at, p.updated_at, p.timeline_length, p.has_physical
             from unnest($22::uuid[], $23::uuid[], $24::text[], $25::text[], $26::bigint[],
                         $27::int[], $28::int[], $29::uuid[], $30::bool[], $31::jsonb[],
                         $32::timestamptz[])
                  as n(order_id, customer_id, email, currency, total_minor, item_count,
                       line_count, cart_id, has_digital, shipping_address, placed_at)
             join p using (order_id)),
         moved as (
             update sales.orders o
             set status = p.status, payment_id = p.payment_id,
                 payment_reference = p.payment_reference, captured_minor = p.captured_minor,
                 paid_at = p.paid_at, failure_reason = p.failure_reason,
                 failure_message = p.failure_message, cancel_reason = p.cancel_reason,
                 cancelled_by = p.cancelled_by, cancelled_at = p.cancelled_at,
                 refunded_minor = p.refunded_minor, tracking_number = p.tracking_number,
                 carrier = p.carrier, estimated_delivery = p.estimated_delivery,
                 shipped_at = p.shipped_at, delivered_at = p.delivered_at,
                 fulfilled_at = p.fulfilled_at, updated_at = p.updated_at,
                 timeline_length = p.timeline_length
             from p where o.order_id = p.order_id),
         lines as (
             insert into sales.order_lines
                (order_id, line_no, sku, name, kind, qty, unit_price_minor, line_total_minor,
                 currency)
             select * from unnest($33::uuid[], $34::int[], $35::text[], $36::text[],
                                  $37::text[], $38::int[], $39::bigint[], $40::bigint[],
                                  $41::text[]))
         insert into sales.order_timeline (order_id, seq, status, event, at, detail)
         select * from unnest($42::uuid[], $43::int[], $44::text[], $45::text[],
                              $46::timestamptz[], $47::jsonb[])",
    )
    .bind(col(&r, |r| r.order_id))
    .bind(col(&r, |r| r.has_physical))
    .bind(col(&r, |r| r.status.clone()))
    .bind(col(&r, |r| r.payment_id))
    .bind(col(&r, |r| r.payment_reference.clone()))
    .bind(col(&r, |r| r.captured_minor))
    .bind(col(&r, |r| r.paid_at))
    .bind(col(&r, |r| r.failure_reason.clone()))
    .bind(col(&r, |r| r.failure_message.clone()))
    .bind(col(&r, |r| r.cancel_reason.clone()))
    .bind(col(&r, |r| r.cancelled_by.clone()))
    .bind(col(&r, |r| r.cancelled_at))
    .bind(col(&r, |r| r.refunded_minor))
    .bind(col(&r, |r| r.tracking_number.clone()))
    .bind(col(&r, |r| r.carrier.clone()))
    .bind(col(&r, |r| r.estimated_delivery))
    .bind(col(&r, |r| r.shipped_at))
    .bind(col(&r, |r| r.delivered_at))
    .bind(col(&r, |r| r.fulfilled_at))
    .bind(col(&r, |r| r.updated_at))
    .bind(col(&r, |r| r.timeline_length))
    .bind(col(&new, |(id, _)| *id))
    .bind(col(&new, |(_, n)| n.customer_id))
    .bind(col(&new, |(_, n)| n.email.clone()))
    .bind(col(&new, |(_, n)| n.currency.clone()))
    .bind(col(&new, |(_, n)| n.total_minor))
    .bind(col(&new, |(_, n)| n.item_count))
    .bind(col(&new, |(_, n)| n.lines.len() as i32))
    .bind(col(&new, |(_, n)| n.cart_id))
    .bind(col(&new, |(_, n)| n.has_digital))
    .bind(col(&new, |(_, n)| n.shipping_address.clone()))
    .bind(col(&new, |(_, n)| n.placed_at))
    .bind(col(&lines, |(id, ..)| *id))
    .bind(col(&lines, |(_, k, _)| *k))
    .bind(col(&lines, |(.., l)| l.sku.as_str().to_owned()))
    .bind(col(&lines, |(.., l)| l.name.clone()))
    .bind(col(&lines, |(.., l)| {
        if l.is_digital() {
            "digital"
        } else {
            "physical"
        }
    }))
    .bind(col(&lines, |(.., l)| l.qty.get() as i32))
    .bind(col(&lines, |(.., l)| l.unit_price.minor))
    .bind(col(&lines, |(.., l)| l.line_total.minor))
    .bind(col(&lines, |(.., l)| l.unit_price.currency.code()))
    .bind(col(&steps, |s| s.0))
    .bind(col(&steps, |s| s.1))
    .bind(col(&steps, |s| s.2.clone()))
    .bind(col(&steps, |s| s.3.clone()))
    .bind(col(&steps, |s| s.4))
    .bind(col(&steps, |s| s.5.clone()))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
