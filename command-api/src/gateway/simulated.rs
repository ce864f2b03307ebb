//! The simulated payment gateway: the default, deterministic, and modelled on Stripe's test mode.
//!
//! # Test cards
//!
//! The outcome depends only on the payment method. Stripe's test tokens are recognised by name
//! (`pm_card_…`, and the same names as `tok_…`); a test card number entered at checkout reaches
//! the gateway as `pm_card_<last4>_<brand>` (see `PaymentMethod::parse`), and is recognised by
//! its last four digits whatever its brand.
//!
//! | token | card number | outcome |
//! |---|---|---|
//! | `pm_card_visa` (and every card not listed here) | 4242 4242 4242 4242 | captured |
//! | `pm_card_chargeDeclinedInsufficientFunds` | 4000 0000 0000 9995 | failed: insufficient funds |
//! | `pm_card_chargeDeclined` | 4000 0000 0000 0002 | failed: declined |
//! | `pm_card_chargeDeclinedLostCard` | 4000 0000 0000 9987 | failed: declined |
//! | `pm_card_chargeDeclinedStolenCard` | 4000 0000 0000 9979 | failed: declined |
//! | `pm_card_chargeDeclinedFraudulent` | 4100 0000 0000 0019 | failed: declined |
//! | `pm_card_chargeDeclinedIncorrectCvc` | 4000 0000 0000 0127 | failed: invalid payment details |
//! | `pm_card_chargeDeclinedExpiredCard` | 4000 0000 0000 0069 | failed: invalid payment details |
//! | `pm_card_timeout`, `pm_card_chargeDeclinedProcessingError` | 4000 0000 0000 0119 | waits `timeout_delay`, then `GatewayError::Timeout`, on every attempt |
//! | `pm_card_timeoutThenSucceed` | 4000 0000 0000 7775 | waits and times out on the first `timeouts_before_success` attempts under one idempotency key, then captured |
//!
//! The timeout cards are Purser's own. Stripe uses 4000 0000 0000 0119 for a `processing_error`,
//! a transient failure, which is the nearest thing it has to a gateway that does not answer;
//! 4000 0000 0000 7775 is not a Stripe test card.
//!
//! # Bookkeeping
//!
//! Charges and refunds are kept in Postgres (`gateway_sim.charges`, `gateway_sim.refunds`),
//! one row per idempotency key, written with a single `insert … on conflict` statement, so
//! concurrent retries of one key meet at the same row: the first outcome is returned to every
//! one of them and the money is taken once. Reusing a key for a different request is rejected,
//! as Stripe does. Tests count captures in `gateway_sim.charges`.

use std::time::Duration;

use async_trait::async_trait;
use purser_domain::payment::{PaymentFailureReason, PaymentMethod};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::{
    ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundOutcome, RefundRequest, hex,
};

/// How the simulated gateway's timeout cards behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedGatewayConfig {
    /// How long a timing-out charge waits before it returns `GatewayError::Timeout`, standing
    /// in for the client-side timeout of a real gateway.
    pub timeout_delay: Duration,
    /// How many attempts under one idempotency key the `pm_card_timeoutThenSucceed` card times
    /// out before it is captured. `None`: it never succeeds, like `pm_card_timeout`.
    pub timeouts_before_success: Option<u32>,
}

impl Default for SimulatedGatewayConfig {
    fn default() -> Self {
        SimulatedGatewayConfig {
            timeout_delay: Duration::from_millis(2_000),
            timeouts_before_success: Some(2),
        }
    }
}

/// The deterministic gateway; see the module documentation for its test cards.
#[derive(Clone)]
pub struct SimulatedGateway {
    pool: PgPool,
    config: SimulatedGatewayConfig,
}

impl SimulatedGateway {
    pub fn new(pool: PgPool, config: SimulatedGatewayConfig) -> SimulatedGateway {
        SimulatedGateway { pool, config }
    }

    /// The charge reference for an idempotency key: `sim_ch_<hex>`.
    pub fn charge_reference(idempotency_key: &str) -> String {
        format!("sim_ch_{}", digest("charge", idempotency_key))
    }

    /// The refund reference for an idempotency key: `sim_re_<hex>`.
    pub fn refund_reference(idempotency_key: &str) -> String {
        format!("sim_re_{}", digest("refund", idempotency_key))
    }

    /// How many attempts under one key time out before the outcome is decided.
    fn leading_timeouts(&self, card: Card) -> i32 {
        match card {
            Card::Timeout => i32::MAX,
            Card::TimeoutThenSucceed => match self.config.timeouts_before_success {
                Some(n) => i32::try_from(n).unwrap_or(i32::MAX),
                None => i32::MAX,
            },
            Card::Capture | Card::Fail(..) => 0,
        }
    }
}

/// What a payment method stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    Capture,
    Fail(PaymentFailureReason, &'static str),
    Timeout,
    TimeoutThenSucceed,
}

const INSUFFICIENT_FUNDS: Card = Card::Fail(
    PaymentFailureReason::InsufficientFunds,
    "Your card has insufficient funds.",
);
const DECLINED: Card = Card::Fail(PaymentFailureReason::Declined, "Your card was declined.");
const INCORRECT_CVC: Card = Card::Fail(
    PaymentFailureReason::InvalidPaymentDetails,
    "Your card's security code is incorrect.",
);
const EXPIRED: Card = Card::Fail(
    PaymentFailureReason::InvalidPaymentDetails,
    "Your card has expired.",
);

fn card(method: &PaymentMethod) -> Card {
    let token = method.as_str();
    // Stripe names its test tokens alike as `pm_card_<name>` and `tok_<name>`.
    let name = token
        .strip_prefix("pm_card_")
        .or_else(|| token.strip_prefix("tok_"));
    let Some(name) = name else {
        return Card::Capture;
    };
    // A card number entered at checkout became `pm_card_<last4>_<brand>`.
    let last4 = name
        .split_once('_')
        .map(|(digits, _)| digits)
        .filter(|d| d.len() == 4 && d.bytes().all(|b| b.is_ascii_digit()));
    match (name, last4) {
        ("chargeDeclinedInsufficientFunds", _) | (_, Some("9995")) => INSUFFICIENT_FUNDS,
        ("chargeDeclined", _)
        | ("chargeDeclinedLostCard", _)
        | ("chargeDeclinedStolenCard", _)
        | ("chargeDeclinedFraudulent", _)
        | (_, Some("0002" | "9987" | "9979" | "0019")) => DECLINED,
        ("chargeDeclinedIncorrectCvc", _) | (_, Some("0127")) => INCORRECT_CVC,
        ("chargeDeclinedExpiredCard", _) | (_, Some("0069")) => EXPIRED,
        ("timeout" | "chargeDeclinedProcessingError", _) | (_, Some("0119")) => Card::Timeout,
        ("timeoutThenSucceed", _) | (_, Some("7775")) => Card::TimeoutThenSucceed,
        _ => Card::Capture,
    }
}

/// The first 12 bytes of SHA-256 over a domain tag and the key, in hex.
fn digest(tag: &str, key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"purser-gateway-sim\x1f");
    hasher.update(tag.as_bytes());
    hasher.update(b"\x1f");
    hasher.update(key.as_bytes());
    hex(&hasher.finalize()[..12])
}

fn check_key(key: &str) -> Result<(), GatewayError> {
    if key.is_empty() || key.len() > 255 {
        return Err(GatewayError::Rejected(
            "the idempotency key must be 1 to 255 bytes".into(),
        ));
    }
    Ok(())
}

fn storage(e: sqlx::Error) -> GatewayError {
    GatewayError::Unavailable(format!("simulated gateway storage failed: {e}"))
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        check_key(&req.idempotency_key)?;
        if req.amount.minor < 0 {
            return Err(GatewayError::Rejected(
                "the amount must not be negative".into(),
            ));
        }
        let card = card(&req.payment_method);
        let (final_outcome, final_message) = match card {
            Card::Fail(reason, message) => (reason.code(), Some(message)),
            Card::Capture | Card::Timeout | Card::TimeoutThenSucceed => ("captured", None),
        };
        // One statement decides and records, so concurrent requests under one key serialise on
        // the row: the first inserts it, each later one (including those that waited for the
        // first to commit) counts an attempt and reads what is there. While a key is within
        // its leading timeouts the outcome stays 'timeout'; the attempt after the last of them
        // writes the final outcome, which nothing changes afterwards. The `where` makes a key
        // reused for a different charge return no row at all.
        let row: Option<(String, Option<String>, String)> = sqlx::query_as(
            "insert into gateway_sim.charges as c
                 (idempotency_key, payment_id, order_id, amount_minor, currency, payment_method,
                  outcome, message, reference, attempts)
             values ($1, $2, $3, $4, $5, $6,
                     case when $7 > 0 then 'timeout' else $8 end,
                     case when $7 > 0 then null else $9 end,
                     $10, 1)
             on conflict (idempotency_key) do update set
                 attempts = c.attempts + 1,
                 outcome = case when c.outcome = 'timeout' and c.attempts >= $7
                                then $8 else c.outcome end,
                 message = case when c.outcome = 'timeout' and c.attempts >= $7
                                then $9 else c.message end,
                 updated_at = now()
             where c.payment_id = excluded.payment_id
               and c.order_id = excluded.order_id
               and c.amount_minor = excluded.amount_minor
               and c.currency = excluded.currency
               and c.payment_method = excluded.payment_method
             returning outcome, message, reference",
        )
        .bind(&req.idempotency_key)
        .bind(req.payment_id.as_uuid())
        .bind(req.order_id.as_uuid())
        .bind(req.amount.minor)
        .bind(req.amount.currency.code())
        .bind(req.payment_method.as_str())
        .bind(self.leading_timeouts(card))
        .bind(final_outcome)
        .bind(final_message)
        .bind(SimulatedGateway::charge_reference(&req.idempotency_key))
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        let Some((outcome, message, reference)) = row else {
            return Err(GatewayError::Rejected(
                "the idempotency key was already used for a different charge".into(),
            ));
        };
        let reason = match outcome.as_str() {
            "captured" => return Ok(ChargeOutcome::Captured { reference }),
            "timeout" => {
                // A real gateway that does not answer keeps the caller waiting until its own
                // timeout fires; the attempt is already recorded.
                tokio::time::sleep(self.config.timeout_delay).await;
                return Err(GatewayError::Timeout);
            }
            "insufficient_funds" => PaymentFailureReason::InsufficientFunds,
            "invalid_payment_details" => PaymentFailureReason::InvalidPaymentDetails,
            "declined" => PaymentFailureReason::Declined,
            other => {
                return Err(GatewayError::Unavailable(format!(
                    "simulated gateway storage holds an unknown outcome {other:?}"
                )));
            }
        };
        let message = message.unwrap_or_else(|| "Your card was declined.".to_owned());
        Ok(ChargeOutcome::Failed { reason, message })
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundOutcome, GatewayError> {
        check_key(&req.idempotency_key)?;
        if req.amount.minor <= 0 {
            return Err(GatewayError::Rejected(
                "a refund amount must be positive".into(),
            ));
        }
        let mut tx = self.pool.begin().await.map_err(storage)?;
        // Locking the charge serialises every refund of it, so two refunds with different keys
        // cannot together exceed the captured amount, and a retry under the same key waits for
        // the first to commit and then finds its row.
        let charge: Option<(i64, String, String)> = sqlx::query_as(
            "select amount_minor, currency, outcome from gateway_sim.charges
             where reference = $1 for update",
        )
        .bind(&req.gateway_reference)
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage)?;
        let Some((captured_minor, currency, "captured")) = charge
            .as_ref()
            .map(|(m, c, o)| (*m, c.as_str(), o.as_str()))
        else {
            return Err(GatewayError::Rejected(format!(
                "there is no captured charge {:?}",
                req.gateway_reference.chars().take(64).collect::<String>()
            )));
        };
        let existing: Option<(String, i64, String, String)> = sqlx::query_as(
            "select charge_reference, amount_minor, currency, reference from gateway_sim.refunds
             where idempotency_key = $1",
        )
        .bind(&req.idempotency_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage)?;
        if let Some((charge_reference, amount_minor, currency, reference)) = existing {
            let same = charge_reference == req.gateway_reference
                && amount_minor == req.amount.minor
                && currency == req.amount.currency.code();
            return if same {
                Ok(RefundOutcome { reference })
            } else {
                Err(GatewayError::Rejected(
                    "the idempotency key was already used for a different refund".into(),
                ))
            };
        }
        if currency != req.amount.currency.code() {
            return Err(GatewayError::Rejected(format!(
                "the charge is in {currency}, the refund in {}",
                req.amount.currency
            )));
        }
        let refunded: i64 = sqlx::query_scalar(
            "select coalesce(sum(amount_minor), 0)::bigint from gateway_sim.refunds
             where charge_reference = $1",
        )
        .bind(&req.gateway_reference)
        .fetch_one(&mut *tx)
        .await
        .map_err(storage)?;
        let refundable = captured_minor - refunded;
        if req.amount.minor > refundable {
            return Err(GatewayError::Rejected(format!(
                "only {refundable} minor units of the charge can still be refunded"
            )));
        }
        let reference = SimulatedGateway::refund_reference(&req.idempotency_key);
        // A key first used for another charge's refund, committed after the lookup above,
        // conflicts here; `do nothing` turns that into no row instead of an error.
        let inserted: Option<String> = sqlx::query_scalar(
            "insert into gateway_sim.refunds
                 (idempotency_key, charge_reference, amount_minor, currency, reference)
             values ($1, $2, $3, $4, $5)
             on conflict (idempotency_key) do nothing
             returning reference",
        )
        .bind(&req.idempotency_key)
        .bind(&req.gateway_reference)
        .bind(req.amount.minor)
        .bind(req.amount.currency.code())
        .bind(&reference)
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        match inserted {
            Some(reference) => Ok(RefundOutcome { reference }),
            None => Err(GatewayError::Rejected(
                "the idempotency key was already used for a different refund".into(),
            )),
        }
    }
}
