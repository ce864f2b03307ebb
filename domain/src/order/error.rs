//! Why an order command was refused.

use crate::{Currency, DomainError, Money, Sku, ValueError};

use super::{Order, OrderStatus};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrderError {
    #[error("no such order")]
    NotFound,
    #[error("the order already exists")]
    AlreadyExists,
    #[error("cannot {action} an order that is {from}")]
    InvalidTransition { from: OrderStatus, action: &'static str },
    #[error("an order needs at least one line")]
    EmptyOrder,
    #[error("an order has at most {} lines", Order::MAX_LINES)]
    TooManyLines,
    #[error("the order is in {expected}, not {got}")]
    CurrencyMismatch { expected: Currency, got: Currency, field: &'static str },
    #[error("physical items need a shipping address")]
    ShippingAddressRequired,
    #[error("SKU {0} appears on more than one line")]
    DuplicateLine(Sku),
    #[error("SKU {0} is not a digital line of this order")]
    NotADigitalLine(Sku),
    #[error("another license is already attached for SKU {0}")]
    LicenseAlreadyAttached(Sku),
    #[error("not every digital line has its license yet")]
    LicensesMissing,
    #[error("the order is being paid by another payment")]
    PaymentMismatch,
    #[error("the order has not been paid")]
    NotPaid,
    #[error("only {refundable} can still be refunded")]
    RefundExceedsCaptured { refundable: Money },
    #[error("only a guest checkout's order can be claimed, by the address it was placed with")]
    NotClaimable,
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl DomainError for OrderError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "ORDER_NOT_FOUND",
            Self::AlreadyExists => "ORDER_ALREADY_EXISTS",
            Self::InvalidTransition { .. } => "INVALID_TRANSITION",
            Self::EmptyOrder => "EMPTY_ORDER",
            Self::TooManyLines => "TOO_MANY_LINES",
            Self::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            Self::ShippingAddressRequired => "SHIPPING_ADDRESS_REQUIRED",
            Self::DuplicateLine(_) => "DUPLICATE_LINE",
            Self::NotADigitalLine(_) => "NOT_A_DIGITAL_LINE",
            Self::LicenseAlreadyAttached(_) => "LICENSE_ALREADY_ATTACHED",
            Self::LicensesMissing => "LICENSES_MISSING",
            Self::PaymentMismatch => "PAYMENT_MISMATCH",
            Self::NotPaid => "NOT_PAID",
            Self::RefundExceedsCaptured { .. } => "REFUND_EXCEEDS_CAPTURED",
            Self::NotClaimable => "ORDER_NOT_CLAIMABLE",
            Self::Invalid(_) => "INVALID_INPUT",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::EmptyOrder | Self::TooManyLines | Self::DuplicateLine(_) => Some("lines"),
            Self::CurrencyMismatch { field, .. } => Some(field),
            Self::ShippingAddressRequired => Some("shipping_address"),
            Self::NotADigitalLine(_) | Self::LicenseAlreadyAttached(_) => Some("sku"),
            Self::PaymentMismatch => Some("payment_id"),
            Self::RefundExceedsCaptured { .. } => Some("amount"),
            Self::Invalid(e) => Some(e.field),
            _ => None,
        }
    }
}
