//! Order: what a customer bought and how far it got, stream `order-<uuid>`.
//!
//! ```text
//! PENDING → PAYMENT_PROCESSING → PAID → CONFIRMED → PROCESSING → SHIPPED → DELIVERED   (physical, mixed)
//!                                PAID → FULFILLED                                      (digital only)
//! PENDING → INVENTORY_UNAVAILABLE → CANCELLED       PAYMENT_PROCESSING → PAYMENT_FAILED → CANCELLED
//! PAID … DELIVERED, FULFILLED, CANCELLED (when paid) → REFUNDED
//! ```
//! A mixed order records `OrderFulfilled` once its licenses are attached but keeps following
//! the physical path. Every other transition is an `INVALID_TRANSITION` error. Every event
//! carries the order id, so the checkout process manager can route it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::payment::PaymentMethod;
use crate::product::DigitalTerms;
use crate::{
    Aggregate, CartId, Currency, CustomerId, DomainError, Email, Event, LicenseId, Money, OrderId,
    PaymentId, Quantity, Sku, ValueError, bounded_text,
};

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

/// One line of an order. Digital lines carry the license terms copied from the product when
/// the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub name: String,
    pub qty: Quantity,
    pub unit_price: Money,
    pub line_total: Money,
    pub digital: Option<DigitalTerms>,
}

impl OrderLine {
    /// A validated line whose total is `unit_price × qty`.
    pub fn new(
        sku: Sku,
        name: &str,
        qty: Quantity,
        unit_price: Money,
        digital: Option<DigitalTerms>,
    ) -> Result<OrderLine, ValueError> {
        if unit_price.minor < 0 {
            return Err(ValueError::new("unit_price", "must not be negative"));
        }
        if let Some(terms) = &digital {
            terms.validate()?;
        }
        let line_total = unit_price
            .checked_mul(qty.get())
            .map_err(|_| ValueError::new("quantity", "line total out of range"))?;
        let name = bounded_text("name", name, 200, true)?;
        Ok(OrderLine { sku, name, qty, unit_price, line_total, digital })
    }

    pub fn is_digital(&self) -> bool {
        self.digital.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper-case.
    pub country: String,
}

impl ShippingAddress {
    pub fn parse(
        name: &str,
        line1: &str,
        line2: Option<&str>,
        city: &str,
        postal_code: &str,
        country: &str,
    ) -> Result<ShippingAddress, ValueError> {
        let country = country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(ValueError::new("country", "must be a two-letter country code"));
        }
        let line2 = match line2.map(|l| bounded_text("line2", l, 200, false)).transpose()? {
            Some(l) if l.is_empty() => None,
            other => other,
        };
        Ok(ShippingAddress {
            name: bounded_text("name", name, 200, true)?,
            line1: bounded_text("line1", line1, 200, true)?,
            line2,
            city: bounded_text("city", city, 100, true)?,
            postal_code: bounded_text("postal_code", postal_code, 20, true)?,
            country,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelledBy {
    Customer,
    Admin,
    /// A process manager compensating a failure.
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    pub tracking_number: String,
    pub carrier: String,
    pub estimated_delivery: Option<DateTime<Utc>>,
    pub shipped_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    pub reason: String,
    pub by: CancelledBy,
    pub was_paid: bool,
    pub at: DateTime<Utc>,
}

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
}

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
            | OrderEvent::OrderRefunded { order_id, .. } => *order_id,
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
            | OrderEvent::OrderRefunded { at, .. } => *at,
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
    );
}

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

pub struct Order;

impl Order {
    pub const MAX_LINES: usize = 100;

    /// Checks the lines of a new order and totals them.
    fn check_lines(lines: Vec<OrderLine>) -> Result<(Vec<OrderLine>, Money), OrderError> {
        let first = lines.first().ok_or(OrderError::EmptyOrder)?;
        if lines.len() > Self::MAX_LINES {
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
            let line =
                OrderLine::new(line.sku, &line.name, line.qty, line.unit_price, line.digital)?;
            total = total
                .checked_add(line.line_total)
                .map_err(|_| ValueError::new("lines", "order total out of range"))?;
            checked.push(line);
        }
        Ok((checked, total))
    }
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

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    type State = OrderState;
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn decide(state: &OrderState, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderEvent::*;
        use OrderStatus as S;
        let order_id = state.order_id;
        let Some(status) = state.status else {
            return match command {
                OrderCommand::Place {
                    order_id,
                    customer_id,
                    email,
                    lines,
                    cart_id,
                    payment_method,
                    shipping_address,
                    now,
                } => {
                    let (lines, total) = Self::check_lines(lines)?;
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
                _ => Err(OrderError::NotFound),
            };
        };
        match command {
            OrderCommand::Place { .. } => Err(OrderError::AlreadyExists),
            OrderCommand::StartPayment { payment_id, now } => {
                if state.payment_id == Some(payment_id) {
                    return Ok(vec![]);
                }
                require(status, &[S::Pending], "start payment for")?;
                Ok(vec![OrderPaymentStarted { order_id, payment_id, at: now }])
            }
            OrderCommand::MarkPaid { payment_id, gateway_reference, amount, now } => {
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
                let gateway_reference =
                    bounded_text("gateway_reference", &gateway_reference, 255, true)?;
                Ok(vec![OrderPaid { order_id, payment_id, gateway_reference, amount, at: now }])
            }
            OrderCommand::MarkPaymentFailed { reason, message, now } => {
                if state.payment_failure.is_some() {
                    return Ok(vec![]);
                }
                require(status, &[S::PaymentProcessing], "mark payment failed for")?;
                let message: String = message.chars().take(500).collect();
                Ok(vec![OrderPaymentFailed { order_id, reason, message, at: now }])
            }
            OrderCommand::MarkInventoryUnavailable { skus, now } => {
                if state.inventory_unavailable {
                    return Ok(vec![]);
                }
                require(status, &[S::Pending], "mark inventory unavailable for")?;
                Ok(vec![OrderInventoryUnavailable { order_id, skus, at: now }])
            }
            OrderCommand::Confirm { now } => {
                if state.confirmed {
                    return Ok(vec![]);
                }
                require(status, &[S::Paid], "confirm")?;
                if !state.has_physical() {
                    let action = "confirm (digital-only orders are fulfilled)";
                    return Err(OrderError::InvalidTransition { from: status, action });
                }
                Ok(vec![OrderConfirmed { order_id, at: now }])
            }
            OrderCommand::AttachLicense { sku, license_id, now } => {
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
                Ok(vec![OrderLicenseAttached { order_id, sku, license_id, at: now }])
            }
            OrderCommand::Fulfill { now } => {
                if state.fulfilled {
                    return Ok(vec![]);
                }
                if !state.has_digital() {
                    let action = "fulfil (only digital lines are fulfilled)";
                    return Err(OrderError::InvalidTransition { from: status, action });
                }
                // A mixed order may record its digital half as soon as it is paid; the physical
                // half carries on along its own path.
                let allowed: &[S] = if state.has_physical() {
                    &[S::Paid, S::Confirmed, S::Processing, S::Shipped, S::Delivered]
                } else {
                    &[S::Paid]
                };
                require(status, allowed, "fulfil")?;
                if !state.all_licensed() {
                    return Err(OrderError::LicensesMissing);
                }
                Ok(vec![OrderFulfilled { order_id, licenses: state.licenses.clone(), at: now }])
            }
            OrderCommand::StartProcessing { now } => {
                require(status, &[S::Confirmed], "start processing")?;
                Ok(vec![OrderProcessingStarted { order_id, at: now }])
            }
            OrderCommand::Ship { tracking_number, carrier, estimated_delivery, now } => {
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
            OrderCommand::Deliver { now } => {
                require(status, &[S::Shipped], "deliver")?;
                Ok(vec![OrderDelivered { order_id, at: now }])
            }
            OrderCommand::Cancel { reason, by, now } => {
                if status == S::Cancelled {
                    return Ok(vec![]);
                }
                // Customers may cancel before paying. Admins and compensating process managers
                // may also cancel a paid order until it ships; only the system may cancel while
                // a charge is in flight (a reservation expired), because it also refunds a late
                // capture.
                let allowed: &[S] = match by {
                    CancelledBy::Customer => {
                        &[S::Pending, S::PaymentFailed, S::InventoryUnavailable]
                    }
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
                Ok(vec![OrderCancelled { order_id, reason, by, was_paid, at: now }])
            }
            OrderCommand::Refund { amount, reason, refund_reference, now } => {
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
                let refund_reference =
                    bounded_text("refund_reference", &refund_reference, 255, true)?;
                let reason = bounded_text("reason", &reason, 500, false)?;
                Ok(vec![OrderRefunded { order_id, amount, reason, refund_reference, at: now }])
            }
        }
    }

    fn evolve(mut state: OrderState, event: &OrderEvent) -> OrderState {
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
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::OrderEvent::*;
    use super::*;
    use crate::aggregate::testing::given;
    use crate::product::LicenseSource;
    use crate::test_support::{email, eur, qty, sku, t, usd};

    fn oid() -> OrderId {
        OrderId::derived(&["test-order"])
    }

    fn pid() -> PaymentId {
        PaymentId::derived(&["test-payment"])
    }

    fn lid(s: &str) -> LicenseId {
        LicenseId::derived(&["test-license", s])
    }

    fn terms() -> DigitalTerms {
        DigitalTerms { license: LicenseSource::Pool, seats: 1, validity_days: Some(365) }
    }

    fn physical_line() -> OrderLine {
        OrderLine::new(sku("LAP-13"), "Laptop", qty(2), usd(1_000), None).unwrap()
    }

    fn digital_line() -> OrderLine {
        OrderLine::new(sku("AV-1Y"), "Antivirus", qty(1), usd(500), Some(terms())).unwrap()
    }

    fn address() -> ShippingAddress {
        ShippingAddress::parse("Ann", "1 Main St", None, "Springfield", "12345", "us").unwrap()
    }

    fn place(lines: Vec<OrderLine>, address: Option<ShippingAddress>) -> OrderCommand {
        OrderCommand::Place {
            order_id: oid(),
            customer_id: CustomerId::for_email(&email("ann@example.com")),
            email: email("ann@example.com"),
            lines,
            cart_id: None,
            payment_method: PaymentMethod::parse("pm_test").unwrap(),
            shipping_address: address,
            now: t(0),
        }
    }

    fn placed_with(lines: Vec<OrderLine>) -> OrderEvent {
        let total = lines.iter().map(|l| l.line_total.minor).sum();
        let shipping_address = lines.iter().any(|l| !l.is_digital()).then(address);
        OrderPlaced {
            order_id: oid(),
            customer_id: CustomerId::for_email(&email("ann@example.com")),
            email: email("ann@example.com"),
            lines,
            total: usd(total),
            cart_id: None,
            payment_method: PaymentMethod::parse("pm_test").unwrap(),
            shipping_address,
            at: t(0),
        }
    }

    fn placed() -> OrderEvent {
        placed_with(vec![physical_line()])
    }

    fn started() -> OrderEvent {
        OrderPaymentStarted { order_id: oid(), payment_id: pid(), at: t(1) }
    }

    fn paid(minor: i64) -> OrderEvent {
        OrderPaid {
            order_id: oid(),
            payment_id: pid(),
            gateway_reference: "ch_1".into(),
            amount: usd(minor),
            at: t(2),
        }
    }

    fn attached(s: &str) -> OrderEvent {
        OrderLicenseAttached { order_id: oid(), sku: sku(s), license_id: lid(s), at: t(3) }
    }

    fn fulfilled(licensed: &[&str]) -> OrderEvent {
        let licenses = licensed.iter().map(|s| (sku(s), lid(s))).collect();
        OrderFulfilled { order_id: oid(), licenses, at: t(4) }
    }

    fn refunded(minor: i64, reference: &str) -> OrderEvent {
        OrderRefunded {
            order_id: oid(),
            amount: usd(minor),
            reason: "returned".into(),
            refund_reference: reference.into(),
            at: t(9),
        }
    }

    fn refund(minor: i64, reference: &str) -> OrderCommand {
        OrderCommand::Refund {
            amount: usd(minor),
            reason: "returned".into(),
            refund_reference: reference.into(),
            now: t(9),
        }
    }

    fn cancel(by: CancelledBy) -> OrderCommand {
        OrderCommand::Cancel { reason: "changed my mind".into(), by, now: t(5) }
    }

    /// A history that leaves the order in `status`. FULFILLED needs a digital-only order; all
    /// others use a physical one.
    fn history(status: OrderStatus) -> Vec<OrderEvent> {
        use OrderStatus as S;
        let physical_paid = vec![placed(), started(), paid(2_000)];
        let mut h = match status {
            S::Pending => vec![placed()],
            S::PaymentProcessing => vec![placed(), started()],
            S::PaymentFailed => vec![
                placed(),
                started(),
                OrderPaymentFailed {
                    order_id: oid(),
                    reason: "declined".into(),
                    message: "no".into(),
                    at: t(2),
                },
            ],
            S::InventoryUnavailable => vec![
                placed(),
                OrderInventoryUnavailable { order_id: oid(), skus: vec![sku("LAP-13")], at: t(1) },
            ],
            S::Cancelled => vec![
                placed(),
                OrderCancelled {
                    order_id: oid(),
                    reason: "x".into(),
                    by: CancelledBy::Customer,
                    was_paid: false,
                    at: t(1),
                },
            ],
            S::Refunded => {
                let mut h = physical_paid.clone();
                h.push(refunded(500, "r1"));
                h
            }
            S::Fulfilled => vec![
                placed_with(vec![digital_line()]),
                started(),
                paid(500),
                attached("AV-1Y"),
                fulfilled(&["AV-1Y"]),
            ],
            S::Paid | S::Confirmed | S::Processing | S::Shipped | S::Delivered => physical_paid,
        };
        let steps = [
            (S::Confirmed, OrderConfirmed { order_id: oid(), at: t(3) }),
            (S::Processing, OrderProcessingStarted { order_id: oid(), at: t(4) }),
            (
                S::Shipped,
                OrderShipped {
                    order_id: oid(),
                    tracking_number: "1Z999".into(),
                    carrier: "UPS".into(),
                    estimated_delivery: Some(t(6_000)),
                    at: t(5),
                },
            ),
            (S::Delivered, OrderDelivered { order_id: oid(), at: t(6) }),
        ];
        if let Some(last) = steps.iter().position(|(s, _)| *s == status) {
            h.extend(steps[..=last].iter().map(|(_, e)| e.clone()));
        }
        h
    }

    #[test]
    fn histories_reach_their_status() {
        for status in OrderStatus::ALL {
            assert_eq!(given::<Order>(history(status)).state().status, Some(status));
        }
    }

    /// Every command against every status: which ones record events, which are idempotent
    /// no-ops, and that everything else is rejected with the expected code.
    #[test]
    fn transition_matrix() {
        use OrderStatus as S;
        type Case = (&'static str, fn() -> OrderCommand, &'static [S], &'static [S], &'static str);
        let cases: Vec<Case> = vec![
            (
                "start_payment",
                || OrderCommand::StartPayment {
                    payment_id: PaymentId::derived(&["other"]),
                    now: t(1),
                },
                &[S::Pending],
                &[],
                "INVALID_TRANSITION",
            ),
            (
                "mark_paid",
                || OrderCommand::MarkPaid {
                    payment_id: pid(),
                    gateway_reference: "ch_1".into(),
                    amount: usd(2_000),
                    now: t(2),
                },
                &[S::PaymentProcessing],
                &[
                    S::Paid,
                    S::Confirmed,
                    S::Processing,
                    S::Shipped,
                    S::Delivered,
                    S::Fulfilled,
                    S::Refunded,
                ],
                "INVALID_TRANSITION",
            ),
            (
                "mark_payment_failed",
                || OrderCommand::MarkPaymentFailed {
                    reason: "declined".into(),
                    message: "no".into(),
                    now: t(2),
                },
                &[S::PaymentProcessing],
                &[S::PaymentFailed],
                "INVALID_TRANSITION",
            ),
            (
                "mark_inventory_unavailable",
                || OrderCommand::MarkInventoryUnavailable { skus: vec![sku("LAP-13")], now: t(1) },
                &[S::Pending],
                &[S::InventoryUnavailable],
                "INVALID_TRANSITION",
            ),
            (
                "confirm",
                || OrderCommand::Confirm { now: t(3) },
                &[S::Paid],
                &[S::Confirmed, S::Processing, S::Shipped, S::Delivered],
                "INVALID_TRANSITION",
            ),
            (
                "start_processing",
                || OrderCommand::StartProcessing { now: t(4) },
                &[S::Confirmed],
                &[],
                "INVALID_TRANSITION",
            ),
            (
                "ship",
                || OrderCommand::Ship {
                    tracking_number: "1Z999".into(),
                    carrier: "UPS".into(),
                    estimated_delivery: None,
                    now: t(5),
                },
                &[S::Processing],
                &[],
                "INVALID_TRANSITION",
            ),
            (
                "deliver",
                || OrderCommand::Deliver { now: t(6) },
                &[S::Shipped],
                &[],
                "INVALID_TRANSITION",
            ),
            (
                "fulfil",
                || OrderCommand::Fulfill { now: t(6) },
                &[],
                &[S::Fulfilled],
                "INVALID_TRANSITION",
            ),
            (
                "cancel_by_customer",
                || cancel(CancelledBy::Customer),
                &[S::Pending, S::PaymentFailed, S::InventoryUnavailable],
                &[S::Cancelled],
                "INVALID_TRANSITION",
            ),
            (
                "cancel_by_admin",
                || cancel(CancelledBy::Admin),
                &[
                    S::Pending,
                    S::PaymentFailed,
                    S::InventoryUnavailable,
                    S::Paid,
                    S::Confirmed,
                    S::Processing,
                ],
                &[S::Cancelled],
                "INVALID_TRANSITION",
            ),
            (
                "cancel_by_system",
                || cancel(CancelledBy::System),
                &[
                    S::Pending,
                    S::PaymentProcessing,
                    S::PaymentFailed,
                    S::InventoryUnavailable,
                    S::Paid,
                    S::Confirmed,
                    S::Processing,
                ],
                &[S::Cancelled],
                "INVALID_TRANSITION",
            ),
            (
                "refund",
                || refund(100, "r2"),
                &[
                    S::Paid,
                    S::Confirmed,
                    S::Processing,
                    S::Shipped,
                    S::Delivered,
                    S::Fulfilled,
                    S::Refunded,
                ],
                &[],
                "NOT_PAID",
            ),
        ];
        for (name, command, records, no_op, otherwise) in cases {
            for status in OrderStatus::ALL {
                let result = given::<Order>(history(status)).when(command()).result();
                match result {
                    Ok(events) if records.contains(&status) => {
                        assert_eq!(events.len(), 1, "{name} from {status}");
                    }
                    Ok(events) if no_op.contains(&status) => {
                        assert!(events.is_empty(), "{name} from {status} should do nothing");
                    }
                    Ok(events) => panic!("{name} from {status} should fail, got {events:?}"),
                    Err(e) => {
                        assert!(
                            !records.contains(&status) && !no_op.contains(&status),
                            "{name} from {status} failed: {e}"
                        );
                        assert_eq!(e.code(), otherwise, "{name} from {status}: {e}");
                        if e.code() == "INVALID_TRANSITION" {
                            assert!(e.to_string().contains(status.as_str()), "{e}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn place_records_lines_totals_and_terms() {
        given::<Order>([])
            .when(place(vec![physical_line(), digital_line()], Some(address())))
            .then([placed_with(vec![physical_line(), digital_line()])]);
        given::<Order>([placed()])
            .when(place(vec![physical_line()], Some(address())))
            .then_error("ORDER_ALREADY_EXISTS");
        given::<Order>([])
            .when(OrderCommand::StartPayment { payment_id: pid(), now: t(1) })
            .then_error("ORDER_NOT_FOUND");
        let json = serde_json::to_value(placed_with(vec![digital_line()])).unwrap();
        assert_eq!(json["data"]["lines"][0]["digital"]["license"], "pool");
        assert_eq!(
            serde_json::to_value(OrderStatus::PaymentProcessing).unwrap(),
            "PAYMENT_PROCESSING"
        );
    }

    #[test]
    fn place_validates_the_lines() {
        given::<Order>([]).when(place(vec![], None)).then_error("EMPTY_ORDER");
        let many = (0..101)
            .map(|i| {
                OrderLine::new(sku(&format!("S{i}")), "x", qty(1), usd(1), Some(terms())).unwrap()
            })
            .collect();
        given::<Order>([]).when(place(many, None)).then_error("TOO_MANY_LINES");
        let euro = OrderLine::new(sku("B"), "x", qty(1), eur(1), Some(terms())).unwrap();
        given::<Order>([])
            .when(place(vec![digital_line(), euro], None))
            .then_error("CURRENCY_MISMATCH");
        let err = given::<Order>([]).when(place(vec![physical_line()], None)).result().unwrap_err();
        assert_eq!(
            (err.code(), err.field()),
            ("SHIPPING_ADDRESS_REQUIRED", Some("shipping_address"))
        );
        given::<Order>([])
            .when(place(vec![digital_line(), digital_line()], None))
            .then_error("DUPLICATE_LINE");
        // A forged line total is recomputed from the unit price.
        let mut forged = physical_line();
        forged.line_total = usd(1);
        let events =
            given::<Order>([]).when(place(vec![forged], Some(address()))).result().unwrap();
        assert!(matches!(&events[0], OrderPlaced { total, .. } if *total == usd(2_000)));
    }

    #[test]
    fn payment_steps() {
        given::<Order>([placed()])
            .when(OrderCommand::StartPayment { payment_id: pid(), now: t(1) })
            .then([started()]);
        given::<Order>([placed(), started()])
            .when(OrderCommand::StartPayment { payment_id: pid(), now: t(1) })
            .then([]);
        let mark_paid = |payment_id, amount| OrderCommand::MarkPaid {
            payment_id,
            gateway_reference: "ch_1".into(),
            amount,
            now: t(2),
        };
        given::<Order>([placed(), started()])
            .when(mark_paid(pid(), usd(2_000)))
            .then([paid(2_000)]);
        given::<Order>([placed(), started()])
            .when(mark_paid(PaymentId::derived(&["other"]), usd(2_000)))
            .then_error("PAYMENT_MISMATCH");
        given::<Order>([placed(), started()])
            .when(mark_paid(pid(), eur(2_000)))
            .then_error("CURRENCY_MISMATCH");
    }

    #[test]
    fn licenses_attach_to_digital_lines_once() {
        let digital = [placed_with(vec![digital_line()]), started(), paid(500)];
        let attach =
            |s: &str, l| OrderCommand::AttachLicense { sku: sku(s), license_id: l, now: t(3) };
        given::<Order>(digital.clone())
            .when(attach("AV-1Y", lid("AV-1Y")))
            .then([attached("AV-1Y")]);
        let with_license =
            [placed_with(vec![digital_line()]), started(), paid(500), attached("AV-1Y")];
        given::<Order>(with_license.clone()).when(attach("AV-1Y", lid("AV-1Y"))).then([]);
        given::<Order>(with_license)
            .when(attach("AV-1Y", lid("other")))
            .then_error("LICENSE_ALREADY_ATTACHED");
        given::<Order>(digital).when(attach("LAP-13", lid("x"))).then_error("NOT_A_DIGITAL_LINE");
        given::<Order>([placed_with(vec![digital_line()])])
            .when(attach("AV-1Y", lid("AV-1Y")))
            .then_error("INVALID_TRANSITION");
    }

    #[test]
    fn digital_only_orders_are_fulfilled_from_paid() {
        let fulfil = || OrderCommand::Fulfill { now: t(4) };
        given::<Order>([placed_with(vec![digital_line()]), started(), paid(500)])
            .when(fulfil())
            .then_error("LICENSES_MISSING");
        let ready = [placed_with(vec![digital_line()]), started(), paid(500), attached("AV-1Y")];
        given::<Order>(ready.clone()).when(fulfil()).then([fulfilled(&["AV-1Y"])]);
        let mut done = ready.to_vec();
        done.push(fulfilled(&["AV-1Y"]));
        assert_eq!(given::<Order>(done).state().status, Some(OrderStatus::Fulfilled));
        given::<Order>(ready)
            .when(OrderCommand::Confirm { now: t(3) })
            .then_error("INVALID_TRANSITION");
    }

    #[test]
    fn mixed_orders_fulfil_without_leaving_the_physical_path() {
        let mixed = || placed_with(vec![physical_line(), digital_line()]);
        let confirmed = OrderConfirmed { order_id: oid(), at: t(3) };
        let ready = [mixed(), started(), paid(2_500), confirmed, attached("AV-1Y")];
        given::<Order>(ready.clone())
            .when(OrderCommand::Fulfill { now: t(4) })
            .then([fulfilled(&["AV-1Y"])]);
        let mut done = ready.to_vec();
        done.push(fulfilled(&["AV-1Y"]));
        let state = given::<Order>(done.clone()).state().clone();
        assert_eq!((state.status, state.fulfilled), (Some(OrderStatus::Confirmed), true));
        given::<Order>(done)
            .when(OrderCommand::StartProcessing { now: t(5) })
            .then([OrderProcessingStarted { order_id: oid(), at: t(5) }]);
    }

    #[test]
    fn shipping_needs_a_sane_tracking_number() {
        let ship = |number: &str| OrderCommand::Ship {
            tracking_number: number.into(),
            carrier: "UPS".into(),
            estimated_delivery: Some(t(6_000)),
            now: t(5),
        };
        let processing = history(OrderStatus::Processing);
        given::<Order>(processing.clone()).when(ship("1Z999")).then([OrderShipped {
            order_id: oid(),
            tracking_number: "1Z999".into(),
            carrier: "UPS".into(),
            estimated_delivery: Some(t(6_000)),
            at: t(5),
        }]);
        given::<Order>(processing.clone()).when(ship("")).then_error("INVALID_INPUT");
        let err = given::<Order>(processing).when(ship(&"9".repeat(65))).result().unwrap_err();
        assert_eq!(err.field(), Some("tracking_number"));
    }

    #[test]
    fn cancel_records_whether_money_was_taken() {
        given::<Order>(history(OrderStatus::Paid)).when(cancel(CancelledBy::Admin)).then([
            OrderCancelled {
                order_id: oid(),
                reason: "changed my mind".into(),
                by: CancelledBy::Admin,
                was_paid: true,
                at: t(5),
            },
        ]);
        let events =
            given::<Order>([placed()]).when(cancel(CancelledBy::Customer)).result().unwrap();
        assert!(matches!(events[..], [OrderCancelled { was_paid: false, .. }]));
    }

    #[test]
    fn refunds_are_bounded_by_the_capture_and_recorded_once() {
        let paid_history = history(OrderStatus::Paid);
        given::<Order>(paid_history.clone()).when(refund(500, "r1")).then([refunded(500, "r1")]);
        given::<Order>(history(OrderStatus::Refunded)).when(refund(500, "r1")).then([]);
        given::<Order>(history(OrderStatus::Refunded))
            .when(refund(1_501, "r2"))
            .then_error("REFUND_EXCEEDS_CAPTURED");
        given::<Order>(history(OrderStatus::Refunded))
            .when(refund(1_500, "r2"))
            .then([refunded(1_500, "r2")]);
        given::<Order>(paid_history.clone()).when(refund(0, "r1")).then_error("INVALID_INPUT");
        let mut cancelled_after_payment = paid_history;
        cancelled_after_payment.push(OrderCancelled {
            order_id: oid(),
            reason: "license unavailable".into(),
            by: CancelledBy::System,
            was_paid: true,
            at: t(3),
        });
        given::<Order>(cancelled_after_payment).when(refund(2_000, "r1")).then([OrderRefunded {
            order_id: oid(),
            amount: usd(2_000),
            reason: "returned".into(),
            refund_reference: "r1".into(),
            at: t(9),
        }]);
    }
}
