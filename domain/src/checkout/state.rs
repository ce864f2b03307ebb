//! The facts one checkout has seen, and what follows from them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::inventory::ReleaseReason;
use crate::order::CancelledBy;
use crate::payment::{PaymentFailureReason, PaymentMethod};
use crate::product::{DigitalTerms, LicenseSource};
use crate::{
    CustomerId, Email, LicenseId, Money, OrderId, PaymentId, Quantity, ReservationId, Sku,
};

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

    pub(super) fn rejected_skus(&self) -> Vec<Sku> {
        self.physical
            .iter()
            .filter(|(_, l)| l.progress == ReservationProgress::Rejected)
            .map(|(sku, _)| sku.clone())
            .collect()
    }

    pub(super) fn exhausted_skus(&self) -> Vec<Sku> {
        self.digital.iter().filter(|(_, l)| l.exhausted).map(|(sku, _)| sku.clone()).collect()
    }

    pub(super) fn any_expired(&self) -> bool {
        self.physical
            .values()
            .any(|l| l.progress == ReservationProgress::Released(ReleaseReason::Expired))
    }

    pub(super) fn all_reserved(&self) -> bool {
        self.physical.values().all(|l| {
            matches!(l.progress, ReservationProgress::Reserved | ReservationProgress::Confirmed)
        })
    }

    pub(super) fn all_reservations_answered(&self) -> bool {
        self.physical.values().all(|l| l.progress != ReservationProgress::Requested)
    }

    pub(super) fn all_pool_lines_answered(&self) -> bool {
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
    pub(super) fn abort_reason(&self) -> String {
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

    pub(super) fn release_reason(&self) -> ReleaseReason {
        if self.payment_failed.is_some() {
            ReleaseReason::PaymentFailed
        } else if !self.rejected_skus().is_empty() {
            ReleaseReason::OrderUnfulfillable
        } else {
            ReleaseReason::Cancelled
        }
    }

    /// Captured minus every refund recorded on the payment.
    pub(super) fn refundable(&self) -> Option<Money> {
        let captured = self.captured.as_ref()?.amount;
        let refunded: i64 = self.payment_refunds.values().map(|r| r.amount.minor).sum();
        Some(Money::new(captured.minor - refunded, captured.currency))
    }

    /// Licenses count from when the purchase completed: the later of payment capture and
    /// account provisioning, whichever order they arrived in.
    pub(super) fn license_expiry(&self, terms: &DigitalTerms) -> Option<DateTime<Utc>> {
        let start = match (&self.captured, self.account_provisioned_at) {
            (Some(c), Some(p)) => c.at.max(p),
            (Some(c), None) => c.at,
            (None, p) => p?,
        };
        terms.validity_days.map(|days| start + Duration::days(days.into()))
    }
}
