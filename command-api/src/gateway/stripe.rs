//! The Stripe adapter: PaymentIntents over HTTPS.
//!
//! A charge is one `POST /v1/payment_intents` with `confirm=true`, so Stripe authorises and
//! captures in one call; a refund is one `POST /v1/refunds`. Both send our idempotency key as
//! Stripe's `Idempotency-Key`, so a retried request can never charge or refund twice.
//!
//! Mapping of answers:
//! - `status: succeeded` → `Captured { reference: <payment intent id> }`;
//! - HTTP 402 (a card error) → `Failed`, with the reason taken from `decline_code` or `code`
//!   (see [`failure_reason`]) and Stripe's customer-facing message;
//! - HTTP 400 about the `payment_method` parameter (for example an unknown `pm_…`) →
//!   `Failed { InvalidPaymentDetails }`;
//! - `status: requires_action` → `Failed { Declined, "authentication required" }`. The card asks
//!   for 3-D Secure, which needs the customer in a browser; a server-side confirm cannot finish
//!   it, so the customer has to use another card. The payment intent stays open at Stripe and
//!   expires there; nothing was captured;
//! - `status: processing` → `GatewayError::Unavailable`: the outcome is not known yet and will
//!   come as a webhook;
//! - no answer in time → `GatewayError::Timeout`; connection failures, HTTP 5xx, 409 (the same
//!   key is in flight) and 429 (rate limited) → `GatewayError::Unavailable`;
//! - HTTP 401/403 and other 4xx → `GatewayError::Rejected`.
//!
//! Retries. Stripe stores the first answer to each idempotency key for 24 hours, HTTP 500s
//! included, and replays it; so retrying helps when no answer arrived at all (timeouts, lost
//! connections, 409, 429), while a stored 500 comes back as it was until the key expires. The
//! `payment_intent.succeeded` / `payment_intent.payment_failed` webhooks (see
//! [`super::stripe_webhook`]) settle such cases.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use purser_domain::payment::PaymentFailureReason;
use reqwest::StatusCode;
use serde::Deserialize;

use super::{
    ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundOutcome, RefundRequest,
};
use purser_api_core::config::{ConfigError, Secret};

/// How to reach Stripe.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// A secret (`sk_…`) or restricted (`rk_…`) API key.
    pub api_key: Secret,
    /// The webhook endpoint's signing secret (`whsec_…`), for
    /// [`super::stripe_webhook::verify_signature`].
    pub webhook_secret: Secret,
    /// `https://api.stripe.com`, or a test double's address; no trailing slash.
    pub base_url: String,
    /// How long one request may take, connecting and reading the answer included.
    pub request_timeout: Duration,
}

impl StripeConfig {
    pub const DEFAULT_BASE_URL: &'static str = "https://api.stripe.com";
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    pub fn new(api_key: Secret, webhook_secret: Secret) -> StripeConfig {
        StripeConfig {
            api_key,
            webhook_secret,
            base_url: StripeConfig::DEFAULT_BASE_URL.to_owned(),
            request_timeout: StripeConfig::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// The Stripe gateway.
#[derive(Clone)]
pub struct StripeGateway {
    http: reqwest::Client,
    config: StripeConfig,
}

impl StripeGateway {
    pub fn new(config: StripeConfig) -> Result<StripeGateway, ConfigError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("purser/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError(format!("cannot build the HTTP client for Stripe: {e}")))?;
        Ok(StripeGateway { http, config })
    }

    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    /// POSTs a form to Stripe and returns the status and body. A missing answer is a
    /// `GatewayError`; any HTTP status, error or not, is returned for the caller to map.
    async fn post(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<(StatusCode, Vec<u8>), GatewayError> {
        let url = format!("{}{path}", self.config.base_url);
        let response = self
            .http
            .post(url)
            .bearer_auth(self.config.api_key.expose())
            .header("Idempotency-Key", idempotency_key)
            .form(form)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        Ok((status, body.to_vec()))
    }
}

/// A request that got no complete answer.
fn transport(e: reqwest::Error) -> GatewayError {
    if e.is_timeout() {
        GatewayError::Timeout
    } else {
        // Without the URL the message is short; it never holds the API key, which travels in
        // a header.
        GatewayError::Unavailable(format!("cannot reach Stripe: {}", e.without_url()))
    }
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: StripeError,
}

/// Stripe's error object (also a payment intent's `last_payment_error`).
#[derive(Debug, Default, Deserialize)]
pub(super) struct StripeError {
    #[serde(default)]
    pub(super) code: Option<String>,
    #[serde(default)]
    pub(super) decline_code: Option<String>,
    #[serde(default)]
    pub(super) message: Option<String>,
    #[serde(default)]
    pub(super) param: Option<String>,
}

impl StripeError {
    pub(super) fn reason(&self) -> PaymentFailureReason {
        failure_reason(self.code.as_deref(), self.decline_code.as_deref())
    }

    /// Stripe's message is written for the customer; it is kept short and never holds card
    /// data.
    pub(super) fn message_or(&self, fallback: &str) -> String {
        match self.message.as_deref().map(str::trim) {
            Some(m) if !m.is_empty() => m.chars().take(300).collect(),
            _ => fallback.to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct PaymentIntent {
    id: String,
    status: String,
    #[serde(default)]
    last_payment_error: Option<StripeError>,
}

#[derive(Debug, Deserialize)]
struct Refund {
    id: String,
    #[serde(default)]
    status: Option<String>,
}

/// Maps Stripe's error `code` and card `decline_code` to a failure reason. The more specific
/// of the two wins: a `card_declined` code with an `insufficient_funds` decline code is
/// insufficient funds.
pub fn failure_reason(code: Option<&str>, decline_code: Option<&str>) -> PaymentFailureReason {
    fn specific(code: &str) -> Option<PaymentFailureReason> {
        match code {
            "insufficient_funds" => Some(PaymentFailureReason::InsufficientFunds),
            "incorrect_cvc" | "expired_card" | "incorrect_number" | "incorrect_zip" => {
                Some(PaymentFailureReason::InvalidPaymentDetails)
            }
            c if c.starts_with("invalid_") => Some(PaymentFailureReason::InvalidPaymentDetails),
            _ => None,
        }
    }
    decline_code
        .and_then(specific)
        .or_else(|| code.and_then(specific))
        .unwrap_or(PaymentFailureReason::Declined)
}

fn error_body(body: &[u8]) -> StripeError {
    serde_json::from_slice::<ErrorEnvelope>(body)
        .map(|e| e.error)
        .unwrap_or_default()
}

/// The statuses every Stripe call maps the same way.
fn http_error(status: StatusCode, body: &[u8]) -> GatewayError {
    let error = error_body(body);
    match status.as_u16() {
        401 | 403 => GatewayError::Rejected(format!(
            "Stripe refused the API key (HTTP {}): {}",
            status.as_u16(),
            error.message_or("no message")
        )),
        409 => GatewayError::Unavailable(
            "Stripe is still handling another request with this idempotency key".into(),
        ),
        429 => GatewayError::Unavailable("Stripe is rate limiting requests".into()),
        500.. => GatewayError::Unavailable(format!("Stripe answered HTTP {}", status.as_u16())),
        _ => GatewayError::Rejected(format!(
            "Stripe answered HTTP {}: {}",
            status.as_u16(),
            error.message_or("no message")
        )),
    }
}

fn unreadable(what: &str) -> GatewayError {
    GatewayError::Unavailable(format!("Stripe's answer to {what} could not be read"))
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        let started = Instant::now();
        let form = [
            ("amount", req.amount.minor.to_string()),
            ("currency", req.amount.currency.code().to_ascii_lowercase()),
            ("payment_method", req.payment_method.as_str().to_owned()),
            ("confirm", "true".to_owned()),
            // Cards only, never a redirect: the charge must finish inside this one call.
            ("automatic_payment_methods[enabled]", "true".to_owned()),
            (
                "automatic_payment_methods[allow_redirects]",
                "never".to_owned(),
            ),
            ("metadata[order_id]", req.order_id.to_string()),
            ("metadata[payment_id]", req.payment_id.to_string()),
        ];
        let result = self
            .post("/v1/payment_intents", &form, &req.idempotency_key)
            .await;
        let outcome = result.and_then(|(status, body)| charge_outcome(status, &body));
        tracing::debug!(
            gateway = "stripe",
            payment.id = %req.payment_id,
            order.id = %req.order_id,
            amount_minor = req.amount.minor,
            outcome = ?outcome.as_ref().map(|o| match o {
                ChargeOutcome::Captured { .. } => "captured",
                ChargeOutcome::Failed { reason, .. } => reason.code(),
            }),
            duration_ms = started.elapsed().as_millis() as u64,
            "stripe charge"
        );
        outcome
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, GatewayError> {
        let form = [
            ("payment_intent", req.gateway_reference.clone()),
            ("amount", req.amount.minor.to_string()),
            ("metadata[payment_id]", req.payment_id.to_string()),
        ];
        let (status, body) = self
            .post("/v1/refunds", &form, &req.idempotency_key)
            .await?;
        if !status.is_success() {
            return Err(http_error(status, &body));
        }
        let refund: Refund = serde_json::from_slice(&body).map_err(|_| unreadable("a refund"))?;
        match refund.status.as_deref() {
            Some("failed" | "canceled") => Err(GatewayError::Rejected(format!(
                "Stripe could not make refund {} (status {})",
                refund.id,
                refund.status.as_deref().unwrap_or_default()
            ))),
            // `pending` and `requires_action` refunds complete later at Stripe; the money is
            // on its way back either way.
            _ => Ok(RefundOutcome {
                reference: refund.id,
            }),
        }
    }
}

fn charge_outcome(status: StatusCode, body: &[u8]) -> Result<ChargeOutcome, GatewayError> {
    if status == StatusCode::PAYMENT_REQUIRED {
        let error = error_body(body);
        return Ok(ChargeOutcome::Failed {
            reason: error.reason(),
            message: error.message_or("Your card was declined."),
        });
    }
    if status == StatusCode::BAD_REQUEST {
        let error = error_body(body);
        if error.param.as_deref() == Some("payment_method") {
            return Ok(ChargeOutcome::Failed {
                reason: PaymentFailureReason::InvalidPaymentDetails,
                message: error.message_or("The payment method is not valid."),
            });
        }
    }
    if !status.is_success() {
        return Err(http_error(status, body));
    }
    let intent: PaymentIntent =
        serde_json::from_slice(body).map_err(|_| unreadable("a payment intent"))?;
    match intent.status.as_str() {
        "succeeded" => Ok(ChargeOutcome::Captured {
            reference: intent.id,
        }),
        "requires_action" => Ok(ChargeOutcome::Failed {
            reason: PaymentFailureReason::Declined,
            message: "authentication required".to_owned(),
        }),
        "requires_payment_method" => {
            let error = intent.last_payment_error.unwrap_or_default();
            Ok(ChargeOutcome::Failed {
                reason: error.reason(),
                message: error.message_or("Your card was declined."),
            })
        }
        "canceled" => Ok(ChargeOutcome::Failed {
            reason: PaymentFailureReason::Declined,
            message: "The payment was canceled.".to_owned(),
        }),
        "processing" => Err(GatewayError::Unavailable(format!(
            "Stripe is still processing payment intent {}; its webhook will report the outcome",
            intent.id
        ))),
        other => Err(GatewayError::Rejected(format!(
            "payment intent {} is in the unexpected status {:?}",
            intent.id,
            other.chars().take(40).collect::<String>()
        ))),
    }
}
