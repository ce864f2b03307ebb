//! What can be asked of an order.

use chrono::{DateTime, Utc};

use crate::payment::PaymentMethod;
use crate::{CartId, CustomerId, Email, LicenseId, Money, OrderId, PaymentId, Sku};

use super::{CancelledBy, OrderLine, ShippingAddress};

// Placing carries the whole order while the other commands are small; the values are
// short-lived, so boxing the big variant would only make construction and matching noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum OrderCommand {
    Place {
        order_id: OrderId,
        customer_id: CustomerId,
        email: Email,
        lines: Vec<OrderLine>,
        cart_id: Option<CartId>,
        payment_method: PaymentMethod,
        shipping_address: Option<ShippingAddress>,
        now: DateTime<Utc>,
    },
    StartPayment {
        payment_id: PaymentId,
        now: DateTime<Utc>,
    },
    MarkPaid {
        payment_id: PaymentId,
        gateway_reference: String,
        amount: Money,
        now: DateTime<Utc>,
    },
    /// `reason` is the payment failure code (`declined`, `insufficient_funds`, …).
    MarkPaymentFailed {
        reason: String,
        message: String,
        now: DateTime<Utc>,
    },
    MarkInventoryUnavailable {
        skus: Vec<Sku>,
        now: DateTime<Utc>,
    },
    Confirm {
        now: DateTime<Utc>,
    },
    AttachLicense {
        sku: Sku,
        license_id: LicenseId,
        now: DateTime<Utc>,
    },
    Fulfill {
        now: DateTime<Utc>,
    },
    StartProcessing {
        now: DateTime<Utc>,
    },
    Ship {
        tracking_number: String,
        carrier: String,
        estimated_delivery: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    },
    Deliver {
        now: DateTime<Utc>,
    },
    Cancel {
        reason: String,
        by: CancelledBy,
        now: DateTime<Utc>,
    },
    /// Records money that went back to the customer. `refund_reference` is the payment's
    /// refund reference, so recording the same refund twice does nothing.
    Refund {
        amount: Money,
        reason: String,
        refund_reference: String,
        now: DateTime<Utc>,
    },
    /// Moves a guest checkout's order to the account of someone who proved they own the
    /// address it was placed with. The caller checks the proof; the order checks that it is a
    /// guest's order and that the addresses match.
    Claim {
        customer_id: CustomerId,
        email: Email,
        now: DateTime<Utc>,
    },
}
