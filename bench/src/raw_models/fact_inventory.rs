//! `analytics.fact_inventory_movements` by hand: one fact per inventory event, inserted once
//! per page.

use anyhow::bail;
use chrono::{DateTime, Utc};
use purser_domain::inventory::{AdjustmentReason, InventoryEvent, ReleaseReason};
use purser_domain::{Quantity, Sku};
use sqlx::PgConnection;
use uuid::Uuid;

/// One movement fact.
struct Movement {
    event_id: Uuid,
    sku: String,
    kind: &'static str,
    reason: Option<&'static str>,
    note: Option<String>,
    reservation: Option<Uuid>,
    order: Option<Uuid>,
    qty: i64,
    on_hand: i64,
    reserved: i64,
    at: DateTime<Utc>,
}

impl Movement {
    /// A movement of `qty` that changes no stock, with no reason, note, reservation or order.
    fn of(event_id: Uuid, sku: &Sku, kind: &'static str, qty: i64, at: &DateTime<Utc>) -> Self {
        Movement {
            event_id,
            sku: sku.as_str().to_owned(),
            kind,
            reason: None,
            note: None,
            reservation: None,
            order: None,
            qty,
            on_hand: 0,
            reserved: 0,
            at: *at,
        }
    }
}

/// A page's movement facts, in log order.
#[derive(Default)]
pub(super) struct Movements {
    rows: Vec<Movement>,
}

impl Movements {
    pub(super) fn add(&mut self, event_id: Uuid, e: &InventoryEvent) -> anyhow::Result<()> {
        let q = |q: &Quantity| i64::from(q.get());
        let movement = match e {
            InventoryEvent::StockReceived { sku, qty, at } => Movement {
                on_hand: q(qty),
                ..Movement::of(event_id, sku, "received", q(qty), at)
            },
            InventoryEvent::StockAdjusted {
                sku,
                delta,
                reason,
                note,
                at,
            } => Movement {
                reason: Some(adjustment_reason(reason)),
                note: Some(note.clone()),
                on_hand: *delta,
                ..Movement::of(event_id, sku, "adjusted", delta.abs(), at)
            },
            InventoryEvent::StockReserved {
                sku,
                reservation_id,
                order_id,
                qty,
                at,
                ..
            } => Movement {
                reservation: Some(reservation_id.as_uuid()),
                order: Some(order_id.as_uuid()),
                reserved: q(qty),
                ..Movement::of(event_id, sku, "reserved", q(qty), at)
            },
            InventoryEvent::ReservationConfirmed {
                sku,
                reservation_id,
                order_id,
                qty,
                at,
            } => Movement {
                reservation: Some(reservation_id.as_uuid()),
                order: Some(order_id.as_uuid()),
                on_hand: -q(qty),
                reserved: -q(qty),
                ..Movement::of(event_id, sku, "confirmed", q(qty), at)
            },
            InventoryEvent::ReservationReleased {
                sku,
                reservation_id,
                order_id,
                qty,
                reason,
                at,
            } => Movement {
                reason: Some(release_reason(reason)),
                reservation: Some(reservation_id.as_uuid()),
                order: Some(order_id.as_uuid()),
                reserved: -q(qty),
                ..Movement::of(event_id, sku, "released", q(qty), at)
            },
            InventoryEvent::ReservationRejected { .. } => {
                bail!("the raw baseline does not handle ReservationRejected")
            }
        };
        self.rows.push(movement);
        Ok(())
    }

    pub(super) async fn finish(self, tx: &mut PgConnection) -> anyhow::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let n = self.rows.len();
        let (mut id, mut sku, mut kind, mut reason, mut note, mut res, mut order) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut qty, mut on_hand, mut reserved, mut at) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for m in self.rows {
            id.push(m.event_id);
            sku.push(m.sku);
            kind.push(m.kind);
            reason.push(m.reason);
            note.push(m.note);
            res.push(m.reservation);
            order.push(m.order);
            qty.push(m.qty);
            on_hand.push(m.on_hand);
            reserved.push(m.reserved);
            at.push(m.at);
        }
        sqlx::query(
            "insert into analytics.fact_inventory_movements
                (event_id, sku, kind, reason, note, reservation_id, order_id, qty,
                 on_hand_delta, reserved_delta, at)
             select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
                                  $5::text[], $6::uuid[], $7::uuid[], $8::bigint[],
                                  $9::bigint[], $10::bigint[], $11::timestamptz[])",
        )
        .bind(id)
        .bind(sku)
        .bind(kind)
        .bind(reason)
        .bind(note)
        .bind(res)
        .bind(order)
        .bind(qty)
        .bind(on_hand)
        .bind(reserved)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

fn adjustment_reason(r: &AdjustmentReason) -> &'static str {
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

fn release_reason(r: &ReleaseReason) -> &'static str {
    match r {
        ReleaseReason::PaymentFailed => "payment_failed",
        ReleaseReason::Expired => "expired",
        ReleaseReason::Cancelled => "cancelled",
        ReleaseReason::OrderUnfulfillable => "order_unfulfillable",
    }
}
