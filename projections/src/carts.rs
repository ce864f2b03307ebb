//! The cart read model: `sales.carts` and `sales.cart_lines`.
//!
//! Lines keep the order they were added in (a removed and re-added item goes to the end, as
//! in the aggregate). The cart's totals are recomputed from its lines after every event, so
//! they can never drift from them; every event also counts as activity, as in the aggregate.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use purser_domain::cart::CartEvent;
use purser_domain::events::AnyEvent;
use purser_event_store::{EventFilter, RecordedEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Projection, ProjectionError, decode};

pub struct CartsProjection;

impl CartsProjection {
    pub const NAME: &'static str = "carts";
}

#[async_trait]
impl Projection for CartsProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::categories(["cart"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["sales.carts", "sales.cart_lines"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        match decode(event)? {
            AnyEvent::Cart(e) => apply_cart(tx, e).await,
            _ => Ok(()),
        }
    }
}

pub(crate) fn cart_event_at(e: &CartEvent) -> (Uuid, DateTime<Utc>) {
    match e {
        CartEvent::CartCreated { cart_id, at, .. }
        | CartEvent::CartItemAdded { cart_id, at, .. }
        | CartEvent::CartItemQuantityChanged { cart_id, at, .. }
        | CartEvent::CartItemRemoved { cart_id, at, .. }
        | CartEvent::CartCustomerAssigned { cart_id, at, .. }
        | CartEvent::CartCheckedOut { cart_id, at, .. }
        | CartEvent::CartAbandoned { cart_id, at, .. } => (cart_id.as_uuid(), *at),
    }
}

async fn apply_cart(tx: &mut PgConnection, e: CartEvent) -> Result<(), ProjectionError> {
    let (cart_id, at) = cart_event_at(&e);
    match e {
        CartEvent::CartCreated {
            customer_id,
            currency,
            ..
        } => {
            sqlx::query(
                "insert into sales.carts
                    (cart_id, customer_id, currency, status, created_at, last_activity_at)
                 values ($1, $2, $3, 'open', $4, $4)",
            )
            .bind(cart_id)
            .bind(customer_id.map(|c| c.as_uuid()))
            .bind(currency.code())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        CartEvent::CartItemAdded {
            sku,
            name,
            digital,
            qty,
            unit_price,
            ..
        } => {
            // The aggregate turns a second add of the same SKU into a quantity change, so a
            // conflict cannot come from it; adding up keeps the model sensible regardless.
            sqlx::query(
                "with c as (
                     update sales.carts set next_line_no = next_line_no + 1
                     where cart_id = $1
                     returning next_line_no - 1 as line_no)
                 insert into sales.cart_lines
                    (cart_id, sku, line_no, name, kind, qty, unit_price_minor, added_at, updated_at)
                 select $1, $2, c.line_no, $3, $4, $5, $6, $7, $7 from c
                 on conflict (cart_id, sku) do update
                 set qty = sales.cart_lines.qty + excluded.qty, updated_at = excluded.updated_at",
            )
            .bind(cart_id)
            .bind(sku.as_str())
            .bind(name)
            .bind(if digital { "digital" } else { "physical" })
            .bind(qty.get() as i32)
            .bind(unit_price.minor)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        CartEvent::CartItemQuantityChanged { sku, new_qty, .. } => {
            sqlx::query(
                "update sales.cart_lines set qty = $3, updated_at = $4
                 where cart_id = $1 and sku = $2",
            )
            .bind(cart_id)
            .bind(sku.as_str())
            .bind(new_qty.get() as i32)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        CartEvent::CartItemRemoved { sku, .. } => {
            sqlx::query("delete from sales.cart_lines where cart_id = $1 and sku = $2")
                .bind(cart_id)
                .bind(sku.as_str())
                .execute(&mut *tx)
                .await?;
        }
        CartEvent::CartCustomerAssigned { customer_id, .. } => {
            sqlx::query("update sales.carts set customer_id = $2 where cart_id = $1")
                .bind(cart_id)
                .bind(customer_id.as_uuid())
                .execute(&mut *tx)
                .await?;
        }
        CartEvent::CartCheckedOut { order_id, .. } => {
            sqlx::query(
                "update sales.carts set status = 'checked_out', order_id = $2, checked_out_at = $3
                 where cart_id = $1",
            )
            .bind(cart_id)
            .bind(order_id.as_uuid())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        CartEvent::CartAbandoned { .. } => {
            sqlx::query(
                "update sales.carts set status = 'abandoned', abandoned_at = $2 where cart_id = $1",
            )
            .bind(cart_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
    }
    sqlx::query(
        "update sales.carts c
         set last_activity_at = $2,
             item_count = t.units, line_count = t.lines, subtotal_minor = t.subtotal
         from (select coalesce(sum(qty), 0)::integer as units, count(*)::integer as lines,
                      coalesce(sum(line_total_minor), 0)::bigint as subtotal
               from sales.cart_lines where cart_id = $1) t
         where c.cart_id = $1",
    )
    .bind(cart_id)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
