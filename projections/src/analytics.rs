//! The analytics facts: `analytics.fact_orders`, `fact_order_lines`, `fact_payments`,
//! `fact_cart_events` and `fact_inventory_movements`. The views analysts query are defined
//! over them in `migrations/0006_analytics.sql`.
//!
//! Event facts are keyed by the id of the event they come from, which the log keeps forever,
//! and every value comes from the event data, so a rebuild gives byte-identical rows. Where an
//! event leaves out something worth having next to it (the amount of a failed payment, the
//! quantity a removed cart line had), it is looked up in this projection's own facts.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use purser_domain::cart::CartEvent;
use purser_domain::events::AnyEvent;
use purser_domain::inventory::{AdjustmentReason, InventoryEvent, ReleaseReason};
use purser_domain::order::{OrderEvent, OrderLine};
use purser_domain::payment::PaymentEvent;
use purser_event_store::{EventFilter, RecordedEvent};
use sqlx::PgConnection;
use tracing::Instrument;
use uuid::Uuid;

use crate::carts::cart_event_at;
use crate::orders::{StatusChange, cancelled_by, status_change};
use crate::{Projection, ProjectionError, decode};

pub struct AnalyticsProjection;

impl AnalyticsProjection {
    pub const NAME: &'static str = "analytics";
}

#[async_trait]
impl Projection for AnalyticsProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::categories(["order", "payment", "cart", "inventory"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "analytics.fact_orders",
            "analytics.fact_order_lines",
            "analytics.fact_payments",
            "analytics.fact_cart_events",
            "analytics.fact_inventory_movements",
        ]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(tx, &[event]).await
    }

    /// Cart events one by one; then the batch's placed orders inserted with their lines in
    /// one statement, its other order events folded per order into one `fact_orders` update
    /// (after the inserts, as they come after the placing in the log), and its payment facts
    /// and inventory movements inserted, one statement each (no other write reads those
    /// tables).
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut movements = Movements::default();
        let mut payments = Payments::default();
        let mut orders = OrderUpdates::default();
        let mut placed = Placements::default();
        for event in events {
            let span = crate::project_span(Self::NAME, event);
            let at = |err| crate::failed_at(Self::NAME, event, err);
            match decode(event).map_err(at)? {
                AnyEvent::Order(e @ OrderEvent::OrderPlaced { .. }) => {
                    span.in_scope(|| placed.add(e))
                }
                AnyEvent::Order(e) => span.in_scope(|| orders.add(&e)),
                AnyEvent::Payment(e) => span.in_scope(|| payments.add(event.id, e)),
                AnyEvent::Cart(e) => apply_cart(tx, event.id, e)
                    .instrument(span)
                    .await
                    .map_err(at)?,
                AnyEvent::Inventory(e) => span.in_scope(|| movements.add(event.id, e)),
                _ => {}
            }
        }
        let written = async {
            placed.write(tx).await?;
            orders.write(tx).await?;
            payments.write(tx).await?;
            movements.write(tx).await
        }
        .await;
        written.map_err(|err| crate::failed_in(Self::NAME, events, err.into()))
    }
}

/// The orders placed in a batch: their fact rows (status PENDING) and line facts, inserted
/// in one statement.
#[derive(Default)]
struct Placements {
    orders: Vec<OrderEvent>,
}

impl Placements {
    fn add(&mut self, e: OrderEvent) {
        self.orders.push(e);
    }

    async fn write(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.orders.is_empty() {
            return Ok(());
        }
        struct Fact<'a> {
            order_id: Uuid,
            customer_id: Uuid,
            cart_id: Option<Uuid>,
            total: &'a purser_domain::Money,
            lines: &'a [OrderLine],
            at: DateTime<Utc>,
        }
        let facts: Vec<Fact<'_>> = self
            .orders
            .iter()
            .filter_map(|e| match e {
                OrderEvent::OrderPlaced {
                    order_id,
                    customer_id,
                    lines,
                    total,
                    cart_id,
                    at,
                    ..
                } => Some(Fact {
                    order_id: order_id.as_uuid(),
                    customer_id: customer_id.as_uuid(),
                    cart_id: cart_id.map(|c| c.as_uuid()),
                    total,
                    lines,
                    at: *at,
                }),
                _ => None,
            })
            .collect();
        let lines: Vec<(&Fact<'_>, i32, &OrderLine)> = facts
            .iter()
            .flat_map(|f| {
                f.lines
                    .iter()
                    .enumerate()
                    .map(move |(n, l)| (f, n as i32 + 1, l))
            })
            .collect();
        use crate::column as col;
        let (f, l) = (&facts, &lines);
        sqlx::query(
            "with o as (
                 insert into analytics.fact_orders
                    (order_id, customer_id, cart_id, currency, total_minor, item_count,
                     line_count, has_digital, has_physical, status, placed_at, updated_at)
                 select o.order_id, o.customer_id, o.cart_id, o.currency, o.total_minor,
                        o.item_count, o.line_count, o.has_digital, o.has_physical, 'PENDING',
                        o.placed_at, o.placed_at
                 from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[],
                             $6::bigint[], $7::int[], $8::bool[], $9::bool[],
                             $10::timestamptz[])
                      as o(order_id, customer_id, cart_id, currency, total_minor, item_count,
                           line_count, has_digital, has_physical, placed_at))
             insert into analytics.fact_order_lines
                (order_id, line_no, sku, name, kind, qty, unit_price_minor, line_total_minor,
                 currency, placed_at)
             select * from unnest($11::uuid[], $12::int[], $13::text[], $14::text[],
                                  $15::text[], $16::int[], $17::bigint[], $18::bigint[],
                                  $19::text[], $20::timestamptz[])",
        )
        .bind(col(f, |o| o.order_id))
        .bind(col(f, |o| o.customer_id))
        .bind(col(f, |o| o.cart_id))
        .bind(col(f, |o| o.total.currency.code()))
        .bind(col(f, |o| o.total.minor))
        .bind(col(f, |o| {
            o.lines.iter().map(|l| i64::from(l.qty.get())).sum::<i64>()
        }))
        .bind(col(f, |o| o.lines.len() as i32))
        .bind(col(f, |o| o.lines.iter().any(OrderLine::is_digital)))
        .bind(col(f, |o| o.lines.iter().any(|l| !l.is_digital())))
        .bind(col(f, |o| o.at))
        .bind(col(l, |(o, ..)| o.order_id))
        .bind(col(l, |(_, n, _)| *n))
        .bind(col(l, |(.., x)| x.sku.as_str()))
        .bind(col(l, |(.., x)| x.name.as_str()))
        .bind(col(l, |(.., x)| crate::orders::line_kind(x)))
        .bind(col(l, |(.., x)| x.qty.get() as i32))
        .bind(col(l, |(.., x)| x.unit_price.minor))
        .bind(col(l, |(.., x)| x.line_total.minor))
        .bind(col(l, |(.., x)| x.unit_price.currency.code()))
        .bind(col(l, |(o, ..)| o.at))
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// A batch's changes to `analytics.fact_orders` rows, folded per order in log order and
/// written in one statement after the batch's other writes (nothing else reads the table).
///
/// One by one, every order event after the placing moves the status and `updated_at`, and
/// stamps a milestone column the first time it happens (a milestone keeps its first date);
/// a failure reason and who cancelled are the latest; refunds add up. Folded: the status is
/// the last `To` of the batch, or "FULFILLED unless the order has physical lines" when an
/// `OrderFulfilled` came after it (or came alone); each milestone is the batch's first,
/// applied only where the row has none; reasons the batch's last; refunds the batch's sum.
#[derive(Default)]
struct OrderUpdates {
    rows: Vec<OrderUpdate>,
    index: HashMap<Uuid, usize>,
}

struct OrderUpdate {
    order_id: Uuid,
    status: Option<&'static str>,
    fulfil_unless_physical: bool,
    updated_at: DateTime<Utc>,
    payment_started_at: Option<DateTime<Utc>>,
    paid_at: Option<DateTime<Utc>>,
    paid_minor: Option<i64>,
    payment_failed_at: Option<DateTime<Utc>>,
    failure_reason: Option<String>,
    inventory_unavailable_at: Option<DateTime<Utc>>,
    confirmed_at: Option<DateTime<Utc>>,
    fulfilled_at: Option<DateTime<Utc>>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    cancelled_by: Option<&'static str>,
    refunded_minor: i64,
    last_refunded_at: Option<DateTime<Utc>>,
}

impl OrderUpdates {
    fn add(&mut self, e: &OrderEvent) {
        let order_id = e.order_id().as_uuid();
        let at = e.at();
        let i = *self.index.entry(order_id).or_insert_with(|| {
            self.rows.push(OrderUpdate {
                order_id,
                status: None,
                fulfil_unless_physical: false,
                updated_at: at,
                payment_started_at: None,
                paid_at: None,
                paid_minor: None,
                payment_failed_at: None,
                failure_reason: None,
                inventory_unavailable_at: None,
                confirmed_at: None,
                fulfilled_at: None,
                shipped_at: None,
                delivered_at: None,
                cancelled_at: None,
                cancelled_by: None,
                refunded_minor: 0,
                last_refunded_at: None,
            });
            self.rows.len() - 1
        });
        let u = &mut self.rows[i];
        match status_change(e) {
            StatusChange::To(s) => {
                u.status = Some(s.as_str());
                u.fulfil_unless_physical = false;
            }
            StatusChange::Keep => {}
            StatusChange::FulfilledIfDigitalOnly => u.fulfil_unless_physical = true,
        }
        u.updated_at = at;
        match e {
            OrderEvent::OrderPlaced { .. }
            | OrderEvent::OrderLicenseAttached { .. }
            | OrderEvent::OrderProcessingStarted { .. } => {}
            OrderEvent::OrderPaymentStarted { .. } => {
                u.payment_started_at.get_or_insert(at);
            }
            OrderEvent::OrderPaid { amount, .. } => {
                if u.paid_at.is_none() {
                    u.paid_at = Some(at);
                    u.paid_minor = Some(amount.minor);
                }
            }
            OrderEvent::OrderPaymentFailed { reason, .. } => {
                u.payment_failed_at.get_or_insert(at);
                u.failure_reason = Some(reason.clone());
            }
            OrderEvent::OrderInventoryUnavailable { .. } => {
                u.inventory_unavailable_at.get_or_insert(at);
            }
            OrderEvent::OrderConfirmed { .. } => {
                u.confirmed_at.get_or_insert(at);
            }
            OrderEvent::OrderFulfilled { .. } => {
                u.fulfilled_at.get_or_insert(at);
            }
            OrderEvent::OrderShipped { .. } => {
                u.shipped_at.get_or_insert(at);
            }
            OrderEvent::OrderDelivered { .. } => {
                u.delivered_at.get_or_insert(at);
            }
            OrderEvent::OrderCancelled { by, .. } => {
                u.cancelled_at.get_or_insert(at);
                u.cancelled_by = Some(cancelled_by(*by));
            }
            OrderEvent::OrderRefunded { amount, .. } => {
                u.refunded_minor += amount.minor;
                u.last_refunded_at = Some(at);
            }
        }
    }

    async fn write(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let r = &self.rows;
        // One array per column, for `unnest`.
        use crate::column as col;
        sqlx::query(
            "update analytics.fact_orders f
             set status = case when u.fulfil and not f.has_physical then 'FULFILLED'
                               else coalesce(u.status, f.status) end,
                 updated_at = u.updated_at,
                 payment_started_at = coalesce(f.payment_started_at, u.payment_started_at),
                 paid_minor = case when f.paid_at is null and u.paid_at is not null
                                   then u.paid_minor else f.paid_minor end,
                 paid_at = coalesce(f.paid_at, u.paid_at),
                 payment_failed_at = coalesce(f.payment_failed_at, u.payment_failed_at),
                 failure_reason = coalesce(u.failure_reason, f.failure_reason),
                 inventory_unavailable_at =
                     coalesce(f.inventory_unavailable_at, u.inventory_unavailable_at),
                 confirmed_at = coalesce(f.confirmed_at, u.confirmed_at),
                 fulfilled_at = coalesce(f.fulfilled_at, u.fulfilled_at),
                 shipped_at = coalesce(f.shipped_at, u.shipped_at),
                 delivered_at = coalesce(f.delivered_at, u.delivered_at),
                 cancelled_at = coalesce(f.cancelled_at, u.cancelled_at),
                 cancelled_by = coalesce(u.cancelled_by, f.cancelled_by),
                 refunded_minor = f.refunded_minor + u.refunded_minor,
                 last_refunded_at = coalesce(u.last_refunded_at, f.last_refunded_at)
             from unnest($1::uuid[], $2::text[], $3::bool[], $4::timestamptz[],
                         $5::timestamptz[], $6::timestamptz[], $7::bigint[], $8::timestamptz[],
                         $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[],
                         $13::timestamptz[], $14::timestamptz[], $15::timestamptz[], $16::text[],
                         $17::bigint[], $18::timestamptz[])
                  as u(order_id, status, fulfil, updated_at, payment_started_at, paid_at,
                       paid_minor, payment_failed_at, failure_reason, inventory_unavailable_at,
                       confirmed_at, fulfilled_at, shipped_at, delivered_at, cancelled_at,
                       cancelled_by, refunded_minor, last_refunded_at)
             where f.order_id = u.order_id",
        )
        .bind(col(r, |u| u.order_id))
        .bind(col(r, |u| u.status))
        .bind(col(r, |u| u.fulfil_unless_physical))
        .bind(col(r, |u| u.updated_at))
        .bind(col(r, |u| u.payment_started_at))
        .bind(col(r, |u| u.paid_at))
        .bind(col(r, |u| u.paid_minor))
        .bind(col(r, |u| u.payment_failed_at))
        .bind(col(r, |u| u.failure_reason.clone()))
        .bind(col(r, |u| u.inventory_unavailable_at))
        .bind(col(r, |u| u.confirmed_at))
        .bind(col(r, |u| u.fulfilled_at))
        .bind(col(r, |u| u.shipped_at))
        .bind(col(r, |u| u.delivered_at))
        .bind(col(r, |u| u.cancelled_at))
        .bind(col(r, |u| u.cancelled_by))
        .bind(col(r, |u| u.refunded_minor))
        .bind(col(r, |u| u.last_refunded_at))
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// One payment fact. `amount` None means "the amount of the payment's intent".
struct PaymentFact<'a> {
    payment_id: Uuid,
    order_id: Uuid,
    kind: &'static str,
    amount: Option<(i64, &'a str)>,
    reason: Option<&'a str>,
    message: Option<&'a str>,
    gateway_reference: Option<&'a str>,
    refund_reference: Option<&'a str>,
    attempt: Option<i32>,
    at: chrono::DateTime<chrono::Utc>,
}

/// A batch's payment facts, one per event, in log order. A failure fact carries the amount of
/// the payment's intent: taken here from an intent earlier in the same batch, else looked up
/// by the insert among the facts already written. A payment has one intent (its stream's
/// first event), so the two ways agree with looking each one up as it comes.
#[derive(Default)]
struct Payments {
    event_id: Vec<Uuid>,
    payment_id: Vec<Uuid>,
    order_id: Vec<Uuid>,
    kind: Vec<&'static str>,
    amount: Vec<Option<i64>>,
    currency: Vec<Option<String>>,
    reason: Vec<Option<String>>,
    message: Vec<Option<String>>,
    gateway_reference: Vec<Option<String>>,
    refund_reference: Vec<Option<String>>,
    attempt: Vec<Option<i32>>,
    at: Vec<DateTime<Utc>>,
    intents: HashMap<Uuid, (i64, String)>,
}

impl Payments {
    fn add(&mut self, event_id: Uuid, e: PaymentEvent) {
        let fact = payment_fact(&e);
        let amount = match fact.amount {
            Some((minor, currency)) => {
                if fact.kind == "intent_created" {
                    self.intents
                        .entry(fact.payment_id)
                        .or_insert_with(|| (minor, currency.to_owned()));
                }
                Some((minor, currency.to_owned()))
            }
            None => self.intents.get(&fact.payment_id).cloned(),
        };
        let (amount, currency) = amount.unzip();
        self.event_id.push(event_id);
        self.payment_id.push(fact.payment_id);
        self.order_id.push(fact.order_id);
        self.kind.push(fact.kind);
        self.amount.push(amount);
        self.currency.push(currency);
        self.reason.push(fact.reason.map(str::to_owned));
        self.message.push(fact.message.map(str::to_owned));
        self.gateway_reference
            .push(fact.gateway_reference.map(str::to_owned));
        self.refund_reference
            .push(fact.refund_reference.map(str::to_owned));
        self.attempt.push(fact.attempt);
        self.at.push(fact.at);
    }

    async fn write(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.event_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into analytics.fact_payments
                (event_id, payment_id, order_id, kind, amount_minor, currency, reason, message,
                 gateway_reference, refund_reference, attempt, at)
             select t.event_id, t.payment_id, t.order_id, t.kind,
                    coalesce(t.amount, i.amount_minor), coalesce(t.currency, i.currency),
                    t.reason, t.message, t.gateway_reference, t.refund_reference, t.attempt, t.at
             from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int[],
                         $12::timestamptz[])
                  with ordinality as t(event_id, payment_id, order_id, kind, amount, currency,
                                       reason, message, gateway_reference, refund_reference,
                                       attempt, at, ord)
             left join lateral (
                 select amount_minor, currency from analytics.fact_payments f
                 where f.payment_id = t.payment_id and f.kind = 'intent_created'
                 order by f.at, f.event_id limit 1) i on t.amount is null
             order by t.ord",
        )
        .bind(self.event_id)
        .bind(self.payment_id)
        .bind(self.order_id)
        .bind(self.kind)
        .bind(self.amount)
        .bind(self.currency)
        .bind(self.reason)
        .bind(self.message)
        .bind(self.gateway_reference)
        .bind(self.refund_reference)
        .bind(self.attempt)
        .bind(self.at)
        .execute(tx)
        .await?;
        Ok(())
    }
}

fn payment_fact(e: &PaymentEvent) -> PaymentFact<'_> {
    match e {
        PaymentEvent::PaymentIntentCreated {
            payment_id,
            order_id,
            amount,
            at,
            ..
        } => PaymentFact {
            payment_id: payment_id.as_uuid(),
            order_id: order_id.as_uuid(),
            kind: "intent_created",
            amount: Some((amount.minor, amount.currency.code())),
            reason: None,
            message: None,
            gateway_reference: None,
            refund_reference: None,
            attempt: None,
            at: *at,
        },
        PaymentEvent::PaymentAttemptFailed {
            payment_id,
            order_id,
            attempt,
            error,
            at,
            ..
        } => PaymentFact {
            payment_id: payment_id.as_uuid(),
            order_id: order_id.as_uuid(),
            kind: "attempt_failed",
            amount: None,
            reason: Some(error),
            message: None,
            gateway_reference: None,
            refund_reference: None,
            attempt: Some(i32::try_from(*attempt).unwrap_or(i32::MAX)),
            at: *at,
        },
        PaymentEvent::PaymentCaptured {
            payment_id,
            order_id,
            amount,
            gateway_reference,
            at,
        } => PaymentFact {
            payment_id: payment_id.as_uuid(),
            order_id: order_id.as_uuid(),
            kind: "captured",
            amount: Some((amount.minor, amount.currency.code())),
            reason: None,
            message: None,
            gateway_reference: Some(gateway_reference),
            refund_reference: None,
            attempt: None,
            at: *at,
        },
        PaymentEvent::PaymentFailed {
            payment_id,
            order_id,
            reason,
            message,
            at,
        } => PaymentFact {
            payment_id: payment_id.as_uuid(),
            order_id: order_id.as_uuid(),
            kind: "failed",
            amount: None,
            reason: Some(reason.code()),
            message: Some(message),
            gateway_reference: None,
            refund_reference: None,
            attempt: None,
            at: *at,
        },
        PaymentEvent::PaymentRefunded {
            payment_id,
            order_id,
            amount,
            reason,
            refund_reference,
            at,
        } => PaymentFact {
            payment_id: payment_id.as_uuid(),
            order_id: order_id.as_uuid(),
            kind: "refunded",
            amount: Some((amount.minor, amount.currency.code())),
            reason: Some(reason),
            message: None,
            gateway_reference: None,
            refund_reference: Some(refund_reference),
            attempt: None,
            at: *at,
        },
    }
}

async fn apply_cart(
    tx: &mut PgConnection,
    event_id: Uuid,
    e: CartEvent,
) -> Result<(), ProjectionError> {
    let (cart_id, at) = cart_event_at(&e);
    // (kind, customer, sku, qty delta, unit price, currency, order, value, item count)
    type Row<'a> = (
        &'static str,
        Option<Uuid>,
        Option<&'a str>,
        Option<i32>,
        Option<i64>,
        Option<&'a str>,
        Option<Uuid>,
        Option<i64>,
        Option<i32>,
    );
    let row: Row<'_> = match &e {
        CartEvent::CartCreated {
            customer_id,
            currency,
            ..
        } => (
            "created",
            customer_id.map(|c| c.as_uuid()),
            None,
            None,
            None,
            Some(currency.code()),
            None,
            None,
            None,
        ),
        CartEvent::CartItemAdded {
            sku,
            qty,
            unit_price,
            ..
        } => (
            "item_added",
            None,
            Some(sku.as_str()),
            Some(qty.get() as i32),
            Some(unit_price.minor),
            Some(unit_price.currency.code()),
            None,
            None,
            None,
        ),
        CartEvent::CartItemQuantityChanged {
            sku,
            old_qty,
            new_qty,
            ..
        } => (
            "quantity_changed",
            None,
            Some(sku.as_str()),
            Some(new_qty.get() as i32 - old_qty.get() as i32),
            None,
            None,
            None,
            None,
            None,
        ),
        // The removed quantity is what the line held: the sum of its deltas so far. It is
        // filled in by the statement below (a null delta here means "look it up").
        CartEvent::CartItemRemoved { sku, .. } => (
            "item_removed",
            None,
            Some(sku.as_str()),
            None,
            None,
            None,
            None,
            None,
            None,
        ),
        CartEvent::CartCustomerAssigned { customer_id, .. } => (
            "customer_assigned",
            Some(customer_id.as_uuid()),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ),
        CartEvent::CartCheckedOut {
            order_id,
            total,
            item_count,
            ..
        } => (
            "checked_out",
            None,
            None,
            None,
            None,
            Some(total.currency.code()),
            Some(order_id.as_uuid()),
            Some(total.minor),
            Some(i32::try_from(*item_count).unwrap_or(i32::MAX)),
        ),
        CartEvent::CartAbandoned { .. } => {
            ("abandoned", None, None, None, None, None, None, None, None)
        }
    };
    let (kind, customer, sku, delta, unit, currency, order, value, items) = row;
    sqlx::query(
        "insert into analytics.fact_cart_events
            (event_id, cart_id, kind, customer_id, sku, qty_delta, unit_price_minor, currency,
             order_id, value_minor, item_count, at)
         values ($1, $2, $3, $4, $5,
                 case when $3 = 'item_removed'
                      then -(select coalesce(sum(qty_delta), 0) from analytics.fact_cart_events
                             where cart_id = $2 and sku = $5)::integer
                      else $6 end,
                 $7, $8, $9, $10, $11, $12)",
    )
    .bind(event_id)
    .bind(cart_id)
    .bind(kind)
    .bind(customer)
    .bind(sku)
    .bind(delta)
    .bind(unit)
    .bind(currency)
    .bind(order)
    .bind(value)
    .bind(items)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn adjustment_reason(r: AdjustmentReason) -> &'static str {
    match r {
        AdjustmentReason::Damaged => "damaged",
        AdjustmentReason::Lost => "lost",
        AdjustmentReason::Found => "found",
        AdjustmentReason::Recount => "recount",
        AdjustmentReason::Returned => "returned",
        AdjustmentReason::Correction => "correction",
        AdjustmentReason::OrderCancelled => "order_cancelled",
    }
}

fn release_reason(r: ReleaseReason) -> &'static str {
    match r {
        ReleaseReason::PaymentFailed => "payment_failed",
        ReleaseReason::Expired => "expired",
        ReleaseReason::Cancelled => "cancelled",
        ReleaseReason::OrderUnfulfillable => "order_unfulfillable",
    }
}

/// A batch's inventory movement facts, one per event, in log order.
#[derive(Default)]
struct Movements {
    event_id: Vec<Uuid>,
    sku: Vec<String>,
    kind: Vec<&'static str>,
    reason: Vec<Option<&'static str>>,
    note: Vec<Option<String>>,
    reservation: Vec<Option<Uuid>>,
    order: Vec<Option<Uuid>>,
    qty: Vec<i64>,
    on_hand: Vec<i64>,
    reserved: Vec<i64>,
    at: Vec<DateTime<Utc>>,
}

impl Movements {
    fn add(&mut self, event_id: Uuid, e: InventoryEvent) {
        let q = |q: purser_domain::Quantity| i64::from(q.get());
        // (sku, kind, reason, note, reservation, order, qty, on-hand delta, reserved delta, at)
        let (sku, kind, reason, note, reservation, order, qty, on_hand, reserved, at) = match &e {
            InventoryEvent::StockReceived { sku, qty, at } => (
                sku,
                "received",
                None,
                None,
                None,
                None,
                q(*qty),
                q(*qty),
                0,
                *at,
            ),
            InventoryEvent::StockAdjusted {
                sku,
                delta,
                reason,
                note,
                at,
            } => (
                sku,
                "adjusted",
                Some(adjustment_reason(*reason)),
                Some(note.as_str()),
                None,
                None,
                delta.abs(),
                *delta,
                0,
                *at,
            ),
            InventoryEvent::StockReserved {
                sku,
                reservation_id,
                order_id,
                qty,
                at,
                ..
            } => (
                sku,
                "reserved",
                None,
                None,
                Some(reservation_id.as_uuid()),
                Some(order_id.as_uuid()),
                q(*qty),
                0,
                q(*qty),
                *at,
            ),
            InventoryEvent::ReservationRejected {
                sku,
                reservation_id,
                order_id,
                requested,
                at,
                ..
            } => (
                sku,
                "rejected",
                None,
                None,
                Some(reservation_id.as_uuid()),
                Some(order_id.as_uuid()),
                q(*requested),
                0,
                0,
                *at,
            ),
            InventoryEvent::ReservationConfirmed {
                sku,
                reservation_id,
                order_id,
                qty,
                at,
            } => (
                sku,
                "confirmed",
                None,
                None,
                Some(reservation_id.as_uuid()),
                Some(order_id.as_uuid()),
                q(*qty),
                -q(*qty),
                -q(*qty),
                *at,
            ),
            InventoryEvent::ReservationReleased {
                sku,
                reservation_id,
                order_id,
                qty,
                reason,
                at,
            } => (
                sku,
                "released",
                Some(release_reason(*reason)),
                None,
                Some(reservation_id.as_uuid()),
                Some(order_id.as_uuid()),
                q(*qty),
                0,
                -q(*qty),
                *at,
            ),
        };
        self.event_id.push(event_id);
        self.sku.push(sku.as_str().to_owned());
        self.kind.push(kind);
        self.reason.push(reason);
        self.note.push(note.map(str::to_owned));
        self.reservation.push(reservation);
        self.order.push(order);
        self.qty.push(qty);
        self.on_hand.push(on_hand);
        self.reserved.push(reserved);
        self.at.push(at);
    }

    async fn write(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.event_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into analytics.fact_inventory_movements
                (event_id, sku, kind, reason, note, reservation_id, order_id, qty, on_hand_delta,
                 reserved_delta, at)
             select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::uuid[], $7::uuid[], $8::bigint[], $9::bigint[],
                                  $10::bigint[], $11::timestamptz[])",
        )
        .bind(self.event_id)
        .bind(self.sku)
        .bind(self.kind)
        .bind(self.reason)
        .bind(self.note)
        .bind(self.reservation)
        .bind(self.order)
        .bind(self.qty)
        .bind(self.on_hand)
        .bind(self.reserved)
        .bind(self.at)
        .execute(tx)
        .await?;
        Ok(())
    }
}
