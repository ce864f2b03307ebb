//! The analytics facts: `analytics.fact_orders`, `fact_order_lines`, `fact_payments`,
//! `fact_cart_events` and `fact_inventory_movements`. The views analysts query are defined
//! over them in `migrations/0006_analytics.sql`.
//!
//! Event facts are keyed by the id of the event they come from, which the log keeps forever,
//! and every value comes from the event data, so a rebuild gives byte-identical rows. Where an
//! event leaves out something worth having next to it (the amount of a failed payment, the
//! quantity a removed cart line had), it is looked up in this projection's own facts.

use async_trait::async_trait;
use purser_domain::cart::CartEvent;
use purser_domain::events::AnyEvent;
use purser_domain::inventory::{AdjustmentReason, InventoryEvent, ReleaseReason};
use purser_domain::order::{OrderEvent, OrderLine};
use purser_domain::payment::PaymentEvent;
use purser_event_store::{EventFilter, RecordedEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::carts::cart_event_at;
use crate::orders::{
    cancelled_by, line_kind, order_event_at, order_id_of, status_change, status_sql,
};
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
        match decode(event)? {
            AnyEvent::Order(e) => apply_order(tx, e).await,
            AnyEvent::Payment(e) => apply_payment(tx, event.id, e).await,
            AnyEvent::Cart(e) => apply_cart(tx, event.id, e).await,
            AnyEvent::Inventory(e) => apply_inventory(tx, event.id, e).await,
            _ => Ok(()),
        }
    }
}

async fn apply_order(tx: &mut PgConnection, e: OrderEvent) -> Result<(), ProjectionError> {
    let order_id = order_id_of(&e);
    let at = order_event_at(&e);
    // Every event after the placing moves the status and stamps one milestone column (the
    // first time it happens, so a milestone keeps its first date). Parameters: $1 order id,
    // $2 time, $3 an amount, $4 a text; each variant uses what it needs.
    let (set, amount, text): (&str, Option<i64>, Option<String>) = match &e {
        OrderEvent::OrderPlaced {
            customer_id,
            lines,
            total,
            cart_id,
            ..
        } => {
            let item_count: i64 = lines.iter().map(|l| i64::from(l.qty.get())).sum();
            sqlx::query(
                "insert into analytics.fact_orders
                    (order_id, customer_id, cart_id, currency, total_minor, item_count,
                     line_count, has_digital, has_physical, status, placed_at, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'PENDING', $10, $10)",
            )
            .bind(order_id)
            .bind(customer_id.as_uuid())
            .bind(cart_id.map(|c| c.as_uuid()))
            .bind(total.currency.code())
            .bind(total.minor)
            .bind(item_count)
            .bind(lines.len() as i32)
            .bind(lines.iter().any(OrderLine::is_digital))
            .bind(lines.iter().any(|l| !l.is_digital()))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            insert_lines(tx, order_id, lines, at).await?;
            return Ok(());
        }
        OrderEvent::OrderPaymentStarted { .. } => (
            "payment_started_at = coalesce(payment_started_at, $2)",
            None,
            None,
        ),
        OrderEvent::OrderPaid { amount, .. } => (
            "paid_minor = case when paid_at is null then $3 else paid_minor end,
             paid_at = coalesce(paid_at, $2)",
            Some(amount.minor),
            None,
        ),
        OrderEvent::OrderPaymentFailed { reason, .. } => (
            "payment_failed_at = coalesce(payment_failed_at, $2), failure_reason = $4",
            None,
            Some(reason.clone()),
        ),
        OrderEvent::OrderInventoryUnavailable { .. } => (
            "inventory_unavailable_at = coalesce(inventory_unavailable_at, $2)",
            None,
            None,
        ),
        OrderEvent::OrderConfirmed { .. } => {
            ("confirmed_at = coalesce(confirmed_at, $2)", None, None)
        }
        OrderEvent::OrderLicenseAttached { .. } | OrderEvent::OrderProcessingStarted { .. } => {
            ("", None, None)
        }
        OrderEvent::OrderFulfilled { .. } => {
            ("fulfilled_at = coalesce(fulfilled_at, $2)", None, None)
        }
        OrderEvent::OrderShipped { .. } => ("shipped_at = coalesce(shipped_at, $2)", None, None),
        OrderEvent::OrderDelivered { .. } => {
            ("delivered_at = coalesce(delivered_at, $2)", None, None)
        }
        OrderEvent::OrderCancelled { by, .. } => (
            "cancelled_at = coalesce(cancelled_at, $2), cancelled_by = $4",
            None,
            Some(cancelled_by(*by).to_owned()),
        ),
        OrderEvent::OrderRefunded { amount, .. } => (
            "refunded_minor = refunded_minor + $3, last_refunded_at = $2",
            Some(amount.minor),
            None,
        ),
    };
    let status = status_sql(status_change(&e));
    let set = if set.is_empty() {
        String::new()
    } else {
        format!(", {set}")
    };
    // sqlx declares every parameter's type, so a variant may leave $3 or $4 unused.
    sqlx::query(&format!(
        "update analytics.fact_orders set status = {status}, updated_at = $2{set}
         where order_id = $1"
    ))
    .bind(order_id)
    .bind(at)
    .bind(amount)
    .bind(text)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn insert_lines(
    tx: &mut PgConnection,
    order_id: Uuid,
    lines: &[OrderLine],
    placed_at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
    let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    let kinds: Vec<&str> = lines.iter().map(line_kind).collect();
    let qtys: Vec<i32> = lines.iter().map(|l| l.qty.get() as i32).collect();
    let units: Vec<i64> = lines.iter().map(|l| l.unit_price.minor).collect();
    let totals: Vec<i64> = lines.iter().map(|l| l.line_total.minor).collect();
    let currencies: Vec<&str> = lines.iter().map(|l| l.unit_price.currency.code()).collect();
    sqlx::query(
        "insert into analytics.fact_order_lines
            (order_id, line_no, sku, name, kind, qty, unit_price_minor, line_total_minor,
             currency, placed_at)
         select $1, t.ord, t.sku, t.name, t.kind, t.qty, t.unit, t.total, t.currency, $9
         from unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::bigint[],
                     $8::text[])
              with ordinality as t(sku, name, kind, qty, unit, total, currency, ord)",
    )
    .bind(order_id)
    .bind(skus)
    .bind(names)
    .bind(kinds)
    .bind(qtys)
    .bind(units)
    .bind(totals)
    .bind(currencies)
    .bind(placed_at)
    .execute(tx)
    .await?;
    Ok(())
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

async fn apply_payment(
    tx: &mut PgConnection,
    event_id: Uuid,
    e: PaymentEvent,
) -> Result<(), ProjectionError> {
    let fact = match &e {
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
    };
    sqlx::query(
        "insert into analytics.fact_payments
            (event_id, payment_id, order_id, kind, amount_minor, currency, reason, message,
             gateway_reference, refund_reference, attempt, at)
         select $1, $2, $3, $4,
                coalesce($5, i.amount_minor), coalesce($6, i.currency),
                $7, $8, $9, $10, $11, $12
         from (select 1) one
         left join lateral (
             select amount_minor, currency from analytics.fact_payments
             where payment_id = $2 and kind = 'intent_created'
             order by at, event_id limit 1) i on true",
    )
    .bind(event_id)
    .bind(fact.payment_id)
    .bind(fact.order_id)
    .bind(fact.kind)
    .bind(fact.amount.map(|a| a.0))
    .bind(fact.amount.map(|a| a.1))
    .bind(fact.reason)
    .bind(fact.message)
    .bind(fact.gateway_reference)
    .bind(fact.refund_reference)
    .bind(fact.attempt)
    .bind(fact.at)
    .execute(&mut *tx)
    .await?;
    Ok(())
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

async fn apply_inventory(
    tx: &mut PgConnection,
    event_id: Uuid,
    e: InventoryEvent,
) -> Result<(), ProjectionError> {
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
    sqlx::query(
        "insert into analytics.fact_inventory_movements
            (event_id, sku, kind, reason, note, reservation_id, order_id, qty, on_hand_delta,
             reserved_delta, at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(event_id)
    .bind(sku.as_str())
    .bind(kind)
    .bind(reason)
    .bind(note)
    .bind(reservation)
    .bind(order)
    .bind(qty)
    .bind(on_hand)
    .bind(reserved)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
