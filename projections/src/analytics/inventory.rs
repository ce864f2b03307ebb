//! `analytics.fact_inventory_movements`: one fact per inventory event.

use chrono::{DateTime, Utc};
use purser_domain::inventory::{AdjustmentReason, InventoryEvent, ReleaseReason};
use purser_domain::{Quantity, Sku};
use sqlx::PgConnection;
use uuid::Uuid;

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
pub(super) struct Movements {
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

/// One inventory movement fact.
struct Movement<'a> {
    sku: &'a str,
    kind: &'static str,
    reason: Option<&'static str>,
    note: Option<&'a str>,
    reservation: Option<Uuid>,
    order: Option<Uuid>,
    qty: i64,
    /// What the event does to the stock on hand.
    on_hand: i64,
    /// What the event does to the reserved stock.
    reserved: i64,
    at: DateTime<Utc>,
}

impl<'a> Movement<'a> {
    /// A movement that changes neither stock on hand nor reserved stock, with no reason, note,
    /// reservation or order.
    fn of(sku: &'a Sku, kind: &'static str, qty: Quantity, at: DateTime<Utc>) -> Self {
        Movement {
            sku: sku.as_str(),
            kind,
            reason: None,
            note: None,
            reservation: None,
            order: None,
            qty: units(qty),
            on_hand: 0,
            reserved: 0,
            at,
        }
    }
}

fn units(q: Quantity) -> i64 {
    i64::from(q.get())
}

fn movement(e: &InventoryEvent) -> Movement<'_> {
    match e {
        InventoryEvent::StockReceived { sku, qty, at } => Movement {
            on_hand: units(*qty),
            ..Movement::of(sku, "received", *qty, *at)
        },
        InventoryEvent::StockAdjusted {
            sku,
            delta,
            reason,
            note,
            at,
        } => Movement {
            sku: sku.as_str(),
            kind: "adjusted",
            reason: Some(adjustment_reason(*reason)),
            note: Some(note.as_str()),
            reservation: None,
            order: None,
            qty: delta.abs(),
            on_hand: *delta,
            reserved: 0,
            at: *at,
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
            reserved: units(*qty),
            ..Movement::of(sku, "reserved", *qty, *at)
        },
        InventoryEvent::ReservationRejected {
            sku,
            reservation_id,
            order_id,
            requested,
            at,
            ..
        } => Movement {
            reservation: Some(reservation_id.as_uuid()),
            order: Some(order_id.as_uuid()),
            ..Movement::of(sku, "rejected", *requested, *at)
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
            on_hand: -units(*qty),
            reserved: -units(*qty),
            ..Movement::of(sku, "confirmed", *qty, *at)
        },
        InventoryEvent::ReservationReleased {
            sku,
            reservation_id,
            order_id,
            qty,
            reason,
            at,
        } => Movement {
            reason: Some(release_reason(*reason)),
            reservation: Some(reservation_id.as_uuid()),
            order: Some(order_id.as_uuid()),
            reserved: -units(*qty),
            ..Movement::of(sku, "released", *qty, *at)
        },
    }
}

impl Movements {
    pub(super) fn add(&mut self, event_id: Uuid, e: InventoryEvent) {
        let m = movement(&e);
        self.event_id.push(event_id);
        self.sku.push(m.sku.to_owned());
        self.kind.push(m.kind);
        self.reason.push(m.reason);
        self.note.push(m.note.map(str::to_owned));
        self.reservation.push(m.reservation);
        self.order.push(m.order);
        self.qty.push(m.qty);
        self.on_hand.push(m.on_hand);
        self.reserved.push(m.reserved);
        self.at.push(m.at);
    }

    pub(super) async fn write(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
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
