//! `analytics.fact_orders` and `fact_order_lines`: a batch's placed orders inserted with
//! their lines, and its other order events folded per order into one update.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use purser_domain::Money;
use purser_domain::order::{OrderEvent, OrderLine};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::column as col;
use crate::orders::{StatusChange, cancelled_by, status_change};

/// The orders placed in a batch: their fact rows (status PENDING) and line facts, inserted
/// in one statement.
#[derive(Default)]
pub(super) struct Placements {
    orders: Vec<OrderEvent>,
}

/// A placed order's fact row, borrowed from its `OrderPlaced`.
struct Fact<'a> {
    order_id: Uuid,
    customer_id: Uuid,
    cart_id: Option<Uuid>,
    total: &'a Money,
    lines: &'a [OrderLine],
    at: DateTime<Utc>,
}

impl Placements {
    pub(super) fn add(&mut self, e: OrderEvent) {
        self.orders.push(e);
    }

    fn facts(&self) -> Vec<Fact<'_>> {
        self.orders
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
            .collect()
    }

    pub(super) async fn write(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.orders.is_empty() {
            return Ok(());
        }
        let facts = self.facts();
        let lines: Vec<(&Fact<'_>, i32, &OrderLine)> = facts
            .iter()
            .flat_map(|f| {
                f.lines
                    .iter()
                    .enumerate()
                    .map(move |(n, l)| (f, n as i32 + 1, l))
            })
            .collect();
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
pub(super) struct OrderUpdates {
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

impl OrderUpdate {
    fn new(order_id: Uuid, at: DateTime<Utc>) -> OrderUpdate {
        OrderUpdate {
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
        }
    }

    /// Folds in the order's next event.
    fn apply(&mut self, e: &OrderEvent) {
        let at = e.at();
        match status_change(e) {
            StatusChange::To(s) => {
                self.status = Some(s.as_str());
                self.fulfil_unless_physical = false;
            }
            StatusChange::Keep => {}
            StatusChange::FulfilledIfDigitalOnly => self.fulfil_unless_physical = true,
        }
        self.updated_at = at;
        match e {
            // A claimed guest order keeps the guest identity in the facts: analytics count
            // what happened at checkout, and a claim is not a sale.
            OrderEvent::OrderPlaced { .. }
            | OrderEvent::OrderLicenseAttached { .. }
            | OrderEvent::OrderProcessingStarted { .. }
            | OrderEvent::OrderClaimed { .. } => {}
            OrderEvent::OrderPaymentStarted { .. } => {
                self.payment_started_at.get_or_insert(at);
            }
            OrderEvent::OrderPaid { amount, .. } => {
                if self.paid_at.is_none() {
                    self.paid_at = Some(at);
                    self.paid_minor = Some(amount.minor);
                }
            }
            OrderEvent::OrderPaymentFailed { reason, .. } => {
                self.payment_failed_at.get_or_insert(at);
                self.failure_reason = Some(reason.clone());
            }
            OrderEvent::OrderInventoryUnavailable { .. } => {
                self.inventory_unavailable_at.get_or_insert(at);
            }
            OrderEvent::OrderConfirmed { .. } => {
                self.confirmed_at.get_or_insert(at);
            }
            OrderEvent::OrderFulfilled { .. } => {
                self.fulfilled_at.get_or_insert(at);
            }
            OrderEvent::OrderShipped { .. } => {
                self.shipped_at.get_or_insert(at);
            }
            OrderEvent::OrderDelivered { .. } => {
                self.delivered_at.get_or_insert(at);
            }
            OrderEvent::OrderCancelled { by, .. } => {
                self.cancelled_at.get_or_insert(at);
                self.cancelled_by = Some(cancelled_by(*by));
            }
            OrderEvent::OrderRefunded { amount, .. } => {
                self.refunded_minor += amount.minor;
                self.last_refunded_at = Some(at);
            }
        }
    }
}

impl OrderUpdates {
    pub(super) fn add(&mut self, e: &OrderEvent) {
        let order_id = e.order_id().as_uuid();
        let i = *self.index.entry(order_id).or_insert_with(|| {
            self.rows.push(OrderUpdate::new(order_id, e.at()));
            self.rows.len() - 1
        });
        self.rows[i].apply(e);
    }

    pub(super) async fn write(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let r = &self.rows;
        // One array per column, for `unnest`.
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
