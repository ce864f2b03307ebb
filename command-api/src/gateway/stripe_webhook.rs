//! Stripe webhooks, as pure functions: verify the `Stripe-Signature` header, then parse the
//! event.
//!
//! Stripe's scheme: the header is `t=<unix seconds>,v1=<signature>[,v1=<signature>…]` (other
//! schemes such as `v0` are ignored), and a signature is the lower-case hex HMAC-SHA256, keyed
//! with the endpoint's whole signing secret (`whsec_…`), of `"<t>.<raw request body>"`. Several
//! `v1` entries appear while a secret is being rolled; one match is enough.
//!
//! The body must be verified exactly as received, before any JSON parsing: re-serialised JSON
//! would not match.
//!
//! The signature is checked before the timestamp, so a forged request is always
//! [`WebhookError::BadSignature`], and [`WebhookError::Stale`] means a genuine event replayed
//! outside the tolerance (or a clock far off).

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use purser_domain::payment::PaymentFailureReason;
use purser_domain::{Currency, Money, OrderId, PaymentId};
use serde::Deserialize;
use sha2::Sha256;

use super::hex;
use super::stripe::StripeError;

/// The header Stripe signs its webhooks in.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";

/// How far an event's timestamp may be from now, either way: Stripe's libraries use 300 s.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The `Stripe-Signature` header is missing or not of the form `t=…,v1=…`.
    #[error("the Stripe-Signature header is missing or malformed: {0}")]
    Malformed(&'static str),
    /// No `v1` signature matches the payload under the secret.
    #[error("the webhook signature does not match")]
    BadSignature,
    /// The signature is valid but its timestamp is outside the tolerance: a replay.
    #[error("the webhook timestamp is outside the allowed tolerance")]
    Stale,
    /// The (verified) payload is not an event this code can read.
    #[error("the webhook payload is not a readable Stripe event: {0}")]
    Payload(String),
}

type HmacSha256 = Hmac<Sha256>;

/// Verifies a webhook's `Stripe-Signature` header against its raw body.
///
/// `now` and `tolerance` make it testable; pass `Utc::now()` and [`DEFAULT_TOLERANCE`]. An
/// empty secret verifies nothing ([`WebhookError::BadSignature`]).
pub fn verify_signature(
    payload: &[u8],
    header: &str,
    secret: &str,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    let mut timestamp: Option<&str> = None;
    let mut signatures: Vec<&str> = Vec::new();
    for item in header.split(',') {
        // Like Stripe's own libraries, entries that are not key=value are ignored.
        let Some((key, value)) = item.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" if timestamp.is_some() => {
                return Err(WebhookError::Malformed("more than one timestamp"));
            }
            "t" => timestamp = Some(value),
            "v1" => signatures.push(value),
            // Other schemes (v0 is Stripe's test-mode legacy one) carry no weight.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::Malformed("no timestamp (t=)"))?;
    let seconds = Some(timestamp)
        .filter(|t| !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or(WebhookError::Malformed(
            "the timestamp is not a number of seconds",
        ))?;
    if signatures.is_empty() {
        return Err(WebhookError::Malformed("no v1 signature"));
    }
    if secret.is_empty() {
        return Err(WebhookError::BadSignature);
    }
    // The timestamp is signed as it appears in the header.
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).map_err(|_| WebhookError::BadSignature)?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(payload);
    // `verify_slice` compares in constant time, so timing reveals nothing about how much of a
    // guessed signature was right.
    let matches = signatures
        .iter()
        .filter_map(|s| unhex(s))
        .any(|candidate| mac.clone().verify_slice(&candidate).is_ok());
    if !matches {
        return Err(WebhookError::BadSignature);
    }
    let skew = now.timestamp().saturating_sub(seconds).unsigned_abs();
    if skew > tolerance.as_secs() {
        return Err(WebhookError::Stale);
    }
    Ok(())
}

/// The `Stripe-Signature` header Stripe would send for `payload` at `timestamp`, for tests and
/// tools that play Stripe.
pub fn signature_header(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!("t={timestamp},v1={}", hex(&mac.finalize().into_bytes()))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A verified Stripe event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    /// `evt_…`; Stripe may deliver an event more than once, so de-duplicate on it.
    pub id: String,
    /// When Stripe created the event.
    pub created: Option<DateTime<Utc>>,
    pub livemode: bool,
    pub kind: StripeEventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeEventKind {
    /// `payment_intent.succeeded`: the money was captured.
    PaymentIntentSucceeded(PaymentIntentInfo),
    /// `payment_intent.payment_failed`: an attempt to pay failed.
    PaymentIntentFailed {
        intent: PaymentIntentInfo,
        /// From `last_payment_error`'s `decline_code` or `code`.
        reason: PaymentFailureReason,
        decline_code: Option<String>,
        /// Stripe's customer-facing message.
        message: String,
    },
    /// Any other event type, which Purser does not act on.
    Other { event_type: String },
}

/// The parts of a payment intent Purser needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntentInfo {
    /// `pi_…`, the gateway reference of a captured charge.
    pub id: String,
    pub amount_minor: i64,
    /// Upper case, as Purser writes currencies (Stripe sends lower case).
    pub currency: String,
    /// From `metadata.order_id`; `None` when absent or not a UUID, which means the payment
    /// intent was not made by Purser (other integrations may share the Stripe account).
    pub order_id: Option<OrderId>,
    /// From `metadata.payment_id`, likewise.
    pub payment_id: Option<PaymentId>,
}

impl PaymentIntentInfo {
    /// The amount as money, when the currency is one Purser knows.
    pub fn amount(&self) -> Option<Money> {
        Currency::parse(&self.currency)
            .ok()
            .map(|c| Money::new(self.amount_minor, c))
    }
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    created: Option<i64>,
    #[serde(default)]
    livemode: bool,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct RawIntent {
    id: String,
    amount: i64,
    currency: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
    #[serde(default)]
    last_payment_error: Option<StripeError>,
}

/// Parses a webhook body (verify it first with [`verify_signature`]).
pub fn parse_event(payload: &[u8]) -> Result<StripeEvent, WebhookError> {
    let raw: RawEvent = serde_json::from_slice(payload).map_err(|e| payload_error(&e))?;
    if !raw.id.starts_with("evt_") {
        return Err(WebhookError::Payload(
            "the event id does not start with evt_".into(),
        ));
    }
    let intent = || -> Result<(PaymentIntentInfo, Option<StripeError>), WebhookError> {
        let intent: RawIntent =
            serde_json::from_value(raw.data.object.clone()).map_err(|e| payload_error(&e))?;
        let info = PaymentIntentInfo {
            id: intent.id,
            amount_minor: intent.amount,
            currency: intent.currency.to_ascii_uppercase(),
            order_id: intent.metadata.get("order_id").and_then(|v| v.parse().ok()),
            payment_id: intent
                .metadata
                .get("payment_id")
                .and_then(|v| v.parse().ok()),
        };
        Ok((info, intent.last_payment_error))
    };
    let kind = match raw.event_type.as_str() {
        "payment_intent.succeeded" => StripeEventKind::PaymentIntentSucceeded(intent()?.0),
        "payment_intent.payment_failed" => {
            let (intent, error) = intent()?;
            let error = error.unwrap_or_default();
            StripeEventKind::PaymentIntentFailed {
                intent,
                reason: error.reason(),
                message: error.message_or("The payment failed."),
                decline_code: error.decline_code,
            }
        }
        _ => StripeEventKind::Other {
            event_type: raw.event_type.clone(),
        },
    };
    Ok(StripeEvent {
        id: raw.id,
        created: raw.created.and_then(|s| DateTime::from_timestamp(s, 0)),
        livemode: raw.livemode,
        kind,
    })
}

/// serde's message names the missing or mistyped field; it quotes no input beyond a token.
fn payload_error(e: &serde_json::Error) -> WebhookError {
    WebhookError::Payload(e.to_string().chars().take(200).collect())
}
