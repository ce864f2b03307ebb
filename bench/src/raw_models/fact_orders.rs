//! `analytics.fact_orders` and `fact_order_lines` by hand: a page's placed orders inserted
//! with their lines in one statement, its later order events folded per order into one
//! update (as the analytics projection does for a batch).

use std::collections::HashMap;

use anyhow::bail;
use chrono::{DateTime, Utc};
use purser_domain::order::{CancelledBy, OrderEvent, OrderLine};
use sqlx::PgConnection;
use uuid::Uuid;

/// A page's order facts: the orders placed in it, and the other orders' fact row changes.
#[derive(Default)]
pub(super) struct FactOrders {
    placed: Vec<OrderEvent>,
    updates: Vec<FactOrderUpdate>,
    index: HashMap<Uuid, usize>,
}

#[derive(Default)]
struct FactOrderUpdate {
    order_id: Uuid,
    status: &'static str,
    updated_at: DateTime<Utc>,
    payment_started_at: Option<DateTime<Utc>>,
    paid_at: Option<DateTime<Utc>>,
    paid_minor: Option<i64>,
    payment_failed_at: Option<DateTime<Utc>>,
    failure_reason: Option<String>,
    confirmed_at: Option<DateTime<Utc>>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    cancelled_by: Option<&'static str>,
}

impl FactOrders {
    pub(super) fn add(&mut self, e: &OrderEvent) -> anyhow::Result<()> {
        if let OrderEvent::OrderPlaced { .. } = e {
            self.placed.push(e.clone());
            return Ok(());
        }
        // Every later order event folds into the page's update of the order's fact row (as
        // the projection does): the last status, each milestone's first time, the last reason.
        let (order_id, at, status) = match e {
            OrderEvent::OrderPaymentStarted { order_id, at, .. } => {
                (order_id, at, "PAYMENT_PROCESSING")
            }
            OrderEvent::OrderPaid { order_id, at, .. } => (order_id, at, "PAID"),
            OrderEvent::OrderPaymentFailed { order_id, at, .. } => (order_id, at, "PAYMENT_FAILED"),
            OrderEvent::OrderConfirmed { order_id, at } => (order_id, at, "CONFIRMED"),
            OrderEvent::OrderProcessingStarted { order_id, at } => (order_id, at, "PROCESSING"),
            OrderEvent::OrderShipped { order_id, at, .. } => (order_id, at, "SHIPPED"),
            OrderEvent::OrderDelivered { order_id, at } => (order_id, at, "DELIVERED"),
            OrderEvent::OrderCancelled { order_id, at, .. } => (order_id, at, "CANCELLED"),
            other => bail!(
                "the raw baseline does not handle {}",
                purser_domain::Event::event_type(other)
            ),
        };
        let id = order_id.as_uuid();
        let i = match self.index.get(&id) {
            Some(&i) => i,
            None => {
                self.index.insert(id, self.updates.len());
                self.updates.push(FactOrderUpdate {
                    order_id: id,
                    status,
                    updated_at: *at,
                    ..FactOrderUpdate::default()
                });
                self.updates.len() - 1
            }
        };
        self.updates[i].apply(e, status, *at);
        Ok(())
    }

    /// The placed orders' inserts, then the other orders' update.
    pub(super) async fn finish(self, tx: &mut PgConnection) -> anyhow::Result<()> {
        if !self.placed.is_empty() {
            insert_placed(&mut *tx, &self.placed).await?;
        }
        if !self.updates.is_empty() {
            update(&mut *tx, &self.updates).await?;
        }
        Ok(())
    }
}

impl FactOrderUpdate {
    fn apply(&mut self, e: &OrderEvent, status: &'static str, at: DateTime<Utc>) {
        self.status = status;
        self.updated_at = at;
        match e {
            OrderEvent::OrderPaymentStarted { .. } => {
                self.payment_started_at.get_or_insert(at);
            }
            OrderEvent::OrderPaid { amount, .. } if self.paid_at.is_none() => {
                self.paid_at = Some(at);
                self.paid_minor = Some(amount.minor);
            }
            OrderEvent::OrderPaymentFailed { reason, .. } => {
                self.payment_failed_at.get_or_insert(at);
                self.failure_reason = Some(reason.clone());
            }
            OrderEvent::OrderConfirmed { .. } => {
                self.confirmed_at.get_or_insert(at);
            }
            OrderEvent::OrderShipped { .. } => {
                self.shipped_at.get_or_insert(at);
            }
            OrderEvent::OrderDelivered { .. } => {
                self.delivered_at.get_or_insert(at);
            }
            OrderEvent::OrderCancelled { by, .. } => {
                self.cancelled_at.get_or_insert(at);
                self.cancelled_by = Some(cancelled_by(by));
            }
            _ => {}
        }
    }
}

fn cancelled_by(by: &CancelledBy) -> &'static str {
    match by {
        CancelledBy::Customer => "customer",
        CancelledBy::Admin => "admin",
        CancelledBy::System => "system",
    }
}

/// One statement for the page's fact row changes; it runs after the inserts, so it also
/// moves the orders placed in the page.
async fn update(tx: &mut PgConnection, updates: &[FactOrderUpdate]) -> anyhow::Result<()> {
    let o = updates;
    let col =
        |f: fn(&FactOrderUpdate) -> Option<DateTime<Utc>>| o.iter().map(f).collect::<Vec<_>>();
    let c = (
        o.iter().map(|u| u.order_id).collect::<Vec<_>>(),
        o.iter().map(|u| u.status).collect::<Vec<_>>(),
        o.iter().map(|u| u.updated_at).collect::<Vec<_>>(),
        col(|u| u.payment_started_at),
        col(|u| u.paid_at),
        o.iter().map(|u| u.paid_minor).collect::<Vec<_>>(),
        col(|u| u.payment_failed_at),
        o.iter()
            .map(|u| u.failure_reason.clone())
            .collect::<Vec<_>>(),
        col(|u| u.confirmed_at),
        col(|u| u.shipped_at),
        col(|u| u.delivered_at),
        col(|u| u.cancelled_at),
        o.iter().map(|u| u.cancelled_by).collect::<Vec<_>>(),
    );
    sqlx::query(
        "update analytics.fact_orders f
         set status = u.status, updated_at = u.updated_at,
             payment_started_at = coalesce(f.payment_started_at, u.payment_started_at),
             paid_minor = case when f.paid_at is null and u.paid_at is not null
                               then u.paid_minor else f.paid_minor end,
             paid_at = coalesce(f.paid_at, u.paid_at),
             payment_failed_at = coalesce(f.payment_failed_at, u.payment_failed_at),
             failure_reason = coalesce(u.failure_reason, f.failure_reason),
             confirmed_at = coalesce(f.confirmed_at, u.confirmed_at),
             shipped_at = coalesce(f.shipped_at, u.shipped_at),
             delivered_at = coalesce(f.delivered_at, u.delivered_at),
             cancelled_at = coalesce(f.cancelled_at, u.cancelled_at),
             cancelled_by = coalesce(u.cancelled_by, f.cancelled_by)
         from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                     $5::timestamptz[], $6::bigint[], $7::timestamptz[], $8::text[],
                     $9::timestamptz[], $10::timestamptz[], $11::timestamptz[],
                     $12::timestamptz[], $13::text[])
              as u(order_id, status, updated_at, payment_started_at, paid_at,
                   paid_minor, payment_failed_at, failure_reason, confirmed_at,
                   shipped_at, delivered_at, cancelled_at, cancelled_by)
         where f.order_id = u.order_id",
    )
    .bind(c.0)
    .bind(c.1)
    .bind(c.2)
    .bind(c.3)
    .bind(c.4)
    .bind(c.5)
    .bind(c.6)
    .bind(c.7)
    .bind(c.8)
    .bind(c.9)
    .bind(c.10)
    .bind(c.11)
    .bind(c.12)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The analytics fact rows of the orders placed in a page and of their lines.
async fn insert_placed(tx: &mut PgConnection, placed: &[OrderEvent]) -> anyhow::Result<()> {
    let mut o = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut l = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for e in placed {
        let OrderEvent::OrderPlaced {
            order_id,
            customer_id,
            lines,
            total,
            cart_id,
            at,
            ..
        } = e
        else {
            continue;
        };
        o.0.push(order_id.as_uuid());
        o.1.push(customer_id.as_uuid());
        o.2.push(cart_id.map(|c| c.as_uuid()));
        o.3.push(total.currency.code());
        o.4.push(total.minor);
        o.5.push(lines.iter().map(|x| i64::from(x.qty.get())).sum::<i64>());
        o.6.push(lines.len() as i32);
        o.7.push(lines.iter().any(OrderLine::is_digital));
        o.8.push(lines.iter().any(|x| !x.is_digital()));
        o.9.push(*at);
        for (n, x) in lines.iter().enumerate() {
            l.0.push(order_id.as_uuid());
            l.1.push(n as i32 + 1);
            l.2.push(x.sku.as_str());
            l.3.push(x.name.as_str());
            l.4.push(if x.is_digital() {
                "digital"
            } else {
                "physical"
            });
            l.5.push(x.qty.get() as i32);
            l.6.push(x.unit_price.minor);
            l.7.push(x.line_total.minor);
            l.8.push(x.unit_price.currency.code());
            l.9.push(*at);
        }
    }
    sqlx::query(
        "with o as (
             insert into analytics.fact_orders
                (order_id, customer_id, cart_id, currency, total_minor, item_count, line_count,
                 has_digital, has_physical, status, placed_at, updated_at)
             select o.order_id, o.customer_id, o.cart_id, o.currency, o.total_minor,
                    o.item_count, o.line_count, o.has_digital, o.has_physical, 'PENDING',
                    o.placed_at, o.placed_at
             from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[],
                         $6::bigint[], $7::int[], $8::bool[], $9::bool[], $10::timestamptz[])
                  as o(order_id, customer_id, cart_id, currency, total_minor, item_count,
                       line_count, has_digital, has_physical, placed_at))
         insert into analytics.fact_order_lines
            (order_id, line_no, sku, name, kind, qty, unit_price_minor, line_total_minor,
             currency, placed_at)
         select * from unnest($11::uuid[], $12::int[], $13::text[], $14::text[], $15::text[],
                              $16::int[], $17::bigint[], $18::bigint[], $19::text[],
                              $20::timestamptz[])",
    )
    .bind(o.0)
    .bind(o.1)
    .bind(o.2)
    .bind(o.3)
    .bind(o.4)
    .bind(o.5)
    .bind(o.6)
    .bind(o.7)
    .bind(o.8)
    .bind(o.9)
    .bind(l.0)
    .bind(l.1)
    .bind(l.2)
    .bind(l.3)
    .bind(l.4)
    .bind(l.5)
    .bind(l.6)
    .bind(l.7)
    .bind(l.8)
    .bind(l.9)
    .execute(tx)
    .await?;
    Ok(())
}
