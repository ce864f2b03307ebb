//! Where an order stands.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    PaymentProcessing,
    Paid,
    Confirmed,
    Processing,
    Shipped,
    Delivered,
    Fulfilled,
    PaymentFailed,
    InventoryUnavailable,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 12] = [
        OrderStatus::Pending,
        OrderStatus::PaymentProcessing,
        OrderStatus::Paid,
        OrderStatus::Confirmed,
        OrderStatus::Processing,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Fulfilled,
        OrderStatus::PaymentFailed,
        OrderStatus::InventoryUnavailable,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ];

    /// The SCREAMING_SNAKE_CASE name, as serialised.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::PaymentProcessing => "PAYMENT_PROCESSING",
            Self::Paid => "PAID",
            Self::Confirmed => "CONFIRMED",
            Self::Processing => "PROCESSING",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
            Self::Fulfilled => "FULFILLED",
            Self::PaymentFailed => "PAYMENT_FAILED",
            Self::InventoryUnavailable => "INVENTORY_UNAVAILABLE",
            Self::Cancelled => "CANCELLED",
            Self::Refunded => "REFUNDED",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
