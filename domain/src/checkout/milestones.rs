//! What should have happened, given the facts: reacting emits the actions of the milestones an
//! event newly reaches.

use std::collections::BTreeSet;

use crate::Sku;

use super::state::{CheckoutState, ReservationProgress};

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
    let mut m = BTreeSet::new();
    if state.order.is_none() {
        return m;
    }
    let aborted = state.aborted();
    m.insert(Milestone::Placed);
    stock_and_payment(state, aborted, &mut m);
    licenses(state, aborted, &mut m);
    compensation(state, aborted, &mut m);
    notifications(state, &mut m);
    m
}

/// Reserving, paying for and confirming the order, and the stock moves that follow.
fn stock_and_payment(state: &CheckoutState, aborted: bool, m: &mut BTreeSet<Milestone>) {
    use Milestone as M;
    use ReservationProgress as R;
    let captured = state.captured.is_some();
    let cancelled = state.order_cancelled.is_some();
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
}

/// Issuing, attaching and revoking the digital lines' licenses, and fulfilling the order.
fn licenses(state: &CheckoutState, aborted: bool, m: &mut BTreeSet<Milestone>) {
    use Milestone as M;
    let captured = state.captured.is_some();
    let cancelled = state.order_cancelled.is_some();
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
}

/// Winding down an order that can no longer complete: marking why, refunding, cancelling, and
/// recording refunds on the order.
fn compensation(state: &CheckoutState, aborted: bool, m: &mut BTreeSet<Milestone>) {
    use Milestone as M;
    let cancelled = state.order_cancelled.is_some();
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
}

/// The emails the customer gets about how the order ended up.
fn notifications(state: &CheckoutState, m: &mut BTreeSet<Milestone>) {
    use Milestone as M;
    let cancelled = state.order_cancelled.is_some();
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
}
