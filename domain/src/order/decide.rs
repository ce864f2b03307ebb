//! The order's rules: which command is allowed in which status, and what it records.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::{CustomerId, LicenseId, Money, PaymentId, Sku, ValueError, bounded_text};

use super::OrderEvent::*;
use super::OrderStatus as S;
use super::{
    CancelledBy, Order, OrderCommand, OrderError, OrderEvent, OrderLine, OrderState, OrderStatus,
};

type Decision = Result<Vec<OrderEvent>, OrderError>;

pub(super) fn decide(state: &OrderState, command: OrderCommand) -> Decision {
    match state.status {
        None => decide_new(command),
        Some(status) => decide_existing(state, status, command),
    }
}

/// Before the order exists only placing it makes sense.
fn decide_new(command: OrderCommand) -> Decision {
    let OrderCommand::Place {
        order_id,
        customer_id,
        email,
        lines,
        cart_id,
        payment_method,
        shipping_address,
        now,
    } = command
    else {
        return Err(OrderError::NotFound);
    };
    let (lines, total) = check_lines(lines)?;
    if lines.iter().any(|l| !l.is_digital()) && shipping_address.is_none() {
        return Err(OrderError::ShippingAddressRequired);
    }
    Ok(vec![OrderPlaced {
        order_id,
        customer_id,
        email,
        lines,
        total,
        cart_id,
        payment_method,
        shipping_address,
        at: now,
    }])
}

fn decide_existing(state: &OrderState, status: OrderStatus, command: OrderCommand) -> Decision {
    use OrderCommand as C;
    let order_id = state.order_id;
    match command {
        C::Place { .. } => Err(OrderError::AlreadyExists),
        C::StartPayment { payment_id, now } => {
            if state.payment_id == Some(payment_id) {
                return Ok(vec![]);
            }
            require(status, &[S::Pending], "start payment for")?;
            Ok(vec![OrderPaymentStarted { order_id, payment_id, at: now }])
        }
        C::MarkPaid { payment_id, gateway_reference, amount, now } => {
            mark_paid(state, status, payment_id, gateway_reference, amount, now)
        }
        C::MarkPaymentFailed { reason, message, now } => {
            if state.payment_failure.is_some() {
                return Ok(vec![]);
            }
            require(status, &[S::PaymentProcessing], "mark payment failed for")?;
            let message: String = message.chars().take(500).collect();
            Ok(vec![OrderPaymentFailed { order_id, reason, message, at: now }])
        }
        C::MarkInventoryUnavailable { skus, now } => {
            if state.inventory_unavailable {
                return Ok(vec![]);
            }
            require(status, &[S::Pending], "mark inventory unavailable for")?;
            Ok(vec![OrderInventoryUnavailable { order_id, skus, at: now }])
        }
        C::Confirm { now } => confirm(state, status, now),
        C::AttachLicense { sku, license_id, now } => {
            attach_license(state, status, sku, license_id, now)
        }
        C::Fulfill { now } => fulfil(state, status, now),
        C::StartProcessing { now } => {
            require(status, &[S::Confirmed], "start processing")?;
            Ok(vec![OrderProcessingStarted { order_id, at: now }])
        }
        C::Ship { tracking_number, carrier, estimated_delivery, now } => {
            require(status, &[S::Processing], "ship")?;
            let tracking_number = bounded_text("tracking_number", &tracking_number, 64, true)?;
            let carrier = bounded_text("carrier", &carrier, 64, true)?;
            Ok(vec![OrderShipped {
                order_id,
                tracking_number,
                carrier,
                estimated_delivery,
                at: now,
            }])
        }
        C::Deliver { now } => {
            require(status, &[S::Shipped], "deliver")?;
            Ok(vec![OrderDelivered { order_id, at: now }])
        }
        C::Cancel { reason, by, now } => cancel(state, status, reason, by, now),
        C::Refund { amount, reason, refund_reference, now } => {
            refund(state, status, amount, reason, refund_reference, now)
        }
        C::Claim { customer_id, email, now } => {
            if state.customer_id == customer_id {
                return Ok(vec![]);
            }
            let guest = CustomerId::guest_of(order_id);
            if state.customer_id != guest || state.email.as_ref() != Some(&email) {
                return Err(OrderError::NotClaimable);
            }
            Ok(vec![OrderClaimed { order_id, customer_id, guest_customer_id: guest, at: now }])
        }
    }
}

/// Checks the lines of a new order and totals them.
fn check_lines(lines: Vec<OrderLine>) -> Result<(Vec<OrderLine>, Money), OrderError> {
    let first = lines.first().ok_or(OrderError::EmptyOrder)?;
    if lines.len() > Order::MAX_LINES {
        return Err(OrderError::TooManyLines);
    }
    let currency = first.unit_price.currency;
    let mut seen = BTreeSet::new();
    let mut total = Money::zero(currency);
    let mut checked = Vec::with_capacity(lines.len());
    for line in lines {
        if line.unit_price.currency != currency {
            return Err(OrderError::CurrencyMismatch {
                expected: currency,
                got: line.unit_price.currency,
                field: "lines",
            });
        }
        if !seen.insert(line.sku.clone()) {
            return Err(OrderError::DuplicateLine(line.sku));
        }
        // Re-validating recomputes each line total, so a caller can never place an order
        // whose total disagrees with its lines.
        let line = OrderLine::new(line.sku, &line.name, line.qty, line.unit_price, line.digital)?;
        total = total
            .checked_add(line.line_total)
            .map_err(|_| ValueError::new("lines", "order total out of range"))?;
        checked.push(line);
    }
    Ok((checked, total))
}

/// Fails with `INVALID_TRANSITION` unless the order is in one of `allowed`.
fn require(
    from: OrderStatus,
    allowed: &[OrderStatus],
    action: &'static str,
) -> Result<(), OrderError> {
    if allowed.contains(&from) {
        Ok(())
    } else {
        Err(OrderError::InvalidTransition { from, action })
    }
}

fn mark_paid(
    state: &OrderState,
    status: OrderStatus,
    payment_id: PaymentId,
    gateway_reference: String,
    amount: Money,
    now: DateTime<Utc>,
) -> Decision {
    if state.captured_amount.is_some() && state.payment_id == Some(payment_id) {
        return Ok(vec![]);
    }
    require(status, &[S::PaymentProcessing], "mark as paid")?;
    if state.payment_id != Some(payment_id) {
        return Err(OrderError::PaymentMismatch);
    }
    let currency = state.total.map_or(amount.currency, |t| t.currency);
    if amount.currency != currency {
        let (expected, got) = (currency, amount.currency);
        return Err(OrderError::CurrencyMismatch { expected, got, field: "amount" });
    }
    let gateway_reference = bounded_text("gateway_reference", &gateway_reference, 255, true)?;
    let order_id = state.order_id;
    Ok(vec![OrderPaid { order_id, payment_id, gateway_reference, amount, at: now }])
}

fn confirm(state: &OrderState, status: OrderStatus, now: DateTime<Utc>) -> Decision {
    if state.confirmed {
        return Ok(vec![]);
    }
    require(status, &[S::Paid], "confirm")?;
    if !state.has_physical() {
        let action = "confirm (digital-only orders are fulfilled)";
        return Err(OrderError::InvalidTransition { from: status, action });
    }
    Ok(vec![OrderConfirmed { order_id: state.order_id, at: now }])
}

fn attach_license(
    state: &OrderState,
    status: OrderStatus,
    sku: Sku,
    license_id: LicenseId,
    now: DateTime<Utc>,
) -> Decision {
    match state.licenses.get(&sku) {
        Some(attached) if *attached == license_id => return Ok(vec![]),
        Some(_) => return Err(OrderError::LicenseAlreadyAttached(sku)),
        None => {}
    }
    if !state.lines.iter().any(|l| l.sku == sku && l.is_digital()) {
        return Err(OrderError::NotADigitalLine(sku));
    }
    let allowed = [S::Paid, S::Confirmed, S::Processing, S::Shipped, S::Delivered];
    require(status, &allowed, "attach a license to")?;
    Ok(vec![OrderLicenseAttached { order_id: state.order_id, sku, license_id, at: now }])
}

fn fulfil(state: &OrderState, status: OrderStatus, now: DateTime<Utc>) -> Decision {
    if state.fulfilled {
        return Ok(vec![]);
    }
    if !state.has_digital() {
        let action = "fulfil (only digital lines are fulfilled)";
        return Err(OrderError::InvalidTransition { from: status, action });
    }
    // A mixed order may record its digital half as soon as it is paid; the physical half
    // carries on along its own path.
    let allowed: &[S] = if state.has_physical() {
        &[S::Paid, S::Confirmed, S::Processing, S::Shipped, S::Delivered]
    } else {
        &[S::Paid]
    };
    require(status, allowed, "fulfil")?;
    if !state.all_licensed() {
        return Err(OrderError::LicensesMissing);
    }
    let licenses = state.licenses.clone();
    Ok(vec![OrderFulfilled { order_id: state.order_id, licenses, at: now }])
}

fn cancel(
    state: &OrderState,
    status: OrderStatus,
    reason: String,
    by: CancelledBy,
    now: DateTime<Utc>,
) -> Decision {
    if status == S::Cancelled {
        return Ok(vec![]);
    }
    // Customers may cancel before paying. Admins and compensating process managers may also
    // cancel a paid order until it ships; only the system may cancel while a charge is in
    // flight (a reservation expired), because it also refunds a late capture.
    let allowed: &[S] = match by {
        CancelledBy::Customer => &[S::Pending, S::PaymentFailed, S::InventoryUnavailable],
        CancelledBy::Admin => &[
            S::Pending,
            S::PaymentFailed,
            S::InventoryUnavailable,
            S::Paid,
            S::Confirmed,
            S::Processing,
        ],
        CancelledBy::System => &[
            S::Pending,
            S::PaymentFailed,
            S::InventoryUnavailable,
            S::PaymentProcessing,
            S::Paid,
            S::Confirmed,
            S::Processing,
        ],
    };
    require(status, allowed, "cancel")?;
    let reason = bounded_text("reason", &reason, 500, false)?;
    let was_paid = state.captured_amount.is_some();
    Ok(vec![OrderCancelled { order_id: state.order_id, reason, by, was_paid, at: now }])
}

fn refund(
    state: &OrderState,
    status: OrderStatus,
    amount: Money,
    reason: String,
    refund_reference: String,
    now: DateTime<Utc>,
) -> Decision {
    if state.refund_references.contains(&refund_reference) {
        return Ok(vec![]);
    }
    let refundable = state.refundable().ok_or(OrderError::NotPaid)?;
    let allowed = [
        S::Paid,
        S::Confirmed,
        S::Processing,
        S::Shipped,
        S::Delivered,
        S::Fulfilled,
        S::Cancelled,
        S::Refunded,
    ];
    require(status, &allowed, "refund")?;
    if amount.currency != refundable.currency {
        let (expected, got) = (refundable.currency, amount.currency);
        return Err(OrderError::CurrencyMismatch { expected, got, field: "amount" });
    }
    if amount.minor <= 0 {
        return Err(ValueError::new("amount", "must be positive").into());
    }
    if amount.minor > refundable.minor {
        return Err(OrderError::RefundExceedsCaptured { refundable });
    }
    let refund_reference = bounded_text("refund_reference", &refund_reference, 255, true)?;
    let reason = bounded_text("reason", &reason, 500, false)?;
    Ok(vec![OrderRefunded { order_id: state.order_id, amount, reason, refund_reference, at: now }])
}
