//! What happened to an order. Every event carries the order id and its time.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::payment::PaymentMethod;
use crate::{CartId, CustomerId, Email, Event, LicenseId, Money, OrderId, PaymentId, Sku};

use super::{CancelledBy, OrderLine, ShippingAddress};

// The same trade-off as for `OrderCommand`: `OrderPlaced` is large by nature.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    OrderPlaced {
        order_id: OrderId,
        customer_id: CustomerId,
        email: Email,
        lines: Vec<OrderLine>,
        total: Money,
        cart_id: Option<CartId>,
        payment_method: PaymentMethod,
        shipping_address: Option<ShippingAddress>,
        at: DateTime<Utc>,
    },
    OrderPaymentStarted {
        order_id: OrderId,
        payment_id: PaymentId,
        at: DateTime<Utc>,
    },
    OrderPaid {
        order_id: OrderId,
        payment_id: PaymentId,
        gateway_reference: String,
        amount: Money,
        at: DateTime<Utc>,
    },
    OrderPaymentFailed {
        order_id: OrderId,
        reason: String,
        message: String,
        at: DateTime<Utc>,
    },
    OrderInventoryUnavailable {
        order_id: OrderId,
        skus: Vec<Sku>,
        at: DateTime<Utc>,
    },
    OrderConfirmed {
        order_id: OrderId,
        at: DateTime<Utc>,
    },
    OrderLicenseAttached {
        order_id: OrderId,
        sku: Sku,
        license_id: LicenseId,
        at: DateTime<Utc>,
    },
    OrderFulfilled {
        order_id: OrderId,
        licenses: BTreeMap<Sku, LicenseId>,
        at: DateTime<Utc>,
    },
    OrderProcessingStarted {
        order_id: OrderId,
        at: DateTime<Utc>,
    },
    OrderShipped {
        order_id: OrderId,
        tracking_number: String,
        carrier: String,
        estimated_delivery: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    OrderDelivered {
        order_id: OrderId,
        at: DateTime<Utc>,
    },
    OrderCancelled {
        order_id: OrderId,
        reason: String,
        by: CancelledBy,
        was_paid: bool,
        at: DateTime<Utc>,
    },
    OrderRefunded {
        order_id: OrderId,
        amount: Money,
        reason: String,
        refund_reference: String,
        at: DateTime<Utc>,
    },
    /// A verified account took over a guest checkout's order.
    OrderClaimed {
        order_id: OrderId,
        customer_id: CustomerId,
        guest_customer_id: CustomerId,
        at: DateTime<Utc>,
    },
}

impl OrderEvent {
    /// The order the event is about (every order event carries it).
    pub fn order_id(&self) -> OrderId {
        match self {
            OrderEvent::OrderPlaced { order_id, .. }
            | OrderEvent::OrderPaymentStarted { order_id, .. }
            | OrderEvent::OrderPaid { order_id, .. }
            | OrderEvent::OrderPaymentFailed { order_id, .. }
            | OrderEvent::OrderInventoryUnavailable { order_id, .. }
            | OrderEvent::OrderConfirmed { order_id, .. }
            | OrderEvent::OrderLicenseAttached { order_id, .. }
            | OrderEvent::OrderFulfilled { order_id, .. }
            | OrderEvent::OrderProcessingStarted { order_id, .. }
            | OrderEvent::OrderShipped { order_id, .. }
            | OrderEvent::OrderDelivered { order_id, .. }
            | OrderEvent::OrderCancelled { order_id, .. }
            | OrderEvent::OrderRefunded { order_id, .. }
            | OrderEvent::OrderClaimed { order_id, .. } => *order_id,
        }
    }

    /// When it happened (every order event carries its time).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            OrderEvent::OrderPlaced { at, .. }
            | OrderEvent::OrderPaymentStarted { at, .. }
            | OrderEvent::OrderPaid { at, .. }
            | OrderEvent::OrderPaymentFailed { at, .. }
            | OrderEvent::OrderInventoryUnavailable { at, .. }
            | OrderEvent::OrderConfirmed { at, .. }
            | OrderEvent::OrderLicenseAttached { at, .. }
            | OrderEvent::OrderFulfilled { at, .. }
            | OrderEvent::OrderProcessingStarted { at, .. }
            | OrderEvent::OrderShipped { at, .. }
            | OrderEvent::OrderDelivered { at, .. }
            | OrderEvent::OrderCancelled { at, .. }
            | OrderEvent::OrderRefunded { at, .. }
            | OrderEvent::OrderClaimed { at, .. } => *at,
        }
    }
}

impl Event for OrderEvent {
    event_names!(
        OrderPlaced,
        OrderPaymentStarted,
        OrderPaid,
        OrderPaymentFailed,
        OrderInventoryUnavailable,
        OrderConfirmed,
        OrderLicenseAttached,
        OrderFulfilled,
        OrderProcessingStarted,
        OrderShipped,
        OrderDelivered,
        OrderCancelled,
        OrderRefunded,
        OrderClaimed,
    );
}
