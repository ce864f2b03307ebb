//! What an order to append looks like, and how far it gets.

use purser_domain::payment::PaymentFailureReason;
use purser_domain::{CartId, LicenseId, OrderId, PaymentId, ReservationId};

use super::Line;

/// How far an order gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Placed; nothing else yet.
    Placed,
    /// Paid (physical orders are confirmed; digital lines get their licenses).
    Paid,
    /// Like `Paid`, after one retried gateway timeout.
    PaidAfterRetry,
    Shipped,
    Delivered,
    /// Paid, then this much refunded.
    Refunded(i64),
    PaymentFailed(PaymentFailureReason),
    InventoryUnavailable,
}

/// An order to append.
#[derive(Debug, Clone)]
pub struct OrderSpec {
    pub order_id: OrderId,
    pub email: &'static str,
    pub lines: Vec<Line>,
    pub cart_id: Option<CartId>,
    /// Minutes after the origin when the order is placed.
    pub at: i64,
    pub outcome: Outcome,
}

impl OrderSpec {
    pub fn new(email: &'static str, lines: Vec<Line>, at: i64, outcome: Outcome) -> OrderSpec {
        OrderSpec {
            order_id: OrderId::new(),
            email,
            lines,
            cart_id: None,
            at,
            outcome,
        }
    }

    pub fn total(&self) -> i64 {
        self.lines.iter().map(|l| l.qty * l.unit_minor).sum()
    }

    pub fn payment_id(&self) -> PaymentId {
        PaymentId::derived(&["scenario-payment", &self.order_id.to_string()])
    }

    pub fn license_id(&self, sku: &str) -> LicenseId {
        LicenseId::derived(&["scenario-license", &self.order_id.to_string(), sku])
    }

    pub fn reservation_id(&self, sku: &str) -> ReservationId {
        ReservationId::derived(&["scenario-reservation", &self.order_id.to_string(), sku])
    }
}
