//! Routing events to their checkout and folding them into its facts.

use crate::customer::CustomerEvent;
use crate::inventory::InventoryEvent;
use crate::license::{LicenseEvent, LicensePoolEvent};
use crate::order::OrderEvent;
use crate::payment::PaymentEvent;
use crate::{AnyEvent, OrderId, PaymentId, ReservationId, Sku};

use super::state::{
    CancelInfo, Captured, CheckoutState, DigitalLine, PaymentFailure, PhysicalLine, PlacedOrder,
    RecordedRefund, ReservationProgress,
};

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
    if let AnyEvent::Order(placed @ OrderEvent::OrderPlaced { .. }) = event {
        record_placed(&mut state, placed);
        return state;
    }
    let Some(order_id) = state.order.as_ref().map(|o| o.order_id) else {
        return state;
    };
    if order_of(event) != Some(order_id) {
        return state;
    }
    match event {
        AnyEvent::Inventory(e) => record_reservation(&mut state, e),
        AnyEvent::Payment(e) => record_payment(&mut state, CheckoutState::payment_id(order_id), e),
        AnyEvent::Customer(CustomerEvent::AccountProvisioned { at, .. }) => {
            state.account_provisioned_at.get_or_insert(*at);
        }
        AnyEvent::LicensePool(e) => record_pool_answer(&mut state, e),
        AnyEvent::License(e) => record_license(&mut state, e),
        AnyEvent::Order(e) => record_order(&mut state, e),
        AnyEvent::Customer(_)
        | AnyEvent::Product(_)
        | AnyEvent::Cart(_)
        | AnyEvent::Notification(_) => {}
    }
    state
}

/// The order and one entry per line, the first time `OrderPlaced` is seen.
fn record_placed(state: &mut CheckoutState, event: &OrderEvent) {
    let OrderEvent::OrderPlaced {
        order_id,
        customer_id,
        email,
        lines,
        total,
        payment_method,
        at,
        ..
    } = event
    else {
        return;
    };
    if state.order.is_some() {
        return;
    }
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
                let progress = ReservationProgress::Requested;
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

/// Moves a reservation forward, but only from one of the stages it may come from.
fn advance(
    state: &mut CheckoutState,
    sku: &Sku,
    reservation_id: &ReservationId,
    from: &[ReservationProgress],
    to: ReservationProgress,
) {
    if let Some(line) = state.physical.get_mut(sku)
        && line.reservation_id == *reservation_id
        && from.contains(&line.progress)
    {
        line.progress = to;
    }
}

fn record_reservation(state: &mut CheckoutState, event: &InventoryEvent) {
    use ReservationProgress as R;
    match event {
        InventoryEvent::StockReserved { sku, reservation_id, .. } => {
            advance(state, sku, reservation_id, &[R::Requested], R::Reserved)
        }
        InventoryEvent::ReservationRejected { sku, reservation_id, .. } => {
            advance(state, sku, reservation_id, &[R::Requested], R::Rejected)
        }
        InventoryEvent::ReservationConfirmed { sku, reservation_id, .. } => {
            advance(state, sku, reservation_id, &[R::Requested, R::Reserved], R::Confirmed)
        }
        InventoryEvent::ReservationReleased { sku, reservation_id, reason, .. } => {
            let to = R::Released(*reason);
            advance(state, sku, reservation_id, &[R::Requested, R::Reserved], to)
        }
        InventoryEvent::StockReceived { .. } | InventoryEvent::StockAdjusted { .. } => {}
    }
}

/// Records what happened to the checkout's own payment (the one with its derived id).
fn record_payment(state: &mut CheckoutState, payment_id: PaymentId, event: &PaymentEvent) {
    match event {
        PaymentEvent::PaymentIntentCreated { payment_id: p, .. } if *p == payment_id => {
            state.intent_created = true;
        }
        PaymentEvent::PaymentCaptured { payment_id: p, amount, gateway_reference, at, .. }
            if *p == payment_id && state.captured.is_none() =>
        {
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
            payment_id: p, amount, reason, refund_reference, ..
        } if *p == payment_id => {
            let refund = RecordedRefund { amount: *amount, reason: reason.clone() };
            state.payment_refunds.entry(refund_reference.clone()).or_insert(refund);
        }
        _ => {}
    }
}

fn record_pool_answer(state: &mut CheckoutState, event: &LicensePoolEvent) {
    match event {
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
    }
}

fn record_license(state: &mut CheckoutState, event: &LicenseEvent) {
    let (license_id, issued) = match event {
        LicenseEvent::LicenseIssued { license_id, .. } => (license_id, true),
        LicenseEvent::LicenseRevoked { license_id, .. } => (license_id, false),
        LicenseEvent::LicenseAttached { .. } => return,
        // A license that cannot be issued aborts the order like an empty pool does.
        LicenseEvent::LicenseIssueFailed { sku, license_id, reason, .. } => {
            if let Some(line) = state.digital.get_mut(sku)
                && line.license_id == *license_id
                && !line.issued
            {
                line.exhausted = true;
                line.unavailable_reason = Some(reason.clone());
            }
            return;
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

fn record_order(state: &mut CheckoutState, event: &OrderEvent) {
    match event {
        OrderEvent::OrderPaid { .. } => state.order_paid = true,
        OrderEvent::OrderPaymentFailed { .. } => state.order_payment_failed = true,
        OrderEvent::OrderInventoryUnavailable { .. } => state.order_inventory_unavailable = true,
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
        | OrderEvent::OrderDelivered { .. }
        // Who owns the order afterwards changes nothing the checkout still has to do.
        | OrderEvent::OrderClaimed { .. } => {}
    }
}
