//! Stripe webhooks: verified `payment_intent.succeeded` / `payment_intent.payment_failed`
//! events become payment commands.
//!
//! Verification (signature and timestamp tolerance) happens before anything is read; a forged
//! or stale delivery changes nothing and is answered 400. A verified event's commands carry a
//! command id derived from Stripe's event id, so a duplicated delivery appends nothing; and
//! the payment aggregate treats a capture it already has as done, so the webhook and the
//! synchronous charge response may arrive in either order.

use chrono::{DateTime, Utc};
use purser_domain::payment::{Payment, PaymentCommand};
use purser_domain::{DomainError, PaymentId};

use crate::bus::{CommandBus, CommandError};
use crate::context::CommandContext;
use crate::gateway::stripe_webhook::{self, StripeEventKind, WebhookError};

/// What a delivered webhook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Recorded on the payment (or found already recorded).
    Applied { payment_id: PaymentId },
    /// Verified, but not about a Purser payment or not an event Purser acts on.
    Ignored { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookFailure {
    /// Refuse with 400: forged, stale or unreadable.
    #[error(transparent)]
    Refused(#[from] WebhookError),
    /// Our side failed; answer 503 so Stripe retries later.
    #[error("{0}")]
    Unavailable(String),
}

pub async fn handle_stripe(
    bus: &CommandBus,
    payload: &[u8],
    signature_header: &str,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<WebhookOutcome, WebhookFailure> {
    stripe_webhook::verify_signature(
        payload,
        signature_header,
        secret,
        now,
        stripe_webhook::DEFAULT_TOLERANCE,
    )?;
    let event = stripe_webhook::parse_event(payload)?;
    let (intent, command) = match event.kind {
        StripeEventKind::PaymentIntentSucceeded(intent) => {
            let cmd = PaymentCommand::Capture {
                gateway_reference: intent.id.clone(),
                now,
            };
            (intent, cmd)
        }
        StripeEventKind::PaymentIntentFailed {
            intent,
            reason,
            message,
            ..
        } => {
            let message: String = message.chars().take(500).collect();
            (
                intent,
                PaymentCommand::Fail {
                    reason,
                    message,
                    now,
                },
            )
        }
        StripeEventKind::Other { event_type } => {
            return Ok(WebhookOutcome::Ignored {
                reason: format!("{event_type} is not acted on"),
            });
        }
    };
    let Some(payment_id) = intent.payment_id else {
        return Ok(WebhookOutcome::Ignored {
            reason: "the payment intent was not created by Purser".into(),
        });
    };
    let mut ctx = CommandContext::system("stripe-webhook");
    ctx.command_id = Some(purser_domain::derive_id(&["stripe-webhook", &event.id]));
    match bus.execute::<Payment>(&payment_id, &ctx, command).await {
        Ok(_) => Ok(WebhookOutcome::Applied { payment_id }),
        // The payment already reached another end (a late failure after a capture, say):
        // acknowledge, so Stripe stops retrying; the payment's own history stands.
        Err(CommandError::Domain(e)) => Ok(WebhookOutcome::Ignored {
            reason: format!("{}: {e}", e.code()),
        }),
        Err(e) => Err(WebhookFailure::Unavailable(e.to_string())),
    }
}
