//! The checkout process manager: one instance per order, pure.
//!
//! It reads events (as [`AnyEvent`]) and answers with commands to send, as data
//! ([`CheckoutAction`]); a durable runner executes them. The runner's loop per event is:
//!
//! ```text
//! let Some(order) = order_of(&event) else { skip };
//! let actions = react(&state[order], &event, &config);   // decided from the state BEFORE the event
//! state[order] = evolve(state[order], &event);
//! execute(actions)                                       // each carries deterministic ids
//! ```
//!
//! # How reactions happen exactly once
//!
//! The state records facts only, and every fact only ever moves forward (a reservation goes
//! requested → reserved → confirmed/released, never back), so evolving an event that was already
//! seen changes nothing. From a state, [`milestones`] derives the set of things that should
//! have happened ("payment requested", "reservation X released", ...). `react` evolves a copy of
//! the state and emits the actions of the milestones that are reached by this event and were
//! not reached before it. A duplicate event reaches nothing new, so it emits nothing. Because
//! milestones depend on the set of facts and not on the order they arrived in, independent
//! events (payment captured vs account provisioned, the reservations of different lines) lead
//! to the same actions whatever their order, and every action's data comes from the state
//! (for example license expiry counts from the later of capture and provisioning), so equal
//! facts give equal actions.
//!
//! # The flow
//!
//! - `OrderPlaced` → reserve every physical line; provision the account if there are digital
//!   lines; with no physical lines, go straight to payment.
//! - All physical lines reserved → create the payment and start the order's payment;
//!   `PaymentIntentCreated` → charge it.
//! - A line rejected → release the lines already reserved; once every line has an answer, mark
//!   the order inventory-unavailable; `OrderInventoryUnavailable` → cancel.
//! - `PaymentCaptured` → confirm the reservations and mark the order paid; order paid and all
//!   reservations confirmed → confirm the order and notify.
//! - `PaymentFailed` → release the reservations and mark the order's payment failed;
//!   `OrderPaymentFailed` → cancel and notify.
//! - Digital lines wait for both the capture and `AccountProvisioned` → allocate a pool key or
//!   issue a signed license per line; `LicenseKeyAllocated` → issue it; `LicenseIssued` → attach
//!   it to the account and to the order; all attached → fulfil the order, notify per license.
//! - A reservation that expires before the order is confirmed → cancel the order and release
//!   the other reservations.
//!
//! # Compensation
//!
//! Once the order is aborted (a line rejected, payment failed, a reservation expired, a
//! license pool empty, or the order cancelled by anyone), money already captured is refunded
//! in full (less earlier refunds) with the deterministic reference `checkout-<order>-compensation`,
//! active reservations are released, confirmed stock is put back (`RestockConfirmed`), and
//! licenses already issued are revoked once the order is cancelled. When the license pool is
//! empty the refund is sent first and the order is cancelled by the system (allowed from PAID
//! and CONFIRMED); when `PaymentRefunded` arrives and the order has recorded both its payment
//! and its cancellation, the refund is recorded on the order, which ends **REFUNDED** with
//! CANCELLED just before it on the timeline. If the capture arrives after the order was
//! cancelled without payment (a reservation expired while the charge was in flight), the
//! payment is refunded but the order, which never recorded the payment, stays CANCELLED; the
//! refund is visible on the payment, whose events carry the order id.
//!
//! Actions can lose a race with a deadline or an admin (confirming a reservation that just
//! expired, say); the target aggregate then rejects them, the runner records that and moves
//! on, and the events of whatever won drive the compensation above.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::customer::CustomerEvent;
use crate::inventory::{InventoryEvent, ReleaseReason};
use crate::license::{LicenseEvent, LicensePoolEvent};
use crate::notification::NotificationKind;
use crate::order::{CancelledBy, OrderEvent};
use crate::payment::{PaymentEvent, PaymentFailureReason, PaymentMethod};
use crate::product::{DigitalTerms, LicenseSource};
use crate::{
    AnyEvent, CustomerId, Email, LicenseId, Money, NotificationId, OrderId, PaymentId, Quantity,
    ReservationId, Sku,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutConfig {
    /// How long a reservation holds stock before the deadline releases it.
    pub reservation_ttl: Duration,
}

impl Default for CheckoutConfig {
    fn default() -> Self {
        CheckoutConfig { reservation_ttl: Duration::minutes(10) }
    }
}

/// A command for the runner to send. Every id in it is derived from the order id (and the SKU
/// and a purpose), so reacting to the same event again yields equal actions, and the target
/// aggregates treat a repeat as already done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CheckoutAction {
    ReserveStock {
        sku: Sku,
        reservation_id: ReservationId,
        order_id: OrderId,
        qty: Quantity,
        expires_at: DateTime<Utc>,
    },
    ReleaseReservation {
        sku: Sku,
        reservation_id: ReservationId,
        reason: ReleaseReason,
    },
    ConfirmReservation {
        sku: Sku,
        reservation_id: ReservationId,
    },
    /// Stock of a cancelled order that had already left the shelf: the runner adjusts the SKU
    /// by `+qty` with reason `OrderCancelled`.
    RestockConfirmed {
        sku: Sku,
        qty: Quantity,
        order_id: OrderId,
    },
    MarkOrderInventoryUnavailable {
        order_id: OrderId,
        skus: Vec<Sku>,
    },
    CreatePayment {
        payment_id: PaymentId,
        order_id: OrderId,
        amount: Money,
        payment_method: PaymentMethod,
        idempotency_key: String,
    },
    StartOrderPayment {
        order_id: OrderId,
        payment_id: PaymentId,
    },
    /// The runner calls the gateway and records the capture or failure on the payment.
    ChargePayment {
        payment_id: PaymentId,
    },
    MarkOrderPaid {
        order_id: OrderId,
        payment_id: PaymentId,
        gateway_reference: String,
        amount: Money,
    },
    MarkOrderPaymentFailed {
        order_id: OrderId,
        reason: String,
        message: String,
    },
    ConfirmOrder {
        order_id: OrderId,
    },
    /// Cancelled by [`CancelledBy::System`].
    CancelOrder {
        order_id: OrderId,
        reason: String,
    },
    ProvisionAccount {
        customer_id: CustomerId,
        email: Email,
        order_id: OrderId,
    },
    AllocateLicense {
        sku: Sku,
        license_id: LicenseId,
        order_id: OrderId,
    },
    /// The runner builds the [`crate::license::LicensePayload`], signs it and issues the license.
    IssueSignedLicense {
        sku: Sku,
        license_id: LicenseId,
        order_id: OrderId,
        customer_id: CustomerId,
        seats: u32,
        validity_days: Option<u32>,
        expires_at: Option<DateTime<Utc>>,
    },
    IssueLicense {
        license_id: LicenseId,
        sku: Sku,
        order_id: OrderId,
        customer_id: CustomerId,
        seats: u32,
        key: String,
        expires_at: Option<DateTime<Utc>>,
    },
    AttachLicense {
        license_id: LicenseId,
        customer_id: CustomerId,
    },
    AttachLicenseToOrder {
        order_id: OrderId,
        sku: Sku,
        license_id: LicenseId,
    },
    FulfillOrder {
        order_id: OrderId,
    },
    RefundPayment {
        payment_id: PaymentId,
        amount: Money,
        reason: String,
        refund_reference: String,
    },
    MarkOrderRefunded {
        order_id: OrderId,
        amount: Money,
        reason: String,
        refund_reference: String,
    },
    RevokeLicense {
        license_id: LicenseId,
        reason: String,
    },
    QueueNotification {
        notification_id: NotificationId,
        kind: NotificationKind,
        to: Email,
        order_id: OrderId,
        license_id: Option<LicenseId>,
    },
}

/// The order as placed: what the process manager needs from `OrderPlaced`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub email: Email,
    pub total: Money,
    pub payment_method: PaymentMethod,
    pub placed_at: DateTime<Utc>,
}

/// Where one physical line's reservation stands. It only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationProgress {
    Requested,
    Reserved,
    Rejected,
    Confirmed,
    Released(ReleaseReason),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalLine {
    pub qty: Quantity,
    pub reservation_id: ReservationId,
    pub progress: ReservationProgress,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigitalLine {
    pub terms: DigitalTerms,
    pub license_id: LicenseId,
    /// The pool key allocated for this line.
    pub key: Option<String>,
    /// The pool had no key for this line, or the license could not be issued at all.
    pub exhausted: bool,
    /// Why the license could not be issued, when it was not the pool running dry.
    #[serde(default)]
    pub unavailable_reason: Option<String>,
    pub issued: bool,
    pub attached_to_order: bool,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    pub amount: Money,
    pub gateway_reference: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailure {
    pub reason: PaymentFailureReason,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRefund {
    pub amount: Money,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelInfo {
    pub reason: String,
    pub by: CancelledBy,
    pub was_paid: bool,
}

/// The facts one checkout has seen. Every field only moves forward.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckoutState {
    pub order: Option<PlacedOrder>,
    pub physical: BTreeMap<Sku, PhysicalLine>,
    pub digital: BTreeMap<Sku, DigitalLine>,
    pub intent_created: bool,
    pub captured: Option<Captured>,
    pub payment_failed: Option<PaymentFailure>,
    /// Refunds recorded on the payment, by refund reference.
    pub payment_refunds: BTreeMap<String, RecordedRefund>,
    pub account_provisioned_at: Option<DateTime<Utc>>,
    pub order_paid: bool,
    pub order_payment_failed: bool,
    pub order_inventory_unavailable: bool,
    pub order_confirmed: bool,
    pub order_fulfilled: bool,
    pub order_shipped: bool,
    pub order_cancelled: Option<CancelInfo>,
    /// Refunds recorded on the order, by refund reference.
    pub order_refunds: BTreeSet<String>,
}

impl CheckoutState {
    pub fn payment_id(order_id: OrderId) -> PaymentId {
        PaymentId::derived(&["checkout", &order_id.to_string(), "payment"])
    }

    pub fn reservation_id(order_id: OrderId, sku: &Sku) -> ReservationId {
        ReservationId::derived(&["checkout", &order_id.to_string(), sku.as_str(), "reservation"])
    }

    pub fn license_id(order_id: OrderId, sku: &Sku) -> LicenseId {
        LicenseId::derived(&["checkout", &order_id.to_string(), sku.as_str(), "license"])
    }

    /// The reference of the one compensating refund a checkout may send.
    pub fn compensation_reference(order_id: OrderId) -> String {
        format!("checkout-{order_id}-compensation")
    }

    fn rejected_skus(&self) -> Vec<Sku> {
        self.physical
            .iter()
            .filter(|(_, l)| l.progress == ReservationProgress::Rejected)
            .map(|(sku, _)| sku.clone())
            .collect()
    }

    fn exhausted_skus(&self) -> Vec<Sku> {
        self.digital.iter().filter(|(_, l)| l.exhausted).map(|(sku, _)| sku.clone()).collect()
    }

    fn any_expired(&self) -> bool {
        self.physical
            .values()
            .any(|l| l.progress == ReservationProgress::Released(ReleaseReason::Expired))
    }

    fn all_reserved(&self) -> bool {
        self.physical.values().all(|l| {
            matches!(l.progress, ReservationProgress::Reserved | ReservationProgress::Confirmed)
        })
    }

    fn all_reservations_answered(&self) -> bool {
        self.physical.values().all(|l| l.progress != ReservationProgress::Requested)
    }

    fn all_pool_lines_answered(&self) -> bool {
        self.digital
            .values()
            .filter(|l| l.terms.license == LicenseSource::Pool)
            .all(|l| l.key.is_some() || l.exhausted)
    }

    /// The order can no longer complete: from here on the checkout only compensates.
    pub fn aborted(&self) -> bool {
        !self.rejected_skus().is_empty()
            || self.payment_failed.is_some()
            || self.any_expired()
            || self.digital.values().any(|l| l.exhausted)
            || self.order_cancelled.is_some()
            || self.order_inventory_unavailable
            || self.order_payment_failed
    }

    /// Whatever aborted the order, in words, for the cancellation and the refund.
    fn abort_reason(&self) -> String {
        let list = |skus: Vec<Sku>| skus.iter().map(Sku::as_str).collect::<Vec<_>>().join(", ");
        if !self.rejected_skus().is_empty() {
            format!("inventory unavailable: {}", list(self.rejected_skus()))
        } else if let Some(failure) = &self.payment_failed {
            format!("payment failed: {}", failure.reason.code())
        } else if let Some((sku, reason)) =
            self.digital.iter().find_map(|(sku, l)| l.unavailable_reason.as_ref().map(|r| (sku, r)))
        {
            format!("license unavailable for {sku}: {reason}")
        } else if !self.exhausted_skus().is_empty() {
            format!("license unavailable: pool for {} is empty", list(self.exhausted_skus()))
        } else if self.any_expired() {
            "reservation expired".to_owned()
        } else if let Some(cancel) = &self.order_cancelled {
            format!("order cancelled: {}", cancel.reason)
        } else {
            "order cancelled".to_owned()
        }
    }

    fn release_reason(&self) -> ReleaseReason {
        if self.payment_failed.is_some() {
            ReleaseReason::PaymentFailed
        } else if !self.rejected_skus().is_empty() {
            ReleaseReason::OrderUnfulfillable
        } else {
            ReleaseReason::Cancelled
        }
    }

    /// Captured minus every refund recorded on the payment.
    fn refundable(&self) -> Option<Money> {
        let captured = self.captured.as_ref()?.amount;
        let refunded: i64 = self.payment_refunds.values().map(|r| r.amount.minor).sum();
        Some(Money::new(captured.minor - refunded, captured.currency))
    }

    /// Licenses count from when the purchase completed: the later of payment capture and
    /// account provisioning, whichever order they arrived in.
    fn license_expiry(&self, terms: &DigitalTerms) -> Option<DateTime<Utc>> {
        let start = match (&self.captured, self.account_provisioned_at) {
            (Some(c), Some(p)) => c.at.max(p),
            (Some(c), None) => c.at,
            (None, p) => p?,
        };
        terms.validity_days.map(|days| start + Duration::days(days.into()))
    }
}

/// Which checkout instance an event belongs to; `None` for events checkout does not follow.
pub fn order_of(event: &AnyEvent) -> Option<OrderId> {
    use InventoryEvent as I;
    use PaymentEvent as P;
    match event {
        AnyEvent::Order(e) => Some(e.order_id()),
        AnyEvent::Inventory(
            I::StockReserved { order_id, .. }
            | I::ReservationRejected { order_id, .. }
            | I::ReservationConfirmed { order_id, .. }
            | I::ReservationReleased { order_id, .. },
        ) => Some(*order_id),
        AnyEvent::Payment(
            P::PaymentIntentCreated { order_id, .. }
            | P::PaymentCaptured { order_id, .. }
            | P::PaymentFailed { order_id, .. }
            | P::PaymentRefunded { order_id, .. },
        ) => Some(*order_id),
        AnyEvent::Customer(CustomerEvent::AccountProvisioned { order_id, .. }) => Some(*order_id),
        AnyEvent::LicensePool(
            LicensePoolEvent::LicenseKeyAllocated { order_id, .. }
            | LicensePoolEvent::LicensePoolExhausted { order_id, .. },
        ) => Some(*order_id),
        AnyEvent::License(
            LicenseEvent::LicenseIssued { order_id, .. }
            | LicenseEvent::LicenseRevoked { order_id, .. }
            | LicenseEvent::LicenseIssueFailed { order_id, .. },
        ) => Some(*order_id),
        _ => None,
    }
}

/// Folds one event into the checkout's facts. Events of other orders, and events that would
/// move a fact backwards (a late duplicate), change nothing.
pub fn evolve(mut state: CheckoutState, event: &AnyEvent) -> CheckoutState {
    use ReservationProgress as R;
    if let AnyEvent::Order(OrderEvent::OrderPlaced {
        order_id,
        customer_id,
        email,
        lines,
        total,
        payment_method,
        at,
        ..
    }) = event
    {
        if state.order.is_none() {
            state.order = Some(PlacedOrder {
                order_id: *order_id,
                customer_id: *customer_id,
                email: email.clone(),
                total: *total,
                payment_method: payment_method.clone(),
                placed_at: *at,
            });
            for line in lines {
                match line.digital {
                    None => {
                        let reservation_id = CheckoutState::reservation_id(*order_id, &line.sku);
                        let progress = R::Requested;
                        state.physical.insert(
                            line.sku.clone(),
                            PhysicalLine { qty: line.qty, reservation_id, progress },
                        );
                    }
                    Some(terms) => {
                        let license_id = CheckoutState::license_id(*order_id, &line.sku);
                        state.digital.insert(
                            line.sku.clone(),
                            DigitalLine {
                                terms,
                                license_id,
                                key: None,
                                exhausted: false,
                                unavailable_reason: None,
                                issued: false,
                                attached_to_order: false,
                                revoked: false,
                            },
                        );
                    }
                }
            }
        }
        return state;
    }
    let Some(order_id) = state.order.as_ref().map(|o| o.order_id) else {
        return state;
    };
    if order_of(event) != Some(order_id) {
        return state;
    }
    let payment_id = CheckoutState::payment_id(order_id);
    // Moves a reservation forward, but only from one of the stages it may come from.
    let mut advance = |sku: &Sku, reservation_id: &ReservationId, from: &[R], to: R| {
        if let Some(line) = state.physical.get_mut(sku)
            && line.reservation_id == *reservation_id
            && from.contains(&line.progress)
        {
            line.progress = to;
        }
    };
    match event {
        AnyEvent::Inventory(e) => match e {
            InventoryEvent::StockReserved { sku, reservation_id, .. } => {
                advance(sku, reservation_id, &[R::Requested], R::Reserved)
            }
            InventoryEvent::ReservationRejected { sku, reservation_id, .. } => {
                advance(sku, reservation_id, &[R::Requested], R::Rejected)
            }
            InventoryEvent::ReservationConfirmed { sku, reservation_id, .. } => {
                advance(sku, reservation_id, &[R::Requested, R::Reserved], R::Confirmed)
            }
            InventoryEvent::ReservationReleased { sku, reservation_id, reason, .. } => {
                advance(sku, reservation_id, &[R::Requested, R::Reserved], R::Released(*reason))
            }
            InventoryEvent::StockReceived { .. } | InventoryEvent::StockAdjusted { .. } => {}
        },
        AnyEvent::Payment(e) => match e {
            PaymentEvent::PaymentIntentCreated { payment_id: p, .. } if *p == payment_id => {
                state.intent_created = true;
            }
            PaymentEvent::PaymentCaptured {
                payment_id: p, amount, gateway_reference, at, ..
            } if *p == payment_id && state.captured.is_none() => {
                let gateway_reference = gateway_reference.clone();
                state.captured = Some(Captured { amount: *amount, gateway_reference, at: *at });
            }
            PaymentEvent::PaymentFailed { payment_id: p, reason, message, .. }
                if *p == payment_id && state.payment_failed.is_none() =>
            {
                let failure = PaymentFailure { reason: *reason, message: message.clone() };
                state.payment_failed = Some(failure);
            }
            PaymentEvent::PaymentRefunded {
                payment_id: p,
                amount,
                reason,
                refund_reference,
                ..
            } if *p == payment_id => {
                let refund = RecordedRefund { amount: *amount, reason: reason.clone() };
                state.payment_refunds.entry(refund_reference.clone()).or_insert(refund);
            }
            _ => {}
        },
        AnyEvent::Customer(CustomerEvent::AccountProvisioned { at, .. }) => {
            state.account_provisioned_at.get_or_insert(*at);
        }
        AnyEvent::LicensePool(e) => match e {
            LicensePoolEvent::LicenseKeyAllocated { sku, license_id, key, .. } => {
                if let Some(line) = state.digital.get_mut(sku)
                    && line.license_id == *license_id
                    && line.key.is_none()
                {
                    line.key = Some(key.clone());
                }
            }
            LicensePoolEvent::LicensePoolExhausted { sku, license_id, .. } => {
                if let Some(line) = state.digital.get_mut(sku)
                    && line.license_id == *license_id
                    && line.key.is_none()
                {
                    line.exhausted = true;
                }
            }
            LicensePoolEvent::LicenseKeysLoaded { .. } => {}
        },
        AnyEvent::License(e) => {
            let (license_id, issued) = match e {
                LicenseEvent::LicenseIssued { license_id, .. } => (license_id, true),
                LicenseEvent::LicenseRevoked { license_id, .. } => (license_id, false),
                LicenseEvent::LicenseAttached { .. } => return state,
                // A license that cannot be issued aborts the order like an empty pool does.
                LicenseEvent::LicenseIssueFailed { sku, license_id, reason, .. } => {
                    if let Some(line) = state.digital.get_mut(sku)
                        && line.license_id == *license_id
                        && !line.issued
                    {
                        line.exhausted = true;
                        line.unavailable_reason = Some(reason.clone());
                    }
                    return state;
                }
            };
            if let Some(line) = state.digital.values_mut().find(|l| l.license_id == *license_id) {
                if issued {
                    line.issued = true;
                } else {
                    line.revoked = true;
                }
            }
        }
        AnyEvent::Order(e) => match e {
            OrderEvent::OrderPaid { .. } => state.order_paid = true,
            OrderEvent::OrderPaymentFailed { .. } => state.order_payment_failed = true,
            OrderEvent::OrderInventoryUnavailable { .. } => {
                state.order_inventory_unavailable = true
            }
            OrderEvent::OrderConfirmed { .. } => state.order_confirmed = true,
            OrderEvent::OrderLicenseAttached { sku, license_id, .. } => {
                if let Some(line) = state.digital.get_mut(sku)
                    && line.license_id == *license_id
                {
                    line.attached_to_order = true;
                }
            }
            OrderEvent::OrderFulfilled { .. } => state.order_fulfilled = true,
            OrderEvent::OrderShipped { .. } => state.order_shipped = true,
            OrderEvent::OrderCancelled { reason, by, was_paid, .. } => {
                let info = CancelInfo { reason: reason.clone(), by: *by, was_paid: *was_paid };
                state.order_cancelled.get_or_insert(info);
            }
            OrderEvent::OrderRefunded { refund_reference, .. } => {
                state.order_refunds.insert(refund_reference.clone());
            }
            OrderEvent::OrderPlaced { .. }
            | OrderEvent::OrderPaymentStarted { .. }
            | OrderEvent::OrderProcessingStarted { .. }
            | OrderEvent::OrderDelivered { .. } => {}
        },
        AnyEvent::Customer(_)
        | AnyEvent::Product(_)
        | AnyEvent::Cart(_)
        | AnyEvent::Notification(_) => {}
    }
    state
}

/// Something that should have happened once the checkout holds certain facts. The variant
/// order is the order in which actions are emitted when one event reaches several milestones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Milestone {
    Placed,
    PaymentRequested,
    Charge,
    ConfirmReservation(Sku),
    MarkPaid,
    ConfirmOrder,
    StartLicense(Sku),
    IssueFromKey(Sku),
    AttachLicense(Sku),
    Fulfill,
    Release(Sku),
    MarkPaymentFailed,
    MarkInventoryUnavailable,
    /// Refund what is still refundable (in minor units). Keyed by the amount so that if the
    /// compensating refund was refused because an admin refund got in first, the smaller
    /// remainder is a new milestone and is refunded under the same reference.
    Refund(i64),
    Cancel,
    Restock(Sku),
    RevokeLicense(Sku),
    MarkOrderRefunded(String),
    NotifyPaymentFailed,
    NotifyCancelled,
    NotifyShipped,
    NotifyRefunded(String),
}

/// Every milestone the facts in `state` call for.
pub fn milestones(state: &CheckoutState) -> BTreeSet<Milestone> {
    use Milestone as M;
    use ReservationProgress as R;
    let mut m = BTreeSet::new();
    if state.order.is_none() {
        return m;
    }
    let aborted = state.aborted();
    let captured = state.captured.is_some();
    let cancelled = state.order_cancelled.is_some();
    m.insert(M::Placed);
    if !aborted && state.all_reserved() {
        m.insert(M::PaymentRequested);
    }
    if state.intent_created && !aborted {
        m.insert(M::Charge);
    }
    for (sku, line) in &state.physical {
        match line.progress {
            R::Reserved if aborted => m.insert(M::Release(sku.clone())),
            R::Reserved if captured => m.insert(M::ConfirmReservation(sku.clone())),
            R::Confirmed if cancelled => m.insert(M::Restock(sku.clone())),
            _ => false,
        };
    }
    if captured && !aborted {
        m.insert(M::MarkPaid);
    }
    let all_confirmed = state.physical.values().all(|l| l.progress == R::Confirmed);
    if state.order_paid && !state.physical.is_empty() && all_confirmed && !aborted {
        m.insert(M::ConfirmOrder);
    }
    for (sku, line) in &state.digital {
        if captured && state.account_provisioned_at.is_some() && !aborted {
            m.insert(M::StartLicense(sku.clone()));
        }
        if line.key.is_some() && !aborted {
            m.insert(M::IssueFromKey(sku.clone()));
        }
        if line.issued && !aborted {
            m.insert(M::AttachLicense(sku.clone()));
        }
        if line.issued && !line.revoked && (cancelled || !state.order_refunds.is_empty()) {
            m.insert(M::RevokeLicense(sku.clone()));
        }
    }
    if !state.digital.is_empty() && state.digital.values().all(|l| l.attached_to_order) && !aborted
    {
        m.insert(M::Fulfill);
    }
    if state.payment_failed.is_some() && !cancelled {
        m.insert(M::MarkPaymentFailed);
    }
    if !state.rejected_skus().is_empty() && state.all_reservations_answered() && !cancelled {
        m.insert(M::MarkInventoryUnavailable);
    }
    if let Some(refundable) = state.refundable().filter(|r| aborted && r.minor > 0) {
        m.insert(M::Refund(refundable.minor));
    }
    let pool_gave_up = !state.exhausted_skus().is_empty() && state.all_pool_lines_answered();
    let cancel_wanted = state.order_inventory_unavailable
        || state.order_payment_failed
        || state.any_expired()
        || pool_gave_up;
    if cancel_wanted && !cancelled {
        m.insert(M::Cancel);
    }
    // A compensating refund is recorded on the order only after the order is cancelled, so
    // the timeline reads CANCELLED then REFUNDED whichever of the two commands ran first.
    if state.order_paid && (!aborted || cancelled) {
        for reference in state.payment_refunds.keys() {
            if !state.order_refunds.contains(reference) {
                m.insert(M::MarkOrderRefunded(reference.clone()));
            }
        }
    }
    if state.order_payment_failed {
        m.insert(M::NotifyPaymentFailed);
    }
    // Customers whose payment failed already got that notice; everyone else hears about the
    // cancellation.
    if cancelled && !state.order_payment_failed {
        m.insert(M::NotifyCancelled);
    }
    if state.order_shipped {
        m.insert(M::NotifyShipped);
    }
    for reference in &state.order_refunds {
        m.insert(M::NotifyRefunded(reference.clone()));
    }
    m
}

/// The actions caused by `event`, given the state before it.
pub fn react(
    before: &CheckoutState,
    event: &AnyEvent,
    config: &CheckoutConfig,
) -> Vec<CheckoutAction> {
    let after = evolve(before.clone(), event);
    let reached_before = milestones(before);
    milestones(&after)
        .into_iter()
        .filter(|m| !reached_before.contains(m))
        .flat_map(|m| actions(&after, &m, config))
        .collect()
}

fn notification(
    order: &PlacedOrder,
    kind: NotificationKind,
    discriminator: &str,
    license_id: Option<LicenseId>,
) -> CheckoutAction {
    let order_id = order.order_id;
    let parts = ["checkout", &order_id.to_string(), "notification", kind.as_str(), discriminator];
    CheckoutAction::QueueNotification {
        notification_id: NotificationId::derived(&parts),
        kind,
        to: order.email.clone(),
        order_id,
        license_id,
    }
}

/// The commands that carry out one milestone, built from the state that reached it.
fn actions(
    state: &CheckoutState,
    milestone: &Milestone,
    config: &CheckoutConfig,
) -> Vec<CheckoutAction> {
    use CheckoutAction as A;
    use Milestone as M;
    let Some(order) = &state.order else {
        return vec![];
    };
    let order_id = order.order_id;
    let payment_id = CheckoutState::payment_id(order_id);
    let physical = |sku: &Sku| state.physical.get(sku);
    let digital = |sku: &Sku| state.digital.get(sku);
    match milestone {
        M::Placed => {
            let mut out: Vec<_> = state
                .physical
                .iter()
                .map(|(sku, line)| A::ReserveStock {
                    sku: sku.clone(),
                    reservation_id: line.reservation_id,
                    order_id,
                    qty: line.qty,
                    expires_at: order.placed_at + config.reservation_ttl,
                })
                .collect();
            if !state.digital.is_empty() {
                out.push(A::ProvisionAccount {
                    customer_id: order.customer_id,
                    email: order.email.clone(),
                    order_id,
                });
            }
            out
        }
        M::PaymentRequested => vec![
            A::CreatePayment {
                payment_id,
                order_id,
                amount: order.total,
                payment_method: order.payment_method.clone(),
                idempotency_key: format!("checkout-{order_id}-payment"),
            },
            A::StartOrderPayment { order_id, payment_id },
        ],
        M::Charge => vec![A::ChargePayment { payment_id }],
        M::ConfirmReservation(sku) => physical(sku)
            .map(|l| A::ConfirmReservation { sku: sku.clone(), reservation_id: l.reservation_id })
            .into_iter()
            .collect(),
        M::MarkPaid => state
            .captured
            .iter()
            .map(|c| A::MarkOrderPaid {
                order_id,
                payment_id,
                gateway_reference: c.gateway_reference.clone(),
                amount: c.amount,
            })
            .collect(),
        M::ConfirmOrder => vec![
            A::ConfirmOrder { order_id },
            notification(order, NotificationKind::OrderConfirmed, "", None),
        ],
        M::StartLicense(sku) => digital(sku)
            .map(|l| match l.terms.license {
                LicenseSource::Pool => {
                    A::AllocateLicense { sku: sku.clone(), license_id: l.license_id, order_id }
                }
                LicenseSource::Signed => A::IssueSignedLicense {
                    sku: sku.clone(),
                    license_id: l.license_id,
                    order_id,
                    customer_id: order.customer_id,
                    seats: l.terms.seats,
                    validity_days: l.terms.validity_days,
                    expires_at: state.license_expiry(&l.terms),
                },
            })
            .into_iter()
            .collect(),
        M::IssueFromKey(sku) => digital(sku)
            .and_then(|l| {
                Some(A::IssueLicense {
                    license_id: l.license_id,
                    sku: sku.clone(),
                    order_id,
                    customer_id: order.customer_id,
                    seats: l.terms.seats,
                    key: l.key.clone()?,
                    expires_at: state.license_expiry(&l.terms),
                })
            })
            .into_iter()
            .collect(),
        M::AttachLicense(sku) => digital(sku)
            .map(|l| {
                vec![
                    A::AttachLicense { license_id: l.license_id, customer_id: order.customer_id },
                    A::AttachLicenseToOrder {
                        order_id,
                        sku: sku.clone(),
                        license_id: l.license_id,
                    },
                ]
            })
            .unwrap_or_default(),
        M::Fulfill => std::iter::once(A::FulfillOrder { order_id })
            .chain(state.digital.iter().map(|(sku, l)| {
                notification(
                    order,
                    NotificationKind::LicenseReady,
                    sku.as_str(),
                    Some(l.license_id),
                )
            }))
            .collect(),
        M::Release(sku) => physical(sku)
            .map(|l| A::ReleaseReservation {
                sku: sku.clone(),
                reservation_id: l.reservation_id,
                reason: state.release_reason(),
            })
            .into_iter()
            .collect(),
        M::MarkPaymentFailed => state
            .payment_failed
            .iter()
            .map(|f| A::MarkOrderPaymentFailed {
                order_id,
                reason: f.reason.code().to_owned(),
                message: f.message.clone(),
            })
            .collect(),
        M::MarkInventoryUnavailable => {
            vec![A::MarkOrderInventoryUnavailable { order_id, skus: state.rejected_skus() }]
        }
        M::Refund(_) => state
            .refundable()
            .map(|amount| A::RefundPayment {
                payment_id,
                amount,
                reason: state.abort_reason(),
                refund_reference: CheckoutState::compensation_reference(order_id),
            })
            .into_iter()
            .collect(),
        M::Cancel => vec![A::CancelOrder { order_id, reason: state.abort_reason() }],
        M::Restock(sku) => physical(sku)
            .map(|l| A::RestockConfirmed { sku: sku.clone(), qty: l.qty, order_id })
            .into_iter()
            .collect(),
        M::RevokeLicense(sku) => digital(sku)
            .map(|l| A::RevokeLicense {
                license_id: l.license_id,
                reason: if state.order_cancelled.is_some() {
                    "order cancelled".to_owned()
                } else {
                    "order refunded".to_owned()
                },
            })
            .into_iter()
            .collect(),
        M::MarkOrderRefunded(reference) => state
            .payment_refunds
            .get(reference)
            .map(|r| A::MarkOrderRefunded {
                order_id,
                amount: r.amount,
                reason: r.reason.clone(),
                refund_reference: reference.clone(),
            })
            .into_iter()
            .collect(),
        M::NotifyPaymentFailed => {
            vec![notification(order, NotificationKind::PaymentFailed, "", None)]
        }
        M::NotifyCancelled => vec![notification(order, NotificationKind::OrderCancelled, "", None)],
        M::NotifyShipped => vec![notification(order, NotificationKind::Shipped, "", None)],
        M::NotifyRefunded(reference) => {
            vec![notification(order, NotificationKind::Refunded, reference, None)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CheckoutAction as A;
    use super::*;
    use crate::order::OrderLine;
    use crate::test_support::{email, qty, sku, t, usd};
    use proptest::prelude::*;

    fn oid() -> OrderId {
        OrderId::derived(&["checkout-test-order"])
    }

    fn pid() -> PaymentId {
        CheckoutState::payment_id(oid())
    }

    fn rid(s: &str) -> ReservationId {
        CheckoutState::reservation_id(oid(), &sku(s))
    }

    fn lid(s: &str) -> LicenseId {
        CheckoutState::license_id(oid(), &sku(s))
    }

    fn customer() -> CustomerId {
        CustomerId::for_email(&email("ann@example.com"))
    }

    fn pool() -> DigitalTerms {
        DigitalTerms { license: LicenseSource::Pool, seats: 1, validity_days: Some(365) }
    }

    fn signed() -> DigitalTerms {
        DigitalTerms { license: LicenseSource::Signed, seats: 5, validity_days: Some(30) }
    }

    /// `OrderPlaced` for lines of (SKU, quantity, license terms if digital), each at $10.
    fn placed(lines: &[(&str, i64, Option<DigitalTerms>)]) -> AnyEvent {
        let lines: Vec<OrderLine> = lines
            .iter()
            .map(|(s, n, d)| OrderLine::new(sku(s), s, qty(*n), usd(1_000), *d).unwrap())
            .collect();
        let total = usd(lines.iter().map(|l| l.line_total.minor).sum());
        OrderEvent::OrderPlaced {
            order_id: oid(),
            customer_id: customer(),
            email: email("ann@example.com"),
            lines,
            total,
            cart_id: None,
            payment_method: PaymentMethod::parse("pm_test").unwrap(),
            shipping_address: None,
            at: t(0),
        }
        .into()
    }

    fn reserved(s: &str, n: i64) -> AnyEvent {
        let (reservation_id, order_id) = (rid(s), oid());
        let expires_at = t(10);
        InventoryEvent::StockReserved {
            sku: sku(s),
            reservation_id,
            order_id,
            qty: qty(n),
            expires_at,
            at: t(1),
        }
        .into()
    }

    fn rejected(s: &str, n: i64) -> AnyEvent {
        let (reservation_id, order_id) = (rid(s), oid());
        InventoryEvent::ReservationRejected {
            sku: sku(s),
            reservation_id,
            order_id,
            requested: qty(n),
            available: 0,
            at: t(1),
        }
        .into()
    }

    fn reservation_confirmed(s: &str, n: i64) -> AnyEvent {
        let (reservation_id, order_id) = (rid(s), oid());
        InventoryEvent::ReservationConfirmed {
            sku: sku(s),
            reservation_id,
            order_id,
            qty: qty(n),
            at: t(4),
        }
        .into()
    }

    fn reservation_released(s: &str, n: i64, reason: ReleaseReason) -> AnyEvent {
        let (reservation_id, order_id) = (rid(s), oid());
        InventoryEvent::ReservationReleased {
            sku: sku(s),
            reservation_id,
            order_id,
            qty: qty(n),
            reason,
            at: t(11),
        }
        .into()
    }

    fn intent_created(minor: i64) -> AnyEvent {
        PaymentEvent::PaymentIntentCreated {
            payment_id: pid(),
            order_id: oid(),
            amount: usd(minor),
            payment_method: PaymentMethod::parse("pm_test").unwrap(),
            idempotency_key: format!("checkout-{}-payment", oid()),
            at: t(2),
        }
        .into()
    }

    fn captured(minor: i64, minute: i64) -> AnyEvent {
        let (payment_id, order_id) = (pid(), oid());
        let gateway_reference = "ch_1".to_owned();
        PaymentEvent::PaymentCaptured {
            payment_id,
            order_id,
            amount: usd(minor),
            gateway_reference,
            at: t(minute),
        }
        .into()
    }

    fn payment_failed() -> AnyEvent {
        PaymentEvent::PaymentFailed {
            payment_id: pid(),
            order_id: oid(),
            reason: PaymentFailureReason::Declined,
            message: "card declined".into(),
            at: t(3),
        }
        .into()
    }

    fn payment_refunded(minor: i64, reference: &str) -> AnyEvent {
        PaymentEvent::PaymentRefunded {
            payment_id: pid(),
            order_id: oid(),
            amount: usd(minor),
            reason: "refund".into(),
            refund_reference: reference.into(),
            at: t(20),
        }
        .into()
    }

    fn provisioned(minute: i64) -> AnyEvent {
        CustomerEvent::AccountProvisioned {
            customer_id: customer(),
            email: email("ann@example.com"),
            order_id: oid(),
            guest: true,
            at: t(minute),
        }
        .into()
    }

    fn key_allocated(s: &str, key: &str) -> AnyEvent {
        let (license_id, order_id) = (lid(s), oid());
        LicensePoolEvent::LicenseKeyAllocated {
            sku: sku(s),
            license_id,
            order_id,
            key: key.into(),
            at: t(6),
        }
        .into()
    }

    fn pool_exhausted(s: &str) -> AnyEvent {
        LicensePoolEvent::LicensePoolExhausted {
            sku: sku(s),
            license_id: lid(s),
            order_id: oid(),
            at: t(6),
        }
        .into()
    }

    fn license_issued(s: &str, terms: DigitalTerms) -> AnyEvent {
        LicenseEvent::LicenseIssued {
            license_id: lid(s),
            sku: sku(s),
            order_id: oid(),
            customer_id: customer(),
            seats: terms.seats,
            key: "KEY".into(),
            expires_at: None,
            at: t(7),
        }
        .into()
    }

    fn license_revoked(s: &str) -> AnyEvent {
        LicenseEvent::LicenseRevoked {
            license_id: lid(s),
            order_id: oid(),
            reason: "order refunded".into(),
            at: t(21),
        }
        .into()
    }

    fn order_event(make: impl FnOnce(OrderId) -> OrderEvent) -> AnyEvent {
        make(oid()).into()
    }

    fn payment_started() -> AnyEvent {
        order_event(|order_id| OrderEvent::OrderPaymentStarted {
            order_id,
            payment_id: pid(),
            at: t(2),
        })
    }

    fn order_paid(minor: i64) -> AnyEvent {
        order_event(|order_id| OrderEvent::OrderPaid {
            order_id,
            payment_id: pid(),
            gateway_reference: "ch_1".into(),
            amount: usd(minor),
            at: t(5),
        })
    }

    fn order_confirmed() -> AnyEvent {
        order_event(|order_id| OrderEvent::OrderConfirmed { order_id, at: t(5) })
    }

    fn license_attached_to_order(s: &str) -> AnyEvent {
        order_event(|order_id| OrderEvent::OrderLicenseAttached {
            order_id,
            sku: sku(s),
            license_id: lid(s),
            at: t(8),
        })
    }

    fn order_cancelled(by: CancelledBy, was_paid: bool) -> AnyEvent {
        let reason = "cancelled".to_owned();
        order_event(|order_id| OrderEvent::OrderCancelled {
            order_id,
            reason,
            by,
            was_paid,
            at: t(12),
        })
    }

    fn order_refunded(minor: i64, reference: &str) -> AnyEvent {
        order_event(|order_id| OrderEvent::OrderRefunded {
            order_id,
            amount: usd(minor),
            reason: "refund".into(),
            refund_reference: reference.into(),
            at: t(21),
        })
    }

    fn notify(
        kind: NotificationKind,
        discriminator: &str,
        license_id: Option<LicenseId>,
    ) -> CheckoutAction {
        let parts = ["checkout", &oid().to_string(), "notification", kind.as_str(), discriminator];
        A::QueueNotification {
            notification_id: NotificationId::derived(&parts),
            kind,
            to: email("ann@example.com"),
            order_id: oid(),
            license_id,
        }
    }

    fn reserve(s: &str, n: i64) -> CheckoutAction {
        A::ReserveStock {
            sku: sku(s),
            reservation_id: rid(s),
            order_id: oid(),
            qty: qty(n),
            expires_at: t(10),
        }
    }

    fn release(s: &str, reason: ReleaseReason) -> CheckoutAction {
        A::ReleaseReservation { sku: sku(s), reservation_id: rid(s), reason }
    }

    fn confirm_reservation(s: &str) -> CheckoutAction {
        A::ConfirmReservation { sku: sku(s), reservation_id: rid(s) }
    }

    fn request_payment(minor: i64) -> Vec<CheckoutAction> {
        vec![
            A::CreatePayment {
                payment_id: pid(),
                order_id: oid(),
                amount: usd(minor),
                payment_method: PaymentMethod::parse("pm_test").unwrap(),
                idempotency_key: format!("checkout-{}-payment", oid()),
            },
            A::StartOrderPayment { order_id: oid(), payment_id: pid() },
        ]
    }

    fn mark_paid(minor: i64) -> CheckoutAction {
        A::MarkOrderPaid {
            order_id: oid(),
            payment_id: pid(),
            gateway_reference: "ch_1".into(),
            amount: usd(minor),
        }
    }

    fn provision() -> CheckoutAction {
        A::ProvisionAccount {
            customer_id: customer(),
            email: email("ann@example.com"),
            order_id: oid(),
        }
    }

    fn attach(s: &str) -> Vec<CheckoutAction> {
        vec![
            A::AttachLicense { license_id: lid(s), customer_id: customer() },
            A::AttachLicenseToOrder { order_id: oid(), sku: sku(s), license_id: lid(s) },
        ]
    }

    fn compensation(minor: i64, reason: &str) -> CheckoutAction {
        A::RefundPayment {
            payment_id: pid(),
            amount: usd(minor),
            reason: reason.into(),
            refund_reference: CheckoutState::compensation_reference(oid()),
        }
    }

    fn mark_refunded(minor: i64, reference: &str) -> CheckoutAction {
        A::MarkOrderRefunded {
            order_id: oid(),
            amount: usd(minor),
            reason: "refund".into(),
            refund_reference: reference.into(),
        }
    }

    /// Given/when/then for the process manager: `given` folds a history, `when` reacts to one
    /// event (then folds it in, as the runner does), `then` asserts the actions.
    struct Checkout {
        state: CheckoutState,
        config: CheckoutConfig,
    }

    fn given(history: impl IntoIterator<Item = AnyEvent>) -> Checkout {
        let state = history.into_iter().fold(CheckoutState::default(), |s, e| evolve(s, &e));
        Checkout { state, config: CheckoutConfig::default() }
    }

    impl Checkout {
        fn when(&mut self, event: AnyEvent) -> Then {
            let actions = react(&self.state, &event, &self.config);
            self.state = evolve(self.state.clone(), &event);
            Then(actions)
        }
    }

    struct Then(Vec<CheckoutAction>);

    impl Then {
        #[track_caller]
        fn then(self, expected: impl IntoIterator<Item = CheckoutAction>) {
            assert_eq!(self.0, expected.into_iter().collect::<Vec<_>>());
        }

        #[track_caller]
        fn then_nothing(self) {
            assert_eq!(self.0, vec![]);
        }
    }

    #[test]
    fn happy_physical_path() {
        let mut pm = given([]);
        pm.when(placed(&[("LAP", 2, None), ("MOUSE", 1, None)]))
            .then([reserve("LAP", 2), reserve("MOUSE", 1)]);
        pm.when(reserved("LAP", 2)).then_nothing();
        pm.when(reserved("MOUSE", 1)).then(request_payment(3_000));
        pm.when(payment_started()).then_nothing();
        pm.when(intent_created(3_000)).then([A::ChargePayment { payment_id: pid() }]);
        pm.when(captured(3_000, 3)).then([
            confirm_reservation("LAP"),
            confirm_reservation("MOUSE"),
            mark_paid(3_000),
        ]);
        pm.when(reservation_confirmed("LAP", 2)).then_nothing();
        pm.when(order_paid(3_000)).then_nothing();
        pm.when(reservation_confirmed("MOUSE", 1)).then([
            A::ConfirmOrder { order_id: oid() },
            notify(NotificationKind::OrderConfirmed, "", None),
        ]);
        pm.when(order_confirmed()).then_nothing();
        let shipped = order_event(|order_id| OrderEvent::OrderShipped {
            order_id,
            tracking_number: "1Z".into(),
            carrier: "UPS".into(),
            estimated_delivery: None,
            at: t(30),
        });
        pm.when(shipped).then([notify(NotificationKind::Shipped, "", None)]);
    }

    #[test]
    fn digital_order_paid_before_the_account_is_provisioned() {
        let mut pm = given([]);
        let mut first = vec![provision()];
        first.extend(request_payment(1_000));
        pm.when(placed(&[("AV", 1, Some(pool()))])).then(first);
        pm.when(intent_created(1_000)).then([A::ChargePayment { payment_id: pid() }]);
        pm.when(captured(1_000, 3)).then([mark_paid(1_000)]);
        pm.when(order_paid(1_000)).then_nothing();
        pm.when(provisioned(4)).then([A::AllocateLicense {
            sku: sku("AV"),
            license_id: lid("AV"),
            order_id: oid(),
        }]);
        pm.when(key_allocated("AV", "K-1")).then([A::IssueLicense {
            license_id: lid("AV"),
            sku: sku("AV"),
            order_id: oid(),
            customer_id: customer(),
            seats: 1,
            key: "K-1".into(),
            expires_at: Some(t(4) + Duration::days(365)),
        }]);
        pm.when(license_issued("AV", pool())).then(attach("AV"));
        pm.when(license_attached_to_order("AV")).then([
            A::FulfillOrder { order_id: oid() },
            notify(NotificationKind::LicenseReady, "AV", Some(lid("AV"))),
        ]);
    }

    #[test]
    fn digital_order_provisioned_before_payment() {
        let mut pm = given([placed(&[("AV", 1, Some(signed()))]), intent_created(1_000)]);
        pm.when(provisioned(1)).then_nothing();
        pm.when(captured(1_000, 3)).then([
            mark_paid(1_000),
            A::IssueSignedLicense {
                sku: sku("AV"),
                license_id: lid("AV"),
                order_id: oid(),
                customer_id: customer(),
                seats: 5,
                validity_days: Some(30),
                expires_at: Some(t(3) + Duration::days(30)),
            },
        ]);
        pm.when(license_issued("AV", signed())).then(attach("AV"));
        pm.when(license_attached_to_order("AV")).then([
            A::FulfillOrder { order_id: oid() },
            notify(NotificationKind::LicenseReady, "AV", Some(lid("AV"))),
        ]);
    }

    #[test]
    fn mixed_order_confirms_the_physical_half_and_fulfils_the_digital_half() {
        let mut pm = given([]);
        pm.when(placed(&[("LAP", 1, None), ("AV", 1, Some(signed()))]))
            .then([reserve("LAP", 1), provision()]);
        pm.when(provisioned(1)).then_nothing();
        pm.when(reserved("LAP", 1)).then(request_payment(2_000));
        pm.when(intent_created(2_000)).then([A::ChargePayment { payment_id: pid() }]);
        let actions = pm.when(captured(2_000, 3)).0;
        assert_eq!(actions[..2], [confirm_reservation("LAP"), mark_paid(2_000)]);
        assert!(matches!(actions[2], A::IssueSignedLicense { .. }) && actions.len() == 3);
        pm.when(reservation_confirmed("LAP", 1)).then_nothing();
        pm.when(order_paid(2_000)).then([
            A::ConfirmOrder { order_id: oid() },
            notify(NotificationKind::OrderConfirmed, "", None),
        ]);
        pm.when(order_confirmed()).then_nothing();
        pm.when(license_issued("AV", signed())).then(attach("AV"));
        pm.when(license_attached_to_order("AV")).then([
            A::FulfillOrder { order_id: oid() },
            notify(NotificationKind::LicenseReady, "AV", Some(lid("AV"))),
        ]);
    }

    #[test]
    fn inventory_unavailable_releases_the_rest_and_cancels() {
        let mut pm = given([placed(&[("LAP", 2, None), ("MOUSE", 1, None)])]);
        pm.when(reserved("LAP", 2)).then_nothing();
        pm.when(rejected("MOUSE", 1)).then([
            release("LAP", ReleaseReason::OrderUnfulfillable),
            A::MarkOrderInventoryUnavailable { order_id: oid(), skus: vec![sku("MOUSE")] },
        ]);
        pm.when(reservation_released("LAP", 2, ReleaseReason::OrderUnfulfillable)).then_nothing();
        let unavailable = order_event(|order_id| OrderEvent::OrderInventoryUnavailable {
            order_id,
            skus: vec![sku("MOUSE")],
            at: t(2),
        });
        pm.when(unavailable).then([A::CancelOrder {
            order_id: oid(),
            reason: "inventory unavailable: MOUSE".into(),
        }]);
        pm.when(order_cancelled(CancelledBy::System, false)).then([notify(
            NotificationKind::OrderCancelled,
            "",
            None,
        )]);

        // The other arrival order: the rejection first, the reservation afterwards.
        let mut pm = given([placed(&[("LAP", 2, None), ("MOUSE", 1, None)])]);
        pm.when(rejected("MOUSE", 1)).then_nothing();
        pm.when(reserved("LAP", 2)).then([
            release("LAP", ReleaseReason::OrderUnfulfillable),
            A::MarkOrderInventoryUnavailable { order_id: oid(), skus: vec![sku("MOUSE")] },
        ]);
    }

    #[test]
    fn payment_failure_releases_stock_and_cancels_with_a_notice() {
        let mut pm = given([
            placed(&[("LAP", 2, None)]),
            reserved("LAP", 2),
            payment_started(),
            intent_created(2_000),
        ]);
        pm.when(payment_failed()).then([
            release("LAP", ReleaseReason::PaymentFailed),
            A::MarkOrderPaymentFailed {
                order_id: oid(),
                reason: "declined".into(),
                message: "card declined".into(),
            },
        ]);
        let failed = order_event(|order_id| OrderEvent::OrderPaymentFailed {
            order_id,
            reason: "declined".into(),
            message: "card declined".into(),
            at: t(4),
        });
        pm.when(failed).then([
            A::CancelOrder { order_id: oid(), reason: "payment failed: declined".into() },
            notify(NotificationKind::PaymentFailed, "", None),
        ]);
        pm.when(reservation_released("LAP", 2, ReleaseReason::PaymentFailed)).then_nothing();
        pm.when(order_cancelled(CancelledBy::System, false)).then_nothing();
    }

    #[test]
    fn a_license_that_cannot_be_signed_refunds_and_cancels() {
        let history = [
            placed(&[("AV", 1, Some(signed()))]),
            intent_created(1_000),
            provisioned(1),
            captured(1_000, 3),
            order_paid(1_000),
        ];
        let failed: AnyEvent = LicenseEvent::LicenseIssueFailed {
            license_id: lid("AV"),
            sku: sku("AV"),
            order_id: oid(),
            reason: "no license signing key is configured".into(),
            at: t(6),
        }
        .into();
        assert_eq!(order_of(&failed), Some(oid()));
        let reason = "license unavailable for AV: no license signing key is configured";
        let mut pm = given(history);
        pm.when(failed.clone()).then([
            compensation(1_000, reason),
            A::CancelOrder { order_id: oid(), reason: reason.into() },
        ]);
        pm.when(failed).then_nothing();
    }

    #[test]
    fn an_empty_license_pool_refunds_and_cancels() {
        let history = [
            placed(&[("AV", 1, Some(pool()))]),
            intent_created(1_000),
            provisioned(1),
            captured(1_000, 3),
            order_paid(1_000),
        ];
        let reason = "license unavailable: pool for AV is empty";
        let reference = CheckoutState::compensation_reference(oid());
        let mut pm = given(history.clone());
        pm.when(pool_exhausted("AV")).then([
            compensation(1_000, reason),
            A::CancelOrder { order_id: oid(), reason: reason.into() },
        ]);
        // The order records the refund only once it is cancelled, so it ends REFUNDED with
        // CANCELLED before it, whichever of the two lands first.
        pm.when(payment_refunded(1_000, &reference)).then_nothing();
        pm.when(order_cancelled(CancelledBy::System, true)).then([
            mark_refunded(1_000, &reference),
            notify(NotificationKind::OrderCancelled, "", None),
        ]);
        pm.when(order_refunded(1_000, &reference)).then([notify(
            NotificationKind::Refunded,
            &reference,
            None,
        )]);

        let mut pm = given(history);
        pm.when(pool_exhausted("AV")).then([
            compensation(1_000, reason),
            A::CancelOrder { order_id: oid(), reason: reason.into() },
        ]);
        pm.when(order_cancelled(CancelledBy::System, true)).then([notify(
            NotificationKind::OrderCancelled,
            "",
            None,
        )]);
        pm.when(payment_refunded(1_000, &reference)).then([mark_refunded(1_000, &reference)]);
    }

    #[test]
    fn admin_cancel_of_a_paid_order_gives_everything_back() {
        let mut pm = given([
            placed(&[("LAP", 2, None), ("MOUSE", 1, None)]),
            reserved("LAP", 2),
            reserved("MOUSE", 1),
            intent_created(3_000),
            captured(3_000, 3),
            reservation_confirmed("LAP", 2),
        ]);
        let reference = CheckoutState::compensation_reference(oid());
        pm.when(order_cancelled(CancelledBy::Admin, true)).then([
            release("MOUSE", ReleaseReason::Cancelled),
            compensation(3_000, "order cancelled: cancelled"),
            A::RestockConfirmed { sku: sku("LAP"), qty: qty(2), order_id: oid() },
            notify(NotificationKind::OrderCancelled, "", None),
        ]);
        // The confirmation that was in flight wins the race against the release: that stock
        // is put back too.
        pm.when(reservation_confirmed("MOUSE", 1)).then([A::RestockConfirmed {
            sku: sku("MOUSE"),
            qty: qty(1),
            order_id: oid(),
        }]);
        pm.when(payment_refunded(3_000, &reference)).then_nothing();
        // The order never recorded its payment here (OrderPaid was not seen), so there is no
        // refund to record on it; with OrderPaid seen, the refund is recorded.
        pm.when(order_paid(3_000)).then([A::MarkOrderRefunded {
            order_id: oid(),
            amount: usd(3_000),
            reason: "refund".into(),
            refund_reference: reference.clone(),
        }]);
    }

    #[test]
    fn a_refused_compensation_is_retried_for_what_is_left() {
        let mut pm = given([
            placed(&[("AV", 1, Some(signed()))]),
            intent_created(3_000),
            captured(3_000, 3),
            order_paid(3_000),
        ]);
        pm.when(order_cancelled(CancelledBy::Admin, true)).then([
            compensation(3_000, "order cancelled: cancelled"),
            notify(NotificationKind::OrderCancelled, "", None),
        ]);
        // An admin refund of 1,000 landed first, so the payment refused the full 3,000; the
        // remaining 2,000 go back under the same reference.
        pm.when(payment_refunded(1_000, "admin-1")).then([
            compensation(2_000, "order cancelled: cancelled"),
            mark_refunded(1_000, "admin-1"),
        ]);
    }

    #[test]
    fn refunding_a_fulfilled_order_revokes_its_licenses() {
        let mut pm = given([
            placed(&[("AV", 1, Some(signed()))]),
            intent_created(1_000),
            provisioned(1),
            captured(1_000, 3),
            order_paid(1_000),
            license_issued("AV", signed()),
            license_attached_to_order("AV"),
        ]);
        pm.when(payment_refunded(400, "admin-1")).then([mark_refunded(400, "admin-1")]);
        pm.when(order_refunded(400, "admin-1")).then([
            A::RevokeLicense { license_id: lid("AV"), reason: "order refunded".into() },
            notify(NotificationKind::Refunded, "admin-1", None),
        ]);
        pm.when(license_revoked("AV")).then_nothing();
    }

    #[test]
    fn an_expired_reservation_cancels_and_a_late_capture_is_refunded() {
        let mut pm = given([
            placed(&[("LAP", 2, None), ("MOUSE", 1, None)]),
            reserved("LAP", 2),
            reserved("MOUSE", 1),
            payment_started(),
            intent_created(3_000),
        ]);
        pm.when(reservation_released("LAP", 2, ReleaseReason::Expired)).then([
            release("MOUSE", ReleaseReason::Cancelled),
            A::CancelOrder { order_id: oid(), reason: "reservation expired".into() },
        ]);
        pm.when(captured(3_000, 12)).then([compensation(3_000, "reservation expired")]);
        pm.when(order_cancelled(CancelledBy::System, false)).then([notify(
            NotificationKind::OrderCancelled,
            "",
            None,
        )]);
        // The order never recorded the payment, so the refund stays on the payment.
        pm.when(payment_refunded(3_000, &CheckoutState::compensation_reference(oid())))
            .then_nothing();
    }

    /// Every event of a complete mixed order, in a valid log order.
    fn mixed_history() -> Vec<AnyEvent> {
        vec![
            placed(&[("LAP", 2, None), ("MOUSE", 1, None), ("AV", 1, Some(pool()))]),
            reserved("LAP", 2),
            reserved("MOUSE", 1),
            provisioned(1),
            payment_started(),
            intent_created(4_000),
            captured(4_000, 3),
            reservation_confirmed("LAP", 2),
            reservation_confirmed("MOUSE", 1),
            order_paid(4_000),
            key_allocated("AV", "K-1"),
            order_confirmed(),
            license_issued("AV", pool()),
            license_attached_to_order("AV"),
        ]
    }

    #[test]
    fn duplicate_deliveries_cause_nothing_new() {
        let mut pm = given([]);
        for event in mixed_history() {
            pm.when(event.clone());
            pm.when(event).then_nothing();
        }
        // A late duplicate of an early event does not move anything backwards either.
        for event in mixed_history() {
            pm.when(event).then_nothing();
        }
        assert!(pm.state.order_confirmed && pm.state.digital[&sku("AV")].attached_to_order);
        // The runner persists this state between events, so it must survive JSON.
        let json = serde_json::to_string(&pm.state).unwrap();
        assert_eq!(serde_json::from_str::<CheckoutState>(&json).unwrap(), pm.state);
    }

    /// All actions of a run, as sorted JSON, to compare runs regardless of order.
    fn run(events: &[AnyEvent]) -> Vec<String> {
        let mut pm = given([]);
        let mut all: Vec<String> = events
            .iter()
            .flat_map(|e| pm.when(e.clone()).0)
            .map(|a| serde_json::to_string(&a).unwrap())
            .collect();
        all.sort();
        all
    }

    proptest! {
        #[test]
        fn independent_events_in_any_order_give_the_same_actions(
            reservations in Just(vec![reserved("LAP", 2), reserved("MOUSE", 1), reserved("CABLE", 3)]).prop_shuffle(),
            confirmations in Just(vec![
                reservation_confirmed("LAP", 2),
                reservation_confirmed("MOUSE", 1),
                reservation_confirmed("CABLE", 3),
                order_paid(7_000),
            ]).prop_shuffle(),
            capture_first in any::<bool>(),
            provision_at in 0usize..4,
            duplicate in 0usize..12,
        ) {
            let terms = [("LAP", 2, None), ("MOUSE", 1, None), ("CABLE", 3, None), ("AV", 1, Some(signed()))];
            let placed = placed(&terms);
            let baseline = {
                let mut events = vec![placed.clone()];
                events.extend([reserved("LAP", 2), reserved("MOUSE", 1), reserved("CABLE", 3)]);
                events.extend([intent_created(7_000), provisioned(1), captured(7_000, 3)]);
                events.extend([
                    reservation_confirmed("LAP", 2),
                    reservation_confirmed("MOUSE", 1),
                    reservation_confirmed("CABLE", 3),
                    order_paid(7_000),
                ]);
                events.extend([license_issued("AV", signed()), license_attached_to_order("AV")]);
                events
            };
            // Provisioning may arrive at any point after the order is placed, before or after
            // the capture; a random event is also delivered twice.
            let mut events = vec![placed];
            events.extend(reservations);
            events.push(intent_created(7_000));
            events.push(captured(7_000, 3));
            let at = if capture_first { events.len() } else { provision_at.min(events.len() - 1) + 1 };
            events.insert(at, provisioned(1));
            events.extend(confirmations);
            events.extend([license_issued("AV", signed()), license_attached_to_order("AV")]);
            let again = events[duplicate % events.len()].clone();
            events.push(again);
            prop_assert_eq!(run(&events), run(&baseline));
        }
    }

    #[test]
    fn events_are_routed_to_their_order() {
        assert_eq!(order_of(&placed(&[("LAP", 1, None)])), Some(oid()));
        assert_eq!(order_of(&provisioned(1)), Some(oid()));
        assert_eq!(order_of(&pool_exhausted("AV")), Some(oid()));
        let received = InventoryEvent::StockReceived { sku: sku("LAP"), qty: qty(1), at: t(0) };
        assert_eq!(order_of(&received.into()), None);
        // An instance ignores events of other orders.
        let state = given([placed(&[("LAP", 1, None)])]).state;
        let other = InventoryEvent::StockReserved {
            sku: sku("LAP"),
            reservation_id: rid("LAP"),
            order_id: OrderId::derived(&["another order"]),
            qty: qty(1),
            expires_at: t(10),
            at: t(1),
        };
        assert_eq!(evolve(state.clone(), &other.into()), state);
    }
}
