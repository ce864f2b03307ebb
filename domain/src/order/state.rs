//! What an order has recorded so far, and how each event moves it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::payment::PaymentMethod;
use crate::{CartId, CustomerId, Email, LicenseId, Money, OrderId, PaymentId, Sku};

use super::{Cancellation, OrderEvent, OrderLine, OrderStatus, ShippingAddress, Tracking};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderState {
    /// `None` until the order is placed.
    pub status: Option<OrderStatus>,
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub email: Option<Email>,
    pub lines: Vec<OrderLine>,
    pub total: Option<Money>,
    pub cart_id: Option<CartId>,
    pub payment_id: Option<PaymentId>,
    pub payment_method: Option<PaymentMethod>,
    pub shipping_address: Option<ShippingAddress>,
    /// The license attached to each digital line.
    pub licenses: BTreeMap<Sku, LicenseId>,
    pub gateway_reference: Option<String>,
    pub captured_amount: Option<Money>,
    pub refunded_amount: Option<Money>,
    pub refund_references: BTreeSet<String>,
    pub payment_failure: Option<String>,
    pub inventory_unavailable: bool,
    pub confirmed: bool,
    pub fulfilled: bool,
    pub tracking: Option<Tracking>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancellation: Option<Cancellation>,
    pub placed_at: Option<DateTime<Utc>>,
}

impl OrderState {
    pub fn has_physical(&self) -> bool {
        self.lines.iter().any(|l| !l.is_digital())
    }

    pub fn has_digital(&self) -> bool {
        self.lines.iter().any(OrderLine::is_digital)
    }

    pub fn all_licensed(&self) -> bool {
        self.lines.iter().filter(|l| l.is_digital()).all(|l| self.licenses.contains_key(&l.sku))
    }

    /// What can still be refunded: captured minus refunded so far.
    pub fn refundable(&self) -> Option<Money> {
        let captured = self.captured_amount?;
        let refunded = self.refunded_amount.map_or(0, |m| m.minor);
        Some(Money::new(captured.minor - refunded, captured.currency))
    }
}

/// Folds one event into the state.
pub(super) fn evolve(mut state: OrderState, event: &OrderEvent) -> OrderState {
    use OrderEvent::*;
    use OrderStatus as S;
    match event {
        OrderPlaced {
            order_id,
            customer_id,
            email,
            lines,
            total,
            cart_id,
            payment_method,
            shipping_address,
            at,
        } => {
            state = OrderState {
                status: Some(S::Pending),
                order_id: *order_id,
                customer_id: *customer_id,
                email: Some(email.clone()),
                lines: lines.clone(),
                total: Some(*total),
                cart_id: *cart_id,
                payment_method: Some(payment_method.clone()),
                shipping_address: shipping_address.clone(),
                placed_at: Some(*at),
                ..OrderState::default()
            };
        }
        OrderPaymentStarted { payment_id, .. } => {
            state.status = Some(S::PaymentProcessing);
            state.payment_id = Some(*payment_id);
        }
        OrderPaid { gateway_reference, amount, .. } => {
            state.status = Some(S::Paid);
            state.gateway_reference = Some(gateway_reference.clone());
            state.captured_amount = Some(*amount);
        }
        OrderPaymentFailed { reason, .. } => {
            state.status = Some(S::PaymentFailed);
            state.payment_failure = Some(reason.clone());
        }
        OrderInventoryUnavailable { .. } => {
            state.status = Some(S::InventoryUnavailable);
            state.inventory_unavailable = true;
        }
        OrderConfirmed { .. } => {
            state.status = Some(S::Confirmed);
            state.confirmed = true;
        }
        OrderLicenseAttached { sku, license_id, .. } => {
            state.licenses.insert(sku.clone(), *license_id);
        }
        OrderFulfilled { .. } => {
            state.fulfilled = true;
            if !state.has_physical() {
                state.status = Some(S::Fulfilled);
            }
        }
        OrderProcessingStarted { .. } => state.status = Some(S::Processing),
        OrderShipped { tracking_number, carrier, estimated_delivery, at, .. } => {
            state.status = Some(S::Shipped);
            state.tracking = Some(Tracking {
                tracking_number: tracking_number.clone(),
                carrier: carrier.clone(),
                estimated_delivery: *estimated_delivery,
                shipped_at: *at,
            });
        }
        OrderDelivered { at, .. } => {
            state.status = Some(S::Delivered);
            state.delivered_at = Some(*at);
        }
        OrderCancelled { reason, by, was_paid, at, .. } => {
            state.status = Some(S::Cancelled);
            state.cancellation = Some(Cancellation {
                reason: reason.clone(),
                by: *by,
                was_paid: *was_paid,
                at: *at,
            });
        }
        OrderRefunded { amount, refund_reference, .. } => {
            state.status = Some(S::Refunded);
            let before = state.refunded_amount.map_or(0, |m| m.minor);
            state.refunded_amount = Some(Money::new(before + amount.minor, amount.currency));
            state.refund_references.insert(refund_reference.clone());
        }
        OrderClaimed { customer_id, .. } => state.customer_id = *customer_id,
    }
    state
}
