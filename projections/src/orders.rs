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
use std::collections::{HashMap, HashSet};

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

pub(crate) fn cancelled_by(by: CancelledBy) -> &'static str {
    match by {
        CancelledBy::Customer => "customer",
        CancelledBy::Admin => "admin",
        CancelledBy::System => "system",
    }
}

pub(crate) fn line_kind(line: &OrderLine) -> &'static str {
    if line.is_digital() {
        "digital"
    } else {
        "physical"
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
        self.apply_batch(tx, &[event]).await
    }

    /// The batch's events fold, per order and in log order, into the order rows they leave
    /// behind; then one statement inserts the orders placed in the batch (with their lines),
    /// updates the others, and appends every timeline step. The rows already in the table that
    /// the batch moves are read first, in one query, because a step records the status and
    /// position the row had after it.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut decoded = Vec::with_capacity(events.len());
        for event in events {
            match decode(event).map_err(|err| crate::failed_at(Self::NAME, event, err))? {
                AnyEvent::Order(e) => decoded.push((*event, Subject::Order(e))),
                AnyEvent::Payment(e) => decoded.push((*event, Subject::Payment(e))),
                _ => {}
            }
        }
        let located = |err| crate::failed_in(Self::NAME, events, err);
        let mut batch = Batch::default();
        let stored = Batch::rows_to_read(&decoded);
        if !stored.is_empty() {
            batch
                .load(tx, &stored)
                .await
                .map_err(|err| located(err.into()))?;
        }
        for (event, subject) in &decoded {
            let _entered = crate::project_span(Self::NAME, event).entered();
            batch
                .add(event.event_type.as_str(), subject)
                .map_err(|err| crate::failed_at(Self::NAME, event, err))?;
        }
        batch.write(tx).await.map_err(located)
    }
}

/// An event this model reads, decoded.
enum Subject {
    Order(OrderEvent),
    Payment(PaymentEvent),
}

impl Subject {
    fn order_id(&self) -> Uuid {
        match self {
            Subject::Order(e) => e.order_id().as_uuid(),
            Subject::Payment(e) => e.order_id().as_uuid(),
        }
    }
}

/// The columns of a `sales.orders` row that the events after its placing change, plus
/// `has_physical`, which decides what `OrderFulfilled` does to the status.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Progress {
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

/// The columns of [`Progress`] as they are selected and written.
const PROGRESS_COLUMNS: &str = "order_id, has_physical, status, payment_id, payment_reference,
    captured_minor, paid_at, failure_reason, failure_message, cancel_reason, cancelled_by,
    cancelled_at, refunded_minor, tracking_number, carrier, estimated_delivery, shipped_at,
    delivered_at, fulfilled_at, updated_at, timeline_length";

impl Progress {
    /// A freshly placed order's row.
    fn placed(order_id: Uuid, has_physical: bool, at: DateTime<Utc>) -> Progress {
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
    fn order_event(&mut self, e: &OrderEvent) -> Value {
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
    fn payment_event(&mut self, e: &PaymentEvent) -> Option<(DateTime<Utc>, Value)> {
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

/// What an order placed in this batch inserts besides its [`Progress`] columns.
struct Placed {
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
    /// Per line, the license attached in this batch.
    licenses: Vec<Option<Uuid>>,
}

struct Entry {
    /// Set when the order is placed in this batch (its row is inserted, not updated).
    placed: Option<Placed>,
    row: Progress,
}

/// A timeline step: the status after it and the row's length after it number it.
struct Step<'a> {
    order_id: Uuid,
    seq: i32,
    status: String,
    event: &'a str,
    at: DateTime<Utc>,
    detail: Value,
}

/// A batch's rows as the batch leaves them, folded per order in log order. Applied one by one
/// the events would write the same rows: an event for an order the model has not seen placed
/// writes nothing, every step is numbered after the row's length and records its status.
#[derive(Default)]
struct Batch<'a> {
    orders: Vec<Entry>,
    index: HashMap<Uuid, usize>,
    steps: Vec<Step<'a>>,
    /// Licenses attached to lines of orders placed before this batch: (order, sku) → license.
    licenses: Vec<(Uuid, String, Uuid)>,
    license_index: HashMap<(Uuid, String), usize>,
}

impl<'a> Batch<'a> {
    /// The orders whose stored rows the batch moves: those with an event before (or without)
    /// their placing in the batch.
    fn rows_to_read(events: &[(&RecordedEvent, Subject)]) -> Vec<Uuid> {
        let mut placed = HashSet::new();
        let mut read = Vec::new();
        let mut seen = HashSet::new();
        for (_, subject) in events {
            let id = subject.order_id();
            if let Subject::Order(OrderEvent::OrderPlaced { .. }) = subject {
                placed.insert(id);
            } else if !placed.contains(&id) && seen.insert(id) {
                read.push(id);
            }
        }
        read
    }

    async fn load(&mut self, tx: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
        let rows: Vec<Progress> = sqlx::query_as(&format!(
            "select {PROGRESS_COLUMNS} from sales.orders where order_id = any($1)"
        ))
        .bind(ids)
        .fetch_all(tx)
        .await?;
        for row in rows {
            self.index.insert(row.order_id, self.orders.len());
            self.orders.push(Entry { placed: None, row });
        }
        Ok(())
    }

    fn add(&mut self, event_type: &'a str, subject: &Subject) -> Result<(), ProjectionError> {
        let order_id = subject.order_id();
        if let Subject::Order(e @ OrderEvent::OrderPlaced { .. }) = subject {
            return self.place(order_id, event_type, e);
        }
        // An order this model never saw placed: nothing to write.
        let Some(&i) = self.index.get(&order_id) else {
            return Ok(());
        };
        let entry = &mut self.orders[i];
        let (at, detail) = match subject {
            Subject::Order(e) => {
                if let OrderEvent::OrderLicenseAttached {
                    sku, license_id, ..
                } = e
                {
                    attach(
                        entry,
                        &mut self.licenses,
                        &mut self.license_index,
                        sku.as_str(),
                        license_id.as_uuid(),
                    );
                }
                (e.at(), entry.row.order_event(e))
            }
            Subject::Payment(e) => match entry.row.payment_event(e) {
                Some(step) => step,
                None => return Ok(()),
            },
        };
        self.steps.push(Step {
            order_id,
            seq: entry.row.timeline_length,
            status: entry.row.status.clone(),
            event: event_type,
            at,
            detail,
        });
        Ok(())
    }

    fn place(
        &mut self,
        order_id: Uuid,
        event_type: &'a str,
        e: &OrderEvent,
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
        if self.index.contains_key(&order_id) {
            return Err(ProjectionError::Other(format!(
                "order {order_id} is placed twice"
            )));
        }
        let item_count: i64 = lines.iter().map(|l| i64::from(l.qty.get())).sum();
        let shipping_address = shipping_address
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| ProjectionError::Other(format!("shipping address: {e}")))?;
        let has_physical = lines.iter().any(|l| !l.is_digital());
        self.steps.push(Step {
            order_id,
            seq: 1,
            status: OrderStatus::Pending.as_str().to_owned(),
            event: event_type,
            at: *at,
            detail: json!({
                "total_minor": total.minor,
                "currency": total.currency.code(),
                "item_count": item_count,
            }),
        });
        self.index.insert(order_id, self.orders.len());
        self.orders.push(Entry {
            placed: Some(Placed {
                customer_id: customer_id.as_uuid(),
                email: email.as_str().to_owned(),
                currency: total.currency.code().to_owned(),
                total_minor: total.minor,
                item_count: i32::try_from(item_count)
                    .map_err(|_| ProjectionError::Other("item count out of range".into()))?,
                cart_id: cart_id.map(|c| c.as_uuid()),
                has_digital: lines.iter().any(OrderLine::is_digital),
                shipping_address,
                placed_at: *at,
                lines: lines.clone(),
                licenses: vec![None; lines.len()],
            }),
            row: Progress::placed(order_id, has_physical, *at),
        });
        Ok(())
    }

    /// One statement: the orders placed in the batch with their lines, the other orders'
    /// new column values, licenses attached to lines already stored, and every timeline step.
    /// Its parts run on one snapshot and touch different rows; the foreign keys of the new
    /// lines and steps are checked at the end of the statement, when their orders exist.
    async fn write(self, tx: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.steps.is_empty() && self.orders.is_empty() {
            return Ok(());
        }
        use crate::column as col;
        let rows: Vec<&Progress> = self.orders.iter().map(|e| &e.row).collect();
        let placed: Vec<(Uuid, &Placed)> = self
            .orders
            .iter()
            .filter_map(|e| e.placed.as_ref().map(|p| (e.row.order_id, p)))
            .collect();
        let lines: Vec<(Uuid, i32, &OrderLine, Option<Uuid>)> = placed
            .iter()
            .flat_map(|(id, p)| {
                p.lines
                    .iter()
                    .zip(&p.licenses)
                    .enumerate()
                    .map(move |(n, (l, lic))| (*id, n as i32 + 1, l, *lic))
            })
            .collect();
        let (l, s, x) = (&lines, &self.steps, &self.licenses);
        sqlx::query(&format!(
            "with p as (
                 select * from unnest($1::uuid[], $2::bool[], $3::text[], $4::uuid[], $5::text[],
                     $6::bigint[], $7::timestamptz[], $8::text[], $9::text[], $10::text[],
                     $11::text[], $12::timestamptz[], $13::bigint[], $14::text[], $15::text[],
                     $16::timestamptz[], $17::timestamptz[], $18::timestamptz[],
                     $19::timestamptz[], $20::timestamptz[], $21::int[])
                     as p({PROGRESS_COLUMNS})),
             placed as (
                 insert into sales.orders
                    (order_id, customer_id, email, currency, total_minor, item_count, line_count,
                     cart_id, has_digital, shipping_address, placed_at, has_physical,
                     {PROGRESS_COLUMNS_TAIL})
                 select n.order_id, n.customer_id, n.email, n.currency, n.total_minor,
                        n.item_count, n.line_count, n.cart_id, n.has_digital,
                        n.shipping_address, n.placed_at, p.has_physical, {PROGRESS_TAIL_FROM_P}
                 from unnest($22::uuid[], $23::uuid[], $24::text[], $25::text[], $26::bigint[],
                             $27::int[], $28::int[], $29::uuid[], $30::bool[], $31::jsonb[],
                             $32::timestamptz[])
                      as n(order_id, customer_id, email, currency, total_minor, item_count,
                           line_count, cart_id, has_digital, shipping_address, placed_at)
                 join p using (order_id)),
             moved as (
                 update sales.orders o set {PROGRESS_SET_FROM_P}
                 from p where o.order_id = p.order_id),
             lines as (
                 insert into sales.order_lines
                    (order_id, line_no, sku, name, kind, qty, unit_price_minor,
                     line_total_minor, currency, license_id)
                 select * from unnest($33::uuid[], $34::int[], $35::text[], $36::text[],
                                      $37::text[], $38::int[], $39::bigint[], $40::bigint[],
                                      $41::text[], $42::uuid[])),
             licensed as (
                 update sales.order_lines ol set license_id = x.license_id
                 from unnest($43::uuid[], $44::text[], $45::uuid[]) as x(order_id, sku, license_id)
                 where ol.order_id = x.order_id and ol.sku = x.sku and ol.kind = 'digital')
             insert into sales.order_timeline (order_id, seq, status, event, at, detail)
             select * from unnest($46::uuid[], $47::int[], $48::text[], $49::text[],
                                  $50::timestamptz[], $51::jsonb[])",
            PROGRESS_COLUMNS_TAIL = progress_tail(""),
            PROGRESS_TAIL_FROM_P = progress_tail("p."),
            PROGRESS_SET_FROM_P = progress_tail("")
                .split(", ")
                .map(|c| format!("{c} = p.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
        ))
        .bind(col(&rows, |r| r.order_id))
        .bind(col(&rows, |r| r.has_physical))
        .bind(col(&rows, |r| r.status.as_str()))
        .bind(col(&rows, |r| r.payment_id))
        .bind(col(&rows, |r| r.payment_reference.as_deref()))
        .bind(col(&rows, |r| r.captured_minor))
        .bind(col(&rows, |r| r.paid_at))
        .bind(col(&rows, |r| r.failure_reason.as_deref()))
        .bind(col(&rows, |r| r.failure_message.as_deref()))
        .bind(col(&rows, |r| r.cancel_reason.as_deref()))
        .bind(col(&rows, |r| r.cancelled_by.as_deref()))
        .bind(col(&rows, |r| r.cancelled_at))
        .bind(col(&rows, |r| r.refunded_minor))
        .bind(col(&rows, |r| r.tracking_number.as_deref()))
        .bind(col(&rows, |r| r.carrier.as_deref()))
        .bind(col(&rows, |r| r.estimated_delivery))
        .bind(col(&rows, |r| r.shipped_at))
        .bind(col(&rows, |r| r.delivered_at))
        .bind(col(&rows, |r| r.fulfilled_at))
        .bind(col(&rows, |r| r.updated_at))
        .bind(col(&rows, |r| r.timeline_length))
        .bind(col(&placed, |(id, _)| *id))
        .bind(col(&placed, |(_, p)| p.customer_id))
        .bind(col(&placed, |(_, p)| p.email.as_str()))
        .bind(col(&placed, |(_, p)| p.currency.as_str()))
        .bind(col(&placed, |(_, p)| p.total_minor))
        .bind(col(&placed, |(_, p)| p.item_count))
        .bind(col(&placed, |(_, p)| p.lines.len() as i32))
        .bind(col(&placed, |(_, p)| p.cart_id))
        .bind(col(&placed, |(_, p)| p.has_digital))
        .bind(col(&placed, |(_, p)| p.shipping_address.as_ref()))
        .bind(col(&placed, |(_, p)| p.placed_at))
        .bind(col(l, |(id, ..)| *id))
        .bind(col(l, |(_, n, ..)| *n))
        .bind(col(l, |(_, _, line, _)| line.sku.as_str()))
        .bind(col(l, |(_, _, line, _)| line.name.as_str()))
        .bind(col(l, |(_, _, line, _)| line_kind(line)))
        .bind(col(l, |(_, _, line, _)| line.qty.get() as i32))
        .bind(col(l, |(_, _, line, _)| line.unit_price.minor))
        .bind(col(l, |(_, _, line, _)| line.line_total.minor))
        .bind(col(l, |(_, _, line, _)| line.unit_price.currency.code()))
        .bind(col(l, |(.., lic)| *lic))
        .bind(col(x, |(id, ..)| *id))
        .bind(col(x, |(_, sku, _)| sku.as_str()))
        .bind(col(x, |(.., lic)| *lic))
        .bind(col(s, |st| st.order_id))
        .bind(col(s, |st| st.seq))
        .bind(col(s, |st| st.status.as_str()))
        .bind(col(s, |st| st.event))
        .bind(col(s, |st| st.at))
        .bind(col(s, |st| &st.detail))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// The [`PROGRESS_COLUMNS`] an update sets (all but the key and `has_physical`, which never
/// change), each with `prefix`.
fn progress_tail(prefix: &str) -> String {
    PROGRESS_COLUMNS
        .split(',')
        .map(str::trim)
        .filter(|c| !matches!(*c, "order_id" | "has_physical"))
        .map(|c| format!("{prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `OrderLicenseAttached`: the license goes on the order's digital lines of that SKU, in the
/// insert when the order was placed in this batch, else by an update (the batch's last
/// license per order and SKU).
fn attach(
    entry: &mut Entry,
    stored: &mut Vec<(Uuid, String, Uuid)>,
    stored_index: &mut HashMap<(Uuid, String), usize>,
    sku: &str,
    license_id: Uuid,
) {
    match &mut entry.placed {
        Some(p) => {
            for (line, lic) in p.lines.iter().zip(p.licenses.iter_mut()) {
                if line.sku.as_str() == sku && line.is_digital() {
                    *lic = Some(license_id);
                }
            }
        }
        None => {
            let key = (entry.row.order_id, sku.to_owned());
            match stored_index.get(&key) {
                Some(&i) => stored[i].2 = license_id,
                None => {
                    stored_index.insert(key.clone(), stored.len());
                    stored.push((key.0, key.1, license_id));
                }
            }
        }
    }
}
