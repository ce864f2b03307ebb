//! Payment: one charge of one order through the payment gateway, stream `payment-<uuid>`.
//!
//! Every payment event carries the order id, so the checkout process manager can route it.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{Aggregate, DomainError, Event, Money, OrderId, PaymentId, ValueError, bounded_text};

/// A reference to a payment method held by the gateway, never a card number.
///
/// [`PaymentMethod::parse`] accepts:
/// - a gateway token: `pm_…` or `tok_…`, at most 255 characters of `[A-Za-z0-9_]`;
/// - a test card number (13 to 19 digits, spaces and dashes allowed, Luhn-valid), which it turns
///   into the token `pm_card_<last4>_<brand>` (brand `visa`, `mastercard`, `amex`, `discover`
///   or `card`). The full card number (PAN) is dropped right there: it is never stored, logged
///   or put in an event. The last four digits are enough for the simulated gateway to pick the
///   outcome a test card stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PaymentMethod(String);

impl PaymentMethod {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<PaymentMethod, ValueError> {
        let s = raw.trim();
        let is_token_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if let Some(rest) = s.strip_prefix("pm_").or_else(|| s.strip_prefix("tok_")) {
            if rest.is_empty() || s.len() > Self::MAX_LEN || !s.chars().all(is_token_char) {
                return Err(ValueError::new(
                    "payment_method",
                    "a token is pm_ or tok_ followed by at most 255 letters, digits or '_'",
                ));
            }
            return Ok(PaymentMethod(s.to_owned()));
        }
        let digits: String = s.chars().filter(|c| *c != ' ' && *c != '-').collect();
        let looks_like_card = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit());
        if !looks_like_card {
            return Err(ValueError::new(
                "payment_method",
                "must be a payment token (pm_… or tok_…) or a test card number",
            ));
        }
        // The messages below never echo the input: it may be a real card number.
        if !(13..=19).contains(&digits.len()) {
            return Err(ValueError::new("payment_method", "a card number has 13 to 19 digits"));
        }
        if !luhn_valid(&digits) {
            return Err(ValueError::new("payment_method", "the card number is not valid"));
        }
        let last4 = &digits[digits.len() - 4..];
        Ok(PaymentMethod(format!("pm_card_{last4}_{}", card_brand(&digits))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PaymentMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PaymentMethod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PaymentMethod::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn card_brand(digits: &str) -> &'static str {
    let prefix = |n: usize| digits[..n].parse::<u32>().unwrap_or(0);
    if digits.starts_with('4') {
        "visa"
    } else if (51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4)) {
        "mastercard"
    } else if matches!(prefix(2), 34 | 37) {
        "amex"
    } else if digits.starts_with("6011")
        || digits.starts_with("65")
        || (644..=649).contains(&prefix(3))
    {
        "discover"
    } else {
        "card"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentFailureReason {
    InsufficientFunds,
    InvalidPaymentDetails,
    Declined,
    GatewayTimeout,
}

impl PaymentFailureReason {
    /// The stable snake_case code, as serialised.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InsufficientFunds => "insufficient_funds",
            Self::InvalidPaymentDetails => "invalid_payment_details",
            Self::Declined => "declined",
            Self::GatewayTimeout => "gateway_timeout",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    #[default]
    None,
    RequiresCapture,
    Captured,
    Failed,
    /// Some or all of the captured amount went back to the customer.
    Refunded,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PaymentState {
    pub status: PaymentStatus,
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount: Option<Money>,
    pub payment_method: Option<PaymentMethod>,
    pub idempotency_key: String,
    pub gateway_reference: Option<String>,
    pub refunded_minor: i64,
    pub refund_references: BTreeSet<String>,
    pub attempts: u32,
    pub failure: Option<PaymentFailureReason>,
}

#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PaymentCommand {
    CreateIntent {
        payment_id: PaymentId,
        order_id: OrderId,
        amount: Money,
        payment_method: PaymentMethod,
        idempotency_key: String,
        now: DateTime<Utc>,
    },
    Capture {
        gateway_reference: String,
        now: DateTime<Utc>,
    },
    Fail {
        reason: PaymentFailureReason,
        message: String,
        now: DateTime<Utc>,
    },
    /// A retryable gateway timeout; the payment stays open.
    RecordAttempt {
        attempt: u32,
        error: String,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// `refund_reference` identifies this refund, so a retried refund is recorded once.
    Refund {
        amount: Money,
        reason: String,
        refund_reference: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum PaymentEvent {
    PaymentIntentCreated {
        payment_id: PaymentId,
        order_id: OrderId,
        amount: Money,
        payment_method: PaymentMethod,
        idempotency_key: String,
        at: DateTime<Utc>,
    },
    PaymentAttemptFailed {
        payment_id: PaymentId,
        order_id: OrderId,
        attempt: u32,
        error: String,
        retry_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    PaymentCaptured {
        payment_id: PaymentId,
        order_id: OrderId,
        amount: Money,
        gateway_reference: String,
        at: DateTime<Utc>,
    },
    PaymentFailed {
        payment_id: PaymentId,
        order_id: OrderId,
        reason: PaymentFailureReason,
        message: String,
        at: DateTime<Utc>,
    },
    PaymentRefunded {
        payment_id: PaymentId,
        order_id: OrderId,
        amount: Money,
        reason: String,
        refund_reference: String,
        at: DateTime<Utc>,
    },
}

impl PaymentEvent {
    /// The order the payment is for (every payment event carries it).
    pub fn order_id(&self) -> OrderId {
        match self {
            PaymentEvent::PaymentIntentCreated { order_id, .. }
            | PaymentEvent::PaymentAttemptFailed { order_id, .. }
            | PaymentEvent::PaymentCaptured { order_id, .. }
            | PaymentEvent::PaymentFailed { order_id, .. }
            | PaymentEvent::PaymentRefunded { order_id, .. } => *order_id,
        }
    }
}

impl Event for PaymentEvent {
    event_names!(
        PaymentIntentCreated,
        PaymentAttemptFailed,
        PaymentCaptured,
        PaymentFailed,
        PaymentRefunded,
    );
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PaymentError {
    #[error("no such payment")]
    NotFound,
    #[error("a payment with this id already exists for another request")]
    AlreadyExists,
    #[error("the payment has already failed")]
    AlreadyFailed,
    #[error("the payment has already been captured")]
    AlreadyCaptured,
    #[error("the payment has not been captured")]
    NotCaptured,
    #[error("only {refundable} can still be refunded")]
    RefundExceedsCaptured { refundable: Money },
    #[error("the payment is in {expected}, the amount in {got}")]
    CurrencyMismatch { expected: crate::Currency, got: crate::Currency },
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl DomainError for PaymentError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "PAYMENT_NOT_FOUND",
            Self::AlreadyExists => "PAYMENT_ALREADY_EXISTS",
            Self::AlreadyFailed => "PAYMENT_ALREADY_FAILED",
            Self::AlreadyCaptured => "PAYMENT_ALREADY_CAPTURED",
            Self::NotCaptured => "NOT_CAPTURED",
            Self::RefundExceedsCaptured { .. } => "REFUND_EXCEEDS_CAPTURED",
            Self::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            Self::Invalid(_) => "INVALID_INPUT",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::RefundExceedsCaptured { .. } | Self::CurrencyMismatch { .. } => Some("amount"),
            Self::Invalid(e) => Some(e.field),
            _ => None,
        }
    }
}

/// Gateway messages can be long; keep the first 500 characters.
fn truncate(s: &str) -> String {
    s.chars().take(500).collect()
}

pub struct Payment;

impl Aggregate for Payment {
    const CATEGORY: &'static str = "payment";
    type Id = PaymentId;
    type State = PaymentState;
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;

    fn decide(
        state: &PaymentState,
        command: PaymentCommand,
    ) -> Result<Vec<PaymentEvent>, PaymentError> {
        use PaymentEvent::*;
        use PaymentStatus as S;
        let (payment_id, order_id) = (state.payment_id, state.order_id);
        if state.status == S::None && !matches!(command, PaymentCommand::CreateIntent { .. }) {
            return Err(PaymentError::NotFound);
        }
        match command {
            PaymentCommand::CreateIntent {
                payment_id,
                order_id,
                amount,
                payment_method,
                idempotency_key,
                now,
            } => {
                if state.status != S::None {
                    // The same request again is a retry; a different one is a clash of ids.
                    return if state.idempotency_key == idempotency_key {
                        Ok(vec![])
                    } else {
                        Err(PaymentError::AlreadyExists)
                    };
                }
                if amount.minor < 0 {
                    return Err(ValueError::new("amount", "must not be negative").into());
                }
                let idempotency_key = bounded_text("idempotency_key", &idempotency_key, 255, true)?;
                Ok(vec![PaymentIntentCreated {
                    payment_id,
                    order_id,
                    amount,
                    payment_method,
                    idempotency_key,
                    at: now,
                }])
            }
            PaymentCommand::Capture { gateway_reference, now } => match state.status {
                S::Failed => Err(PaymentError::AlreadyFailed),
                S::Captured | S::Refunded => {
                    if state.gateway_reference.as_deref() == Some(gateway_reference.as_str()) {
                        Ok(vec![])
                    } else {
                        Err(PaymentError::AlreadyCaptured)
                    }
                }
                S::None | S::RequiresCapture => {
                    let gateway_reference =
                        bounded_text("gateway_reference", &gateway_reference, 255, true)?;
                    Ok(vec![PaymentCaptured {
                        payment_id,
                        order_id,
                        amount: state.amount.ok_or(PaymentError::NotFound)?,
                        gateway_reference,
                        at: now,
                    }])
                }
            },
            PaymentCommand::Fail { reason, message, now } => match state.status {
                S::Captured | S::Refunded => Err(PaymentError::AlreadyCaptured),
                S::Failed => Ok(vec![]),
                S::None | S::RequiresCapture => Ok(vec![PaymentFailed {
                    payment_id,
                    order_id,
                    reason,
                    message: truncate(&message),
                    at: now,
                }]),
            },
            PaymentCommand::RecordAttempt { attempt, error, retry_at, now } => match state.status {
                S::Captured | S::Refunded => Err(PaymentError::AlreadyCaptured),
                S::Failed => Err(PaymentError::AlreadyFailed),
                S::None | S::RequiresCapture if attempt <= state.attempts => Ok(vec![]),
                S::None | S::RequiresCapture => Ok(vec![PaymentAttemptFailed {
                    payment_id,
                    order_id,
                    attempt,
                    error: truncate(&error),
                    retry_at,
                    at: now,
                }]),
            },
            PaymentCommand::Refund { amount, reason, refund_reference, now } => {
                if !matches!(state.status, S::Captured | S::Refunded) {
                    return Err(PaymentError::NotCaptured);
                }
                if state.refund_references.contains(&refund_reference) {
                    return Ok(vec![]);
                }
                let captured = state.amount.ok_or(PaymentError::NotCaptured)?;
                if amount.currency != captured.currency {
                    return Err(PaymentError::CurrencyMismatch {
                        expected: captured.currency,
                        got: amount.currency,
                    });
                }
                if amount.minor <= 0 {
                    return Err(ValueError::new("amount", "must be positive").into());
                }
                let refundable =
                    Money::new(captured.minor - state.refunded_minor, captured.currency);
                if amount.minor > refundable.minor {
                    return Err(PaymentError::RefundExceedsCaptured { refundable });
                }
                let refund_reference =
                    bounded_text("refund_reference", &refund_reference, 255, true)?;
                Ok(vec![PaymentRefunded {
                    payment_id,
                    order_id,
                    amount,
                    reason: bounded_text("reason", &reason, 500, false)?,
                    refund_reference,
                    at: now,
                }])
            }
        }
    }

    fn evolve(mut state: PaymentState, event: &PaymentEvent) -> PaymentState {
        use PaymentEvent::*;
        match event {
            PaymentIntentCreated {
                payment_id,
                order_id,
                amount,
                payment_method,
                idempotency_key,
                ..
            } => {
                state = PaymentState {
                    status: PaymentStatus::RequiresCapture,
                    payment_id: *payment_id,
                    order_id: *order_id,
                    amount: Some(*amount),
                    payment_method: Some(payment_method.clone()),
                    idempotency_key: idempotency_key.clone(),
                    ..PaymentState::default()
                };
            }
            PaymentAttemptFailed { attempt, .. } => state.attempts = state.attempts.max(*attempt),
            PaymentCaptured { gateway_reference, .. } => {
                state.status = PaymentStatus::Captured;
                state.gateway_reference = Some(gateway_reference.clone());
            }
            PaymentFailed { reason, .. } => {
                state.status = PaymentStatus::Failed;
                state.failure = Some(*reason);
            }
            PaymentRefunded { amount, refund_reference, .. } => {
                state.status = PaymentStatus::Refunded;
                state.refunded_minor += amount.minor;
                state.refund_references.insert(refund_reference.clone());
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentEvent::*;
    use super::*;
    use crate::aggregate::testing::given;
    use crate::test_support::{eur, t, usd};

    fn pid() -> PaymentId {
        PaymentId::derived(&["test-payment"])
    }

    fn oid() -> OrderId {
        OrderId::derived(&["test-order"])
    }

    fn pm() -> PaymentMethod {
        PaymentMethod::parse("pm_test_visa").unwrap()
    }

    fn created() -> PaymentEvent {
        PaymentIntentCreated {
            payment_id: pid(),
            order_id: oid(),
            amount: usd(5_000),
            payment_method: pm(),
            idempotency_key: "key-1".into(),
            at: t(0),
        }
    }

    fn captured() -> PaymentEvent {
        PaymentCaptured {
            payment_id: pid(),
            order_id: oid(),
            amount: usd(5_000),
            gateway_reference: "ch_1".into(),
            at: t(1),
        }
    }

    fn failed() -> PaymentEvent {
        PaymentFailed {
            payment_id: pid(),
            order_id: oid(),
            reason: PaymentFailureReason::Declined,
            message: "card declined".into(),
            at: t(1),
        }
    }

    fn create(key: &str) -> PaymentCommand {
        PaymentCommand::CreateIntent {
            payment_id: pid(),
            order_id: oid(),
            amount: usd(5_000),
            payment_method: pm(),
            idempotency_key: key.into(),
            now: t(0),
        }
    }

    fn capture(reference: &str) -> PaymentCommand {
        PaymentCommand::Capture { gateway_reference: reference.into(), now: t(1) }
    }

    fn fail() -> PaymentCommand {
        PaymentCommand::Fail {
            reason: PaymentFailureReason::Declined,
            message: "card declined".into(),
            now: t(1),
        }
    }

    fn refund(minor: i64, reference: &str) -> PaymentCommand {
        PaymentCommand::Refund {
            amount: usd(minor),
            reason: "customer request".into(),
            refund_reference: reference.into(),
            now: t(2),
        }
    }

    fn refunded(minor: i64, reference: &str) -> PaymentEvent {
        PaymentRefunded {
            payment_id: pid(),
            order_id: oid(),
            amount: usd(minor),
            reason: "customer request".into(),
            refund_reference: reference.into(),
            at: t(2),
        }
    }

    #[test]
    fn payment_methods_never_hold_a_card_number() {
        assert_eq!(PaymentMethod::parse("pm_1Abc").unwrap().as_str(), "pm_1Abc");
        assert_eq!(PaymentMethod::parse("tok_visa").unwrap().as_str(), "tok_visa");
        let visa = PaymentMethod::parse("4242 4242 4242 4242").unwrap();
        assert_eq!(visa.as_str(), "pm_card_4242_visa");
        assert_eq!(
            PaymentMethod::parse("5555-5555-5555-4444").unwrap().as_str(),
            "pm_card_4444_mastercard"
        );
        assert_eq!(PaymentMethod::parse("378282246310005").unwrap().as_str(), "pm_card_0005_amex");
        assert_eq!(
            PaymentMethod::parse("6011111111111117").unwrap().as_str(),
            "pm_card_1117_discover"
        );
        for bad in ["", "pm_", "pm_has space", "sk_live_x", "4242424242424241", "4242", "abc"] {
            let err = PaymentMethod::parse(bad).unwrap_err();
            assert_eq!(err.field, "payment_method");
            assert!(!err.message.contains("4242"), "the error must not echo a card number");
        }
        assert!(PaymentMethod::parse(&format!("pm_{}", "a".repeat(253))).is_err());
        assert!(serde_json::from_str::<PaymentMethod>("\"4242424242424242\"").is_ok());
    }

    #[test]
    fn create_intent_once_per_request() {
        given::<Payment>([]).when(create("key-1")).then([created()]);
        given::<Payment>([created()]).when(create("key-1")).then([]);
        given::<Payment>([created()]).when(create("key-2")).then_error("PAYMENT_ALREADY_EXISTS");
        given::<Payment>([]).when(capture("ch_1")).then_error("PAYMENT_NOT_FOUND");
    }

    #[test]
    fn capture_once() {
        given::<Payment>([created()]).when(capture("ch_1")).then([captured()]);
        given::<Payment>([created(), captured()]).when(capture("ch_1")).then([]);
        given::<Payment>([created(), captured()])
            .when(capture("ch_2"))
            .then_error("PAYMENT_ALREADY_CAPTURED");
        given::<Payment>([created(), failed()])
            .when(capture("ch_1"))
            .then_error("PAYMENT_ALREADY_FAILED");
    }

    #[test]
    fn fail_once_and_never_after_capture() {
        given::<Payment>([created()]).when(fail()).then([failed()]);
        given::<Payment>([created(), failed()]).when(fail()).then([]);
        given::<Payment>([created(), captured()])
            .when(fail())
            .then_error("PAYMENT_ALREADY_CAPTURED");
    }

    #[test]
    fn record_attempt_keeps_the_payment_open() {
        let attempt = |n| PaymentCommand::RecordAttempt {
            attempt: n,
            error: "gateway timeout".into(),
            retry_at: t(5),
            now: t(1),
        };
        let recorded = PaymentAttemptFailed {
            payment_id: pid(),
            order_id: oid(),
            attempt: 1,
            error: "gateway timeout".into(),
            retry_at: t(5),
            at: t(1),
        };
        given::<Payment>([created()]).when(attempt(1)).then([recorded.clone()]);
        given::<Payment>([created(), recorded.clone()]).when(attempt(1)).then([]);
        given::<Payment>([created(), recorded]).when(capture("ch_1")).then([captured()]);
        given::<Payment>([created(), captured()])
            .when(attempt(2))
            .then_error("PAYMENT_ALREADY_CAPTURED");
        given::<Payment>([created(), failed()])
            .when(attempt(2))
            .then_error("PAYMENT_ALREADY_FAILED");
    }

    #[test]
    fn refunds_never_exceed_the_capture() {
        let paid = [created(), captured()];
        given::<Payment>(paid.clone()).when(refund(2_000, "r1")).then([refunded(2_000, "r1")]);
        given::<Payment>([created(), captured(), refunded(2_000, "r1")])
            .when(refund(3_000, "r2"))
            .then([refunded(3_000, "r2")]);
        given::<Payment>([created(), captured(), refunded(2_000, "r1")])
            .when(refund(2_000, "r1"))
            .then([]);
        given::<Payment>([created(), captured(), refunded(2_000, "r1")])
            .when(refund(3_001, "r2"))
            .then_error("REFUND_EXCEEDS_CAPTURED");
        given::<Payment>([created()]).when(refund(1, "r1")).then_error("NOT_CAPTURED");
        given::<Payment>([created(), failed()]).when(refund(1, "r1")).then_error("NOT_CAPTURED");
        let mut wrong = refund(1, "r1");
        if let PaymentCommand::Refund { amount, .. } = &mut wrong {
            *amount = eur(1);
        }
        given::<Payment>(paid.clone()).when(wrong).then_error("CURRENCY_MISMATCH");
        given::<Payment>(paid).when(refund(0, "r1")).then_error("INVALID_INPUT");
    }
}
