//! Inventory: the stock of one SKU and its reservations, stream `inventory-<SKU>`.
//!
//! Invariant: `reserved` is the sum of the active reservations and never exceeds `on_hand`, so
//! `available = on_hand - reserved` is never negative: no oversell, ever.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    Aggregate, DomainError, Event, OrderId, Quantity, ReservationId, Sku, ValueError, bounded_text,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AdjustmentReason {
    Damaged,
    Lost,
    Found,
    Recount,
    Returned,
    Correction,
    /// Stock put back because a paid, already confirmed order was cancelled.
    OrderCancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReleaseReason {
    PaymentFailed,
    Expired,
    Cancelled,
    OrderUnfulfillable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveReservation {
    pub order_id: OrderId,
    pub qty: Quantity,
    pub expires_at: DateTime<Utc>,
}

/// How a reservation that is no longer active ended; kept so that repeats are idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationOutcome {
    Confirmed,
    Released,
    /// The reservation was asked for but there was not enough stock; it never held any.
    Rejected,
}

/// A reservation that ended, and from when the state may forget it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedReservation {
    pub outcome: ReservationOutcome,
    pub forget_after: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InventoryState {
    pub sku: Option<Sku>,
    pub on_hand: u64,
    pub reserved: u64,
    pub active: BTreeMap<ReservationId, ActiveReservation>,
    /// Reservations that ended less than `Inventory::FINISHED_KEPT_FOR` after their expiry
    /// (see there why older ones are not needed).
    pub finished: BTreeMap<ReservationId, FinishedReservation>,
    /// The newest event time this stream has seen: the state's only clock, so forgetting is
    /// a pure function of the history and every process folds the same state.
    pub clock: Option<DateTime<Utc>>,
    /// When `finished` is next swept.
    pub next_sweep: Option<DateTime<Utc>>,
}

impl InventoryState {
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }
}

#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum InventoryCommand {
    Receive {
        sku: Sku,
        qty: Quantity,
        now: DateTime<Utc>,
    },
    Adjust {
        sku: Sku,
        delta: i64,
        reason: AdjustmentReason,
        note: String,
        now: DateTime<Utc>,
    },
    Reserve {
        sku: Sku,
        reservation_id: ReservationId,
        order_id: OrderId,
        qty: Quantity,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    Confirm {
        reservation_id: ReservationId,
        now: DateTime<Utc>,
    },
    Release {
        reservation_id: ReservationId,
        reason: ReleaseReason,
        now: DateTime<Utc>,
    },
    /// Sent by the reservation deadline; releases only a reservation that is still active and
    /// has actually expired, so an early or repeated deadline does nothing.
    Expire {
        reservation_id: ReservationId,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum InventoryEvent {
    StockReceived {
        sku: Sku,
        qty: Quantity,
        at: DateTime<Utc>,
    },
    /// Schema v2; v1 had no `reason` and called `delta` `quantity_delta`.
    StockAdjusted {
        sku: Sku,
        delta: i64,
        reason: AdjustmentReason,
        note: String,
        at: DateTime<Utc>,
    },
    StockReserved {
        sku: Sku,
        reservation_id: ReservationId,
        order_id: OrderId,
        qty: Quantity,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Not enough stock was available. A fact rather than an error, so the checkout process
    /// manager can react to it.
    ReservationRejected {
        sku: Sku,
        reservation_id: ReservationId,
        order_id: OrderId,
        requested: Quantity,
        available: u64,
        at: DateTime<Utc>,
    },
    ReservationConfirmed {
        sku: Sku,
        reservation_id: ReservationId,
        order_id: OrderId,
        qty: Quantity,
        at: DateTime<Utc>,
    },
    ReservationReleased {
        sku: Sku,
        reservation_id: ReservationId,
        order_id: OrderId,
        qty: Quantity,
        reason: ReleaseReason,
        at: DateTime<Utc>,
    },
}

impl Event for InventoryEvent {
    event_names!(
        StockReceived,
        StockAdjusted,
        StockReserved,
        ReservationRejected,
        ReservationConfirmed,
        ReservationReleased,
    );

    fn schema_version(event_type: &str) -> u16 {
        match event_type {
            "StockAdjusted" => 2,
            _ => 1,
        }
    }

    fn upcast_step(event_type: &str, version: u16, data: Value) -> Result<Value, String> {
        match (event_type, version) {
            // v1 -> v2: `quantity_delta` became `delta`, and every adjustment now has a reason.
            // Old adjustments were manual corrections, which is what they are upcast to.
            ("StockAdjusted", 1) => {
                let Value::Object(mut fields) = data else {
                    return Err("expected a JSON object".into());
                };
                let delta = fields.remove("quantity_delta").ok_or("missing quantity_delta")?;
                fields.insert("delta".into(), delta);
                fields.insert("reason".into(), Value::String("Correction".into()));
                Ok(Value::Object(fields))
            }
            _ => Err(format!("no upcaster from {event_type} v{version}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InventoryError {
    #[error("not enough stock: {available} available, adjustment needs {needed}")]
    InsufficientStock { available: u64, needed: u64 },
    #[error("no such reservation")]
    ReservationNotFound,
    #[error("the reservation is no longer active (it was {0:?})")]
    ReservationNotActive(ReservationOutcome),
    #[error("an adjustment must be a non-zero change of at most {} units", Quantity::MAX)]
    InvalidAdjustment,
    #[error("a SKU holds at most {} units on hand", Inventory::MAX_ON_HAND)]
    StockLimit,
    #[error("this is the stream of SKU {expected}, not {got}")]
    SkuMismatch { expected: Sku, got: Sku },
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl DomainError for InventoryError {
    fn code(&self) -> &'static str {
        match self {
            Self::InsufficientStock { .. } => "INSUFFICIENT_STOCK",
            Self::ReservationNotFound => "RESERVATION_NOT_FOUND",
            Self::ReservationNotActive(_) => "RESERVATION_NOT_ACTIVE",
            Self::InvalidAdjustment => "INVALID_ADJUSTMENT",
            Self::StockLimit => "STOCK_LIMIT",
            Self::SkuMismatch { .. } => "SKU_MISMATCH",
            Self::Invalid(_) => "INVALID_INPUT",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::InsufficientStock { .. } | Self::InvalidAdjustment => Some("delta"),
            Self::SkuMismatch { .. } => Some("sku"),
            Self::Invalid(e) => Some(e.field),
            _ => None,
        }
    }
}

pub struct Inventory;

impl Inventory {
    /// Units one SKU may hold on hand: far beyond any warehouse, and small enough that stock
    /// columns and sums of movements never approach a `bigint`'s range.
    pub const MAX_ON_HAND: u64 = 1_000_000_000_000;

    /// How long after a reservation's expiry (or its end, if later) the state still remembers
    /// how it ended. A hot SKU sees every checkout, so remembering every reservation ever made
    /// grew the state (and every copy the command bus keeps and clones) without end.
    ///
    /// What a forgotten reservation changes: nothing that moves stock. Every command about a
    /// reservation after its expiry finds nothing to do: `Confirm` is refused (NOT_ACTIVE
    /// while remembered, NOT_FOUND after), `Release` is a no-op or refused, `Expire` is a
    /// no-op. A repeated `Reserve` comes only from the outbox row that sent the first one, and
    /// that row derives the same event ids, which the event store answers as a duplicate
    /// whatever the state says; the checkout process never asks for one reservation twice.
    /// An hour is six reservation lifetimes, far beyond any payment retry.
    pub const FINISHED_KEPT_FOR: chrono::TimeDelta = chrono::TimeDelta::hours(1);

    /// Records how a reservation ended, then forgets those past `FINISHED_KEPT_FOR`. The
    /// sweep runs at most once per half period, so it costs O(1) per event on average and
    /// an entry lives between one and one and a half periods.
    fn finish(
        state: &mut InventoryState,
        id: ReservationId,
        outcome: ReservationOutcome,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) {
        let ended = expires_at.map_or(at, |e| e.max(at));
        let forget_after = ended + Self::FINISHED_KEPT_FOR;
        state.finished.insert(id, FinishedReservation { outcome, forget_after });
    }

    /// Moves the state's clock to `at` and sweeps `finished` when a sweep is due.
    fn tick(state: &mut InventoryState, at: DateTime<Utc>) {
        let clock = state.clock.map_or(at, |c| c.max(at));
        state.clock = Some(clock);
        if state.next_sweep.is_some_and(|due| clock < due) {
            return;
        }
        state.finished.retain(|_, f| f.forget_after > clock);
        state.next_sweep = Some(clock + Self::FINISHED_KEPT_FOR / 2);
    }

    fn check_limit(state: &InventoryState, delta: i64) -> Result<(), InventoryError> {
        if delta > 0 && state.on_hand.saturating_add(delta.unsigned_abs()) > Self::MAX_ON_HAND {
            return Err(InventoryError::StockLimit);
        }
        Ok(())
    }

    fn check_sku(state: &InventoryState, sku: &Sku) -> Result<(), InventoryError> {
        match &state.sku {
            Some(expected) if expected != sku => {
                Err(InventoryError::SkuMismatch { expected: expected.clone(), got: sku.clone() })
            }
            _ => Ok(()),
        }
    }

    /// The active reservation, or why there is none. `Ok(None)` means it already ended in
    /// `idempotent_outcome`, so the command has nothing left to do.
    fn active<'a>(
        state: &'a InventoryState,
        id: &ReservationId,
        idempotent_outcome: ReservationOutcome,
    ) -> Result<Option<&'a ActiveReservation>, InventoryError> {
        if let Some(r) = state.active.get(id) {
            return Ok(Some(r));
        }
        match state.finished.get(id).map(|f| f.outcome) {
            Some(done) if done == idempotent_outcome => Ok(None),
            Some(done) => Err(InventoryError::ReservationNotActive(done)),
            None => Err(InventoryError::ReservationNotFound),
        }
    }
}

impl Aggregate for Inventory {
    const CATEGORY: &'static str = "inventory";
    type Id = Sku;
    type State = InventoryState;
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Error = InventoryError;

    fn decide(
        state: &InventoryState,
        command: InventoryCommand,
    ) -> Result<Vec<InventoryEvent>, InventoryError> {
        use InventoryEvent::*;
        // Events about reservations name the stream's SKU; a reservation only exists once a
        // Reserve recorded it, and that set the SKU.
        let stream_sku = || state.sku.clone().ok_or(InventoryError::ReservationNotFound);
        match command {
            InventoryCommand::Receive { sku, qty, now } => {
                Self::check_sku(state, &sku)?;
                Self::check_limit(state, i64::from(qty.get()))?;
                Ok(vec![StockReceived { sku, qty, at: now }])
            }
            InventoryCommand::Adjust { sku, delta, reason, note, now } => {
                Self::check_sku(state, &sku)?;
                if delta == 0 || delta.unsigned_abs() > u64::from(Quantity::MAX) {
                    return Err(InventoryError::InvalidAdjustment);
                }
                let note = bounded_text("note", &note, 500, false)?;
                Self::check_limit(state, delta)?;
                if delta < 0 && delta.unsigned_abs() > state.available() {
                    return Err(InventoryError::InsufficientStock {
                        available: state.available(),
                        needed: delta.unsigned_abs(),
                    });
                }
                Ok(vec![StockAdjusted { sku, delta, reason, note, at: now }])
            }
            InventoryCommand::Reserve { sku, reservation_id, order_id, qty, expires_at, now } => {
                Self::check_sku(state, &sku)?;
                if state.active.contains_key(&reservation_id)
                    || state.finished.contains_key(&reservation_id)
                {
                    return Ok(vec![]);
                }
                let available = state.available();
                if u64::from(qty.get()) > available {
                    return Ok(vec![ReservationRejected {
                        sku,
                        reservation_id,
                        order_id,
                        requested: qty,
                        available,
                        at: now,
                    }]);
                }
                Ok(vec![StockReserved { sku, reservation_id, order_id, qty, expires_at, at: now }])
            }
            InventoryCommand::Confirm { reservation_id, now } => {
                let Some(r) = Self::active(state, &reservation_id, ReservationOutcome::Confirmed)?
                else {
                    return Ok(vec![]);
                };
                Ok(vec![ReservationConfirmed {
                    sku: stream_sku()?,
                    reservation_id,
                    order_id: r.order_id,
                    qty: r.qty,
                    at: now,
                }])
            }
            InventoryCommand::Release { reservation_id, reason, now } => {
                // Releasing a reservation that was rejected is a no-op: it never held stock.
                let outcome = state.finished.get(&reservation_id).map(|f| f.outcome);
                if outcome == Some(ReservationOutcome::Rejected) {
                    return Ok(vec![]);
                }
                let Some(r) = Self::active(state, &reservation_id, ReservationOutcome::Released)?
                else {
                    return Ok(vec![]);
                };
                Ok(vec![ReservationReleased {
                    sku: stream_sku()?,
                    reservation_id,
                    order_id: r.order_id,
                    qty: r.qty,
                    reason,
                    at: now,
                }])
            }
            InventoryCommand::Expire { reservation_id, now } => {
                match state.active.get(&reservation_id) {
                    Some(r) if now >= r.expires_at => Ok(vec![ReservationReleased {
                        sku: stream_sku()?,
                        reservation_id,
                        order_id: r.order_id,
                        qty: r.qty,
                        reason: ReleaseReason::Expired,
                        at: now,
                    }]),
                    _ => Ok(vec![]),
                }
            }
        }
    }

    fn evolve(mut state: InventoryState, event: &InventoryEvent) -> InventoryState {
        use InventoryEvent::*;
        match event {
            StockReceived { sku, qty, .. } => {
                state.sku = Some(sku.clone());
                state.on_hand += u64::from(qty.get());
            }
            StockAdjusted { sku, delta, .. } => {
                state.sku = Some(sku.clone());
                state.on_hand = state.on_hand.saturating_add_signed(*delta);
            }
            StockReserved { sku, reservation_id, order_id, qty, expires_at, .. } => {
                state.sku = Some(sku.clone());
                state.reserved += u64::from(qty.get());
                let r =
                    ActiveReservation { order_id: *order_id, qty: *qty, expires_at: *expires_at };
                state.active.insert(*reservation_id, r);
            }
            ReservationRejected { sku, reservation_id, at, .. } => {
                state.sku = Some(sku.clone());
                Self::finish(&mut state, *reservation_id, ReservationOutcome::Rejected, None, *at);
            }
            ReservationConfirmed { reservation_id, qty, at, .. } => {
                let ended = state.active.remove(reservation_id);
                if ended.is_some() {
                    state.reserved -= u64::from(qty.get());
                    state.on_hand -= u64::from(qty.get());
                }
                let expiry = ended.map(|r| r.expires_at);
                Self::finish(
                    &mut state,
                    *reservation_id,
                    ReservationOutcome::Confirmed,
                    expiry,
                    *at,
                );
            }
            ReservationReleased { reservation_id, qty, at, .. } => {
                let ended = state.active.remove(reservation_id);
                if ended.is_some() {
                    state.reserved -= u64::from(qty.get());
                }
                let expiry = ended.map(|r| r.expires_at);
                Self::finish(
                    &mut state,
                    *reservation_id,
                    ReservationOutcome::Released,
                    expiry,
                    *at,
                );
            }
        }
        Self::tick(&mut state, event.at());
        state
    }
}

impl InventoryEvent {
    /// When the event happened.
    pub fn at(&self) -> DateTime<Utc> {
        use InventoryEvent::*;
        match self {
            StockReceived { at, .. }
            | StockAdjusted { at, .. }
            | StockReserved { at, .. }
            | ReservationRejected { at, .. }
            | ReservationConfirmed { at, .. }
            | ReservationReleased { at, .. } => *at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InventoryEvent::*;
    use super::*;
    use crate::aggregate::testing::given;
    use crate::test_support::{qty, sku, t};
    use proptest::prelude::*;

    fn rid(n: u8) -> ReservationId {
        ReservationId::derived(&["test-reservation", &n.to_string()])
    }

    fn oid(n: u8) -> OrderId {
        OrderId::derived(&["test-order", &n.to_string()])
    }

    fn received(n: i64) -> InventoryEvent {
        StockReceived { sku: sku("LAP-13"), qty: qty(n), at: t(0) }
    }

    fn reserve(n: u8, q: i64) -> InventoryCommand {
        InventoryCommand::Reserve {
            sku: sku("LAP-13"),
            reservation_id: rid(n),
            order_id: oid(n),
            qty: qty(q),
            expires_at: t(10),
            now: t(1),
        }
    }

    fn reserved(n: u8, q: i64) -> InventoryEvent {
        StockReserved {
            sku: sku("LAP-13"),
            reservation_id: rid(n),
            order_id: oid(n),
            qty: qty(q),
            expires_at: t(10),
            at: t(1),
        }
    }

    fn released(n: u8, q: i64, reason: ReleaseReason, at: DateTime<Utc>) -> InventoryEvent {
        ReservationReleased {
            sku: sku("LAP-13"),
            reservation_id: rid(n),
            order_id: oid(n),
            qty: qty(q),
            reason,
            at,
        }
    }

    fn confirmed(n: u8, q: i64) -> InventoryEvent {
        ReservationConfirmed {
            sku: sku("LAP-13"),
            reservation_id: rid(n),
            order_id: oid(n),
            qty: qty(q),
            at: t(2),
        }
    }

    fn adjust(delta: i64) -> InventoryCommand {
        InventoryCommand::Adjust {
            sku: sku("LAP-13"),
            delta,
            reason: AdjustmentReason::Damaged,
            note: "dropped".into(),
            now: t(3),
        }
    }

    #[test]
    fn receive_adds_stock() {
        given::<Inventory>([])
            .when(InventoryCommand::Receive { sku: sku("LAP-13"), qty: qty(5), now: t(0) })
            .then([received(5)]);
        given::<Inventory>([received(5)])
            .when(InventoryCommand::Receive { sku: sku("OTHER"), qty: qty(5), now: t(0) })
            .then_error("SKU_MISMATCH");
    }

    #[test]
    fn adjust_never_takes_available_below_zero() {
        given::<Inventory>([received(5), reserved(1, 3)]).when(adjust(-2)).then([StockAdjusted {
            sku: sku("LAP-13"),
            delta: -2,
            reason: AdjustmentReason::Damaged,
            note: "dropped".into(),
            at: t(3),
        }]);
        given::<Inventory>([received(5), reserved(1, 3)])
            .when(adjust(-3))
            .then_error("INSUFFICIENT_STOCK");
        given::<Inventory>([received(5)]).when(adjust(0)).then_error("INVALID_ADJUSTMENT");
        given::<Inventory>([]).when(adjust(2_000_000)).then_error("INVALID_ADJUSTMENT");
        let state = given::<Inventory>([received(5), reserved(1, 3)]).state().clone();
        assert_eq!((state.on_hand, state.reserved, state.available()), (5, 3, 2));
    }

    #[test]
    fn reserve_holds_stock_or_records_a_rejection() {
        given::<Inventory>([received(5)]).when(reserve(1, 3)).then([reserved(1, 3)]);
        given::<Inventory>([received(5), reserved(1, 3)]).when(reserve(2, 3)).then([
            ReservationRejected {
                sku: sku("LAP-13"),
                reservation_id: rid(2),
                order_id: oid(2),
                requested: qty(3),
                available: 2,
                at: t(1),
            },
        ]);
        // The same reservation id again does nothing, whatever became of it.
        given::<Inventory>([received(5), reserved(1, 3)]).when(reserve(1, 3)).then([]);
        given::<Inventory>([received(5), reserved(1, 3), confirmed(1, 3)])
            .when(reserve(1, 3))
            .then([]);
        given::<Inventory>([])
            .when(reserve(1, 1))
            .result()
            .map(|events| {
                assert!(matches!(events[..], [ReservationRejected { available: 0, .. }]));
            })
            .unwrap();
    }

    #[test]
    fn confirm_takes_stock_out_once() {
        let history = [received(5), reserved(1, 3)];
        let confirm = |n| InventoryCommand::Confirm { reservation_id: rid(n), now: t(2) };
        given::<Inventory>(history.clone()).when(confirm(1)).then([confirmed(1, 3)]);
        given::<Inventory>([received(5), reserved(1, 3), confirmed(1, 3)])
            .when(confirm(1))
            .then([]);
        given::<Inventory>(history.clone()).when(confirm(9)).then_error("RESERVATION_NOT_FOUND");
        let was_released =
            [received(5), reserved(1, 3), released(1, 3, ReleaseReason::Cancelled, t(2))];
        given::<Inventory>(was_released).when(confirm(1)).then_error("RESERVATION_NOT_ACTIVE");
        let state =
            given::<Inventory>([received(5), reserved(1, 3), confirmed(1, 3)]).state().clone();
        assert_eq!((state.on_hand, state.reserved), (2, 0));
        // Snapshots of the state are stored as JSON, maps keyed by reservation id included.
        let state =
            given::<Inventory>([received(5), reserved(1, 3), reserved(2, 1)]).state().clone();
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<InventoryState>(&json).unwrap(), state);
    }

    #[test]
    fn release_gives_stock_back_once() {
        let release = |n| InventoryCommand::Release {
            reservation_id: rid(n),
            reason: ReleaseReason::PaymentFailed,
            now: t(4),
        };
        let history = [received(5), reserved(1, 3)];
        given::<Inventory>(history.clone()).when(release(1)).then([released(
            1,
            3,
            ReleaseReason::PaymentFailed,
            t(4),
        )]);
        let done =
            [received(5), reserved(1, 3), released(1, 3, ReleaseReason::PaymentFailed, t(4))];
        given::<Inventory>(done).when(release(1)).then([]);
        given::<Inventory>([received(5), reserved(1, 3), confirmed(1, 3)])
            .when(release(1))
            .then_error("RESERVATION_NOT_ACTIVE");
        given::<Inventory>(history).when(release(7)).then_error("RESERVATION_NOT_FOUND");
        let rejected = [ReservationRejected {
            sku: sku("LAP-13"),
            reservation_id: rid(1),
            order_id: oid(1),
            requested: qty(1),
            available: 0,
            at: t(1),
        }];
        given::<Inventory>(rejected).when(release(1)).then([]);
    }

    #[test]
    fn expire_releases_only_overdue_active_reservations() {
        let expire = |at| InventoryCommand::Expire { reservation_id: rid(1), now: at };
        let history = [received(5), reserved(1, 3)];
        given::<Inventory>(history.clone()).when(expire(t(10))).then([released(
            1,
            3,
            ReleaseReason::Expired,
            t(10),
        )]);
        given::<Inventory>(history).when(expire(t(9))).then([]);
        given::<Inventory>([received(5), reserved(1, 3), confirmed(1, 3)])
            .when(expire(t(11)))
            .then([]);
        given::<Inventory>([]).when(expire(t(11))).then([]);
    }

    #[test]
    fn stock_adjusted_v1_is_upcast() {
        let v1 = serde_json::json!({
            "sku": "LAP-13",
            "quantity_delta": -2,
            "note": "water damage",
            "at": "2025-03-01T12:00:00Z"
        });
        let event = InventoryEvent::decode("StockAdjusted", 1, v1).unwrap();
        assert_eq!(
            event,
            StockAdjusted {
                sku: sku("LAP-13"),
                delta: -2,
                reason: AdjustmentReason::Correction,
                note: "water damage".into(),
                at: t(0),
            }
        );
        assert_eq!(event.encode().1, 2);
        let broken =
            serde_json::json!({ "sku": "LAP-13", "note": "", "at": "2025-03-01T12:00:00Z" });
        assert!(InventoryEvent::decode("StockAdjusted", 1, broken).is_err());
    }

    #[test]
    fn finished_reservations_are_forgotten_an_hour_after_expiry() {
        // Reservation 1 expires at t(10) and is confirmed at t(2): remembered until t(70).
        let history = [received(5), reserved(1, 3), confirmed(1, 3)];
        let confirm = |now| InventoryCommand::Confirm { reservation_id: rid(1), now };
        let release = |now| InventoryCommand::Release {
            reservation_id: rid(1),
            reason: ReleaseReason::Cancelled,
            now,
        };
        // Any later event moves the stream's clock; one well inside the hour changes nothing.
        let later = |m| StockReceived { sku: sku("LAP-13"), qty: qty(1), at: t(m) };
        let mut recent = history.to_vec();
        recent.push(later(60));
        given::<Inventory>(recent.clone()).when(confirm(t(61))).then([]);
        given::<Inventory>(recent).when(release(t(61))).then_error("RESERVATION_NOT_ACTIVE");
        // Past the hour (and past the next sweep) it is gone, and nothing about stock moved.
        let mut old = history.to_vec();
        old.push(later(70));
        old.push(later(110));
        let state = given::<Inventory>(old.clone()).state().clone();
        assert!(state.finished.is_empty());
        assert_eq!((state.on_hand, state.reserved), (4, 0));
        given::<Inventory>(old.clone()).when(confirm(t(111))).then_error("RESERVATION_NOT_FOUND");
        given::<Inventory>(old.clone()).when(release(t(111))).then_error("RESERVATION_NOT_FOUND");
        given::<Inventory>(old)
            .when(InventoryCommand::Expire { reservation_id: rid(1), now: t(111) })
            .then([]);
    }

    #[test]
    fn a_long_history_keeps_only_the_last_hour_and_a_half_of_outcomes() {
        // A reservation a minute for two days, each confirmed or released: 2,880 outcomes,
        // of which at most 90 minutes' worth may be remembered at any time.
        let mut state = Inventory::fold(&[received(1_000_000)]);
        for m in 0..2_880i64 {
            let id = ReservationId::derived(&["long", &m.to_string()]);
            let order_id = OrderId::derived(&["long", &m.to_string()]);
            state = Inventory::evolve(
                state,
                &StockReserved {
                    sku: sku("LAP-13"),
                    reservation_id: id,
                    order_id,
                    qty: qty(1),
                    expires_at: t(m + 10),
                    at: t(m),
                },
            );
            let end = if m % 3 == 0 {
                ReservationReleased {
                    sku: sku("LAP-13"),
                    reservation_id: id,
                    order_id,
                    qty: qty(1),
                    reason: ReleaseReason::PaymentFailed,
                    at: t(m),
                }
            } else {
                ReservationConfirmed {
                    sku: sku("LAP-13"),
                    reservation_id: id,
                    order_id,
                    qty: qty(1),
                    at: t(m),
                }
            };
            state = Inventory::evolve(state, &end);
            let kept = state.finished.len();
            assert!(kept <= 101, "{kept} outcomes remembered at minute {m}");
        }
        assert!(state.active.is_empty());
        assert_eq!(state.reserved, 0);
        assert!(state.finished.len() >= 60);
    }

    /// One step of a random inventory history.
    #[derive(Debug, Clone)]
    enum Step {
        Receive(u32),
        Adjust(i64, bool),
        Reserve(u8, u32, i64),
        Confirm(u8),
        Release(u8),
        Expire(u8, i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1u32..50).prop_map(Step::Receive),
            (-60i64..60, any::<bool>()).prop_map(|(d, returned)| Step::Adjust(d, returned)),
            (0u8..6, 1u32..30, 0i64..30).prop_map(|(id, q, ttl)| Step::Reserve(id, q, ttl)),
            (0u8..6).prop_map(Step::Confirm),
            (0u8..6).prop_map(Step::Release),
            (0u8..6, 0i64..40).prop_map(|(id, at)| Step::Expire(id, at)),
        ]
    }

    proptest! {
        #[test]
        fn stock_is_never_oversold(steps in proptest::collection::vec(step(), 0..80)) {
            let mut state = InventoryState::default();
            let (mut received_total, mut adjusted_total, mut confirmed_total) = (0i64, 0i64, 0i64);
            for (i, s) in steps.into_iter().enumerate() {
                let now = t(i as i64);
                let cmd = match s {
                    Step::Receive(q) => InventoryCommand::Receive { sku: sku("P"), qty: qty(q.into()), now },
                    Step::Adjust(delta, returned) => InventoryCommand::Adjust {
                        sku: sku("P"),
                        delta,
                        reason: if returned { AdjustmentReason::Returned } else { AdjustmentReason::Lost },
                        note: String::new(),
                        now,
                    },
                    Step::Reserve(id, q, ttl) => InventoryCommand::Reserve {
                        sku: sku("P"),
                        reservation_id: rid(id),
                        order_id: oid(id),
                        qty: qty(q.into()),
                        expires_at: now + chrono::Duration::minutes(ttl),
                        now,
                    },
                    Step::Confirm(id) => InventoryCommand::Confirm { reservation_id: rid(id), now },
                    Step::Release(id) => InventoryCommand::Release {
                        reservation_id: rid(id),
                        reason: ReleaseReason::Cancelled,
                        now,
                    },
                    Step::Expire(id, at) => InventoryCommand::Expire { reservation_id: rid(id), now: t(at) },
                };
                // Rejections are fine; what matters is that no accepted history breaks the rules.
                let Ok(events) = Inventory::decide(&state, cmd) else { continue };
                for e in &events {
                    match e {
                        StockReceived { qty, .. } => received_total += i64::from(qty.get()),
                        StockAdjusted { delta, .. } => adjusted_total += delta,
                        ReservationConfirmed { qty, .. } => confirmed_total += i64::from(qty.get()),
                        _ => {}
                    }
                    state = Inventory::evolve(state, e);
                }
                let active_sum: u64 = state.active.values().map(|r| u64::from(r.qty.get())).sum();
                prop_assert_eq!(state.reserved, active_sum);
                prop_assert!(state.on_hand >= state.reserved);
                prop_assert_eq!(
                    state.on_hand as i64,
                    received_total + adjusted_total - confirmed_total
                );
            }
        }
    }
}
