//! The payment gateway port and its adapters.
//!
//! The checkout runner charges and refunds through [`PaymentGateway`] and turns the answers into
//! payment commands. Two adapters implement it:
//! - [`SimulatedGateway`], the default: deterministic, driven by Stripe's published test cards,
//!   and keeping its books in Postgres (schema `gateway_sim`) so that idempotency behaves like a
//!   real gateway's and tests can count captures;
//! - [`StripeGateway`], the real one: Stripe PaymentIntents over HTTPS. Stripe's webhooks are
//!   verified and parsed by the pure functions in [`stripe_webhook`].
//!
//! [`GatewayConfig::from_lookup`] reads the choice from the environment and [`build`] assembles
//! the adapter.
//!
//! Card data. Requests carry a [`PaymentMethod`], which is a gateway token (`pm_…`) and never a
//! card number, so nothing here can log or return a card number.

mod config;
pub mod simulated;
pub mod stripe;
pub mod stripe_webhook;

use std::sync::Arc;

use async_trait::async_trait;
use purser_domain::payment::{PaymentFailureReason, PaymentMethod};
use purser_domain::{Money, OrderId, PaymentId};
use sqlx::PgPool;

pub use config::GatewayConfig;
use purser_api_core::config::ConfigError;
pub use simulated::{SimulatedGateway, SimulatedGatewayConfig};
pub use stripe::{StripeConfig, StripeGateway};

/// A payment gateway: charges and refunds, each idempotent on its key.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// A short name for logs and metrics (`simulated`, `stripe`).
    fn name(&self) -> &'static str;

    /// Charges (authorise + capture) `amount` with `payment_method`. Must be idempotent on
    /// `idempotency_key`: the same key always returns the first outcome and never charges twice.
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeOutcome, GatewayError>;

    /// Refunds part or all of a captured charge; idempotent on `idempotency_key`.
    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, GatewayError>;
}

/// One charge of one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount: Money,
    pub payment_method: PaymentMethod,
    /// At most 255 characters (Stripe's limit, and the domain's).
    pub idempotency_key: String,
}

/// What the gateway decided about a charge. A decline is an outcome, not an error: the charge
/// is over and retrying it with the same key gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The money was taken; `reference` is the gateway's id for the charge, which refunds use.
    Captured { reference: String },
    /// The charge was refused; `message` is fit to show the customer.
    Failed {
        reason: PaymentFailureReason,
        message: String,
    },
}

/// A refund of part or all of a captured charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub payment_id: PaymentId,
    /// The `reference` of the [`ChargeOutcome::Captured`] being refunded.
    pub gateway_reference: String,
    pub amount: Money,
    pub idempotency_key: String,
}

/// A refund the gateway accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOutcome {
    /// The gateway's id for the refund.
    pub reference: String,
}

/// The gateway could not give an answer, or refused the request itself.
///
/// Messages never contain card data or secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No answer in time. The charge may or may not have happened; retry with the same key.
    #[error("the payment gateway did not answer in time")]
    Timeout,
    /// The gateway could not be reached or failed (connection refused, HTTP 5xx, rate limit).
    /// Retry with the same key.
    #[error("the payment gateway is unavailable: {0}")]
    Unavailable(String),
    /// The gateway refused the request itself, for example a refund of an unknown charge, a
    /// refund beyond what was captured, an idempotency key reused for a different request or
    /// a rejected API key. Retrying will not help.
    #[error("the payment gateway rejected the request: {0}")]
    Rejected(String),
}

impl GatewayError {
    /// Whether the same request, with the same idempotency key, may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, GatewayError::Timeout | GatewayError::Unavailable(_))
    }
}

/// Builds the configured gateway. The pool is used by the simulated gateway only.
///
/// Fails only when the HTTP client for Stripe cannot be built (its TLS setup failed).
pub fn build(config: GatewayConfig, pool: PgPool) -> Result<Arc<dyn PaymentGateway>, ConfigError> {
    Ok(match config {
        GatewayConfig::Simulated(config) => Arc::new(SimulatedGateway::new(pool, config)),
        GatewayConfig::Stripe(config) => Arc::new(StripeGateway::new(config)?),
    })
}

/// Lower-case hex, for references and signatures.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}
