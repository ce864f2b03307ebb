//! The commands a checkout sends: one enum, every id in it derived from the order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::inventory::ReleaseReason;
use crate::notification::NotificationKind;
use crate::payment::PaymentMethod;
use crate::{
    CustomerId, Email, LicenseId, Money, NotificationId, OrderId, PaymentId, Quantity,
    ReservationId, Sku,
};

use super::state::PlacedOrder;

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

/// An email to the order's customer. Its id is derived from the order, the kind and
/// `discriminator` (a SKU or refund reference where one order gets several of a kind), so a
/// repeat queues nothing new.
pub(super) fn notification(
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
