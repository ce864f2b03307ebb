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
        self.apply_batch(tx, &[event]).await
    }

    /// Order and cart events one by one; the batch's payment facts and inventory movements
    /// (facts no other write reads) inserted after them, one statement each.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut movements = Movements::default();
        let mut payments = Payments::default();
        for event in events {
            let span = crate::project_span(Self::NAME, event);
            let at = |err| crate::failed_at(Self::NAME, event, err);
            match decode(event).map_err(at)? {
                AnyEvent::Order(e) => apply_order(tx, e).instrument(span).await.map_err(at)?,
                AnyEvent::Payment(e) => span.in_scope(|| payments.add(event.id, e)),
                AnyEvent::Cart(e) => apply_cart(tx, event.id, e)
                    .instrument(span)
                    .await
                    .map_err(at)?,
                AnyEvent::Inventory(e) => span.in_scope(|| movements.add(event.id, e)),
                _ => {}
            }
        }
        let written = match payments.write(tx).await {
            Ok(()) => movements.write(tx).await,
            Err(e) => Err(e),
        };
        written.map_err(|err| crate::failed_in(Self::NAME, events, err.into()))
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
