//! The order lifecycle after payment, driven by admins (and by customers, for cancelling their
//! own unpaid order): start processing, ship, deliver, cancel, refund.
//!
//! Cancelling only records the decision on the order; the checkout process manager reacts to
//! `OrderCancelled` and releases or restocks inventory and refunds a captured payment. A refund
//! asked for by an admin goes through the gateway here, with the admin's idempotency key as
//! the refund reference, then is recorded on the payment and on the order; a retry with the
//! same key refunds once.

use chrono::{DateTime, Utc};
use purser_domain::order::{CancelledBy, Order, OrderCommand, OrderState};
use purser_domain::payment::{Payment, PaymentCommand};
use purser_domain::{Aggregate, Money, OrderId};
use purser_event_store::Position;

use crate::bus::{CommandBus, Executed};
use crate::context::CommandContext;
use crate::failure::Failure;
use crate::gateway::{PaymentGateway, RefundRequest};

/// Loads an order; one the actor may not see reads as not found.
pub async fn load_order(
    bus: &CommandBus,
    order_id: OrderId,
    may_see: impl Fn(&OrderState) -> bool,
) -> Result<OrderState, Failure> {
    let (state, version, _) = bus.load::<Order>(&order_id).await?;
    if version.is_none() || state.status.is_none() || !may_see(&state) {
        return Err(Failure::rejected(
            Some("order_id"),
            "ORDER_NOT_FOUND",
            format!("no order {order_id}"),
        ));
    }
    Ok(state)
}

pub async fn run(
    bus: &CommandBus,
    ctx: &CommandContext,
    order_id: OrderId,
    cmd: OrderCommand,
) -> Result<Executed<Order>, Failure> {
    Ok(bus.execute::<Order>(&order_id, ctx, cmd).await?)
}

pub async fn cancel(
    bus: &CommandBus,
    ctx: &CommandContext,
    order_id: OrderId,
    reason: String,
    by: CancelledBy,
    now: DateTime<Utc>,
) -> Result<Executed<Order>, Failure> {
    run(bus, ctx, order_id, OrderCommand::Cancel { reason, by, now }).await
}

/// Refunds `amount` (all that is left when None) of an order's captured payment.
pub async fn refund(
    bus: &CommandBus,
    gateway: &dyn PaymentGateway,
    ctx: &CommandContext,
    order_id: OrderId,
    amount: Option<Money>,
    reason: String,
    idempotency_key: &str,
) -> Result<Option<Position>, Failure> {
    let order = load_order(bus, order_id, |_| true).await?;
    let Some(payment_id) = order.payment_id else {
        return Err(Failure::rejected(
            None,
            "NOT_PAID",
            "this order has no payment to refund",
        ));
    };
    let (payment, _, _) = bus.load::<Payment>(&payment_id).await?;
    let (Some(captured), Some(gateway_reference)) =
        (payment.amount, payment.gateway_reference.clone())
    else {
        return Err(Failure::rejected(
            None,
            "NOT_PAID",
            "nothing was captured for this order",
        ));
    };
    let remaining = Money::new(captured.minor - payment.refunded_minor, captured.currency);
    let amount = amount.unwrap_or(remaining);
    if amount.currency != captured.currency {
        return Err(Failure::rejected(
            Some("amount"),
            "CURRENCY_MISMATCH",
            format!("the order was paid in {}", captured.currency),
        ));
    }
    if amount.minor <= 0 || amount.minor > remaining.minor {
        return Err(Failure::rejected(
            Some("amount"),
            "REFUND_EXCEEDS_CAPTURED",
            format!("at most {} can still be refunded", remaining.formatted()),
        ));
    }
    let reference = format!("admin-refund-{order_id}-{}", idempotency_key.trim());
    let payment_ctx = ctx
        .clone()
        .idempotent(&reference, &Payment::stream(&payment_id));
    let order_ctx = ctx
        .clone()
        .idempotent(&reference, &Order::stream(&order_id));
    if !payment.refund_references.contains(&reference) {
        let request = RefundRequest {
            payment_id,
            gateway_reference,
            amount,
            idempotency_key: reference.clone(),
        };
        gateway.refund(&request).await.map_err(|e| {
            if e.is_retryable() {
                Failure::Store(purser_event_store::StoreError::Unavailable(format!(
                    "payment gateway: {e}"
                )))
            } else {
                Failure::rejected(None, "REFUND_REFUSED", e.to_string())
            }
        })?;
        let cmd = PaymentCommand::Refund {
            amount,
            reason: reason.clone(),
            refund_reference: reference.clone(),
            now: Utc::now(),
        };
        bus.execute::<Payment>(&payment_id, &payment_ctx, cmd)
            .await?;
    }
    let cmd = OrderCommand::Refund {
        amount,
        reason,
        refund_reference: reference,
        now: Utc::now(),
    };
    Ok(run(bus, &order_ctx, order_id, cmd).await?.position)
}
