//! `analytics.fact_cart_events`: one fact per cart event, written as it comes.

use purser_domain::cart::CartEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ProjectionError;
use crate::carts::cart_event_at;

/// One cart fact; the columns an event leaves out are null.
struct CartFact<'a> {
    kind: &'static str,
    customer: Option<Uuid>,
    sku: Option<&'a str>,
    /// For `item_removed`, null: the insert fills in what the line held.
    qty_delta: Option<i32>,
    unit_price_minor: Option<i64>,
    currency: Option<&'a str>,
    order: Option<Uuid>,
    value_minor: Option<i64>,
    item_count: Option<i32>,
}

impl CartFact<'_> {
    fn of(kind: &'static str) -> Self {
        CartFact {
            kind,
            customer: None,
            sku: None,
            qty_delta: None,
            unit_price_minor: None,
            currency: None,
            order: None,
            value_minor: None,
            item_count: None,
        }
    }
}

fn cart_fact(e: &CartEvent) -> CartFact<'_> {
    match e {
        CartEvent::CartCreated {
            customer_id,
            currency,
            ..
        } => CartFact {
            customer: customer_id.map(|c| c.as_uuid()),
            currency: Some(currency.code()),
            ..CartFact::of("created")
        },
        CartEvent::CartItemAdded {
            sku,
            qty,
            unit_price,
            ..
        } => CartFact {
            sku: Some(sku.as_str()),
            qty_delta: Some(qty.get() as i32),
            unit_price_minor: Some(unit_price.minor),
            currency: Some(unit_price.currency.code()),
            ..CartFact::of("item_added")
        },
        CartEvent::CartItemQuantityChanged {
            sku,
            old_qty,
            new_qty,
            ..
        } => CartFact {
            sku: Some(sku.as_str()),
            qty_delta: Some(new_qty.get() as i32 - old_qty.get() as i32),
            ..CartFact::of("quantity_changed")
        },
        // The removed quantity is what the line held: the sum of its deltas so far. It is
        // filled in by the insert (a null delta here means "look it up").
        CartEvent::CartItemRemoved { sku, .. } => CartFact {
            sku: Some(sku.as_str()),
            ..CartFact::of("item_removed")
        },
        CartEvent::CartCustomerAssigned { customer_id, .. } => CartFact {
            customer: Some(customer_id.as_uuid()),
            ..CartFact::of("customer_assigned")
        },
        CartEvent::CartCheckedOut {
            order_id,
            total,
            item_count,
            ..
        } => CartFact {
            currency: Some(total.currency.code()),
            order: Some(order_id.as_uuid()),
            value_minor: Some(total.minor),
            item_count: Some(i32::try_from(*item_count).unwrap_or(i32::MAX)),
            ..CartFact::of("checked_out")
        },
        CartEvent::CartAbandoned { .. } => CartFact::of("abandoned"),
    }
}

/// Inserts the event's cart fact. One by one, not per batch: a removal's quantity is looked
/// up among the facts already written for the cart.
pub(super) async fn apply_cart(
    tx: &mut PgConnection,
    event_id: Uuid,
    e: CartEvent,
) -> Result<(), ProjectionError> {
    let (cart_id, at) = cart_event_at(&e);
    let fact = cart_fact(&e);
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
    .bind(fact.kind)
    .bind(fact.customer)
    .bind(fact.sku)
    .bind(fact.qty_delta)
    .bind(fact.unit_price_minor)
    .bind(fact.currency)
    .bind(fact.order)
    .bind(fact.value_minor)
    .bind(fact.item_count)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
