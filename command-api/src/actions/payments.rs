//! Actions on the payment: creating it, and the two that call the gateway first (charge and
//! refund). Gateway calls are idempotent on their keys, so a call repeated after a crash
//! charges or refunds once.

use crate::trace::TraceKind;
use chrono::Utc;
use purser_domain::payment::{
    Payment, PaymentCommand, PaymentFailureReason, PaymentMethod, PaymentStatus,
};
use purser_domain::{Money, OrderId, PaymentId};

use super::{ActionExecutor, Outcome, Step};
use crate::gateway::{ChargeOutcome, ChargeRequest, GatewayError, RefundRequest};

impl ActionExecutor {
    pub(super) async fn create_payment(
        &self,
        step: &Step<'_>,
        payment_id: PaymentId,
        order_id: OrderId,
        amount: Money,
        payment_method: PaymentMethod,
        idempotency_key: String,
    ) -> Outcome {
        let cmd = PaymentCommand::CreateIntent {
            payment_id,
            order_id,
            amount,
            payment_method,
            idempotency_key,
            now: step.now,
        };
        self.send::<Payment>(step, &payment_id, cmd).await
    }

    /// Charges a payment through the gateway and records the result on the payment.
    pub(super) async fn charge(&self, step: &Step<'_>, payment_id: PaymentId) -> Outcome {
        let job = step.job;
        let (state, version, _) = match self.bus.load::<Payment>(&payment_id).await {
            Ok(loaded) => loaded,
            Err(e) => return self.store_retry(job, e),
        };
        if version.is_none() {
            return Outcome::Rejected {
                code: "PAYMENT_NOT_FOUND".into(),
                message: format!("no payment {payment_id}"),
            };
        }
        if state.status != PaymentStatus::RequiresCapture {
            // Already captured, failed or refunded: the charge happened (or never will).
            return Outcome::Done;
        }
        let (Some(amount), Some(method)) = (state.amount, state.payment_method.clone()) else {
            return Outcome::Rejected {
                code: "PAYMENT_INCOMPLETE".into(),
                message: "payment has no amount".into(),
            };
        };
        let request = ChargeRequest {
            payment_id,
            order_id: state.order_id,
            amount,
            payment_method: method,
            idempotency_key: if state.idempotency_key.is_empty() {
                payment_id.to_string()
            } else {
                state.idempotency_key.clone()
            },
        };
        let now = Utc::now();
        let command = match self.gateway.charge(&request).await {
            Ok(ChargeOutcome::Captured { reference }) => PaymentCommand::Capture {
                gateway_reference: reference,
                now,
            },
            Ok(ChargeOutcome::Failed { reason, message }) => PaymentCommand::Fail {
                reason,
                message,
                now,
            },
            Err(e) if e.is_retryable() && job.attempts < self.policy.max_charge_attempts => {
                return self.retry_charge(step, payment_id, e, now).await;
            }
            Err(e @ (GatewayError::Timeout | GatewayError::Unavailable(_))) => {
                PaymentCommand::Fail {
                    reason: PaymentFailureReason::GatewayTimeout,
                    message: format!("gave up after {} attempts: {e}", job.attempts),
                    now,
                }
            }
            Err(e) => PaymentCommand::Fail {
                reason: PaymentFailureReason::Declined,
                message: e.to_string(),
                now,
            },
        };
        self.record_charge(step, payment_id, amount, command).await
    }

    /// A charge that failed in a way worth retrying, with attempts left: the attempt is
    /// recorded on the payment and the job tried again later.
    async fn retry_charge(
        &self,
        step: &Step<'_>,
        payment_id: PaymentId,
        e: GatewayError,
        now: chrono::DateTime<Utc>,
    ) -> Outcome {
        let job = step.job;
        let after = self.policy.backoff(job.attempts);
        let retry_at = now + chrono::Duration::from_std(after).unwrap_or_default();
        // Each attempt is its own command, so each is recorded once.
        let mut attempt_ctx = step.ctx.clone();
        attempt_ctx.command_id = Some(purser_domain::derive_id(&[
            "attempt",
            &job.id.to_string(),
            &job.attempts.to_string(),
        ]));
        let record = PaymentCommand::RecordAttempt {
            attempt: job.attempts,
            error: e.to_string(),
            retry_at,
            now,
        };
        self.trace(
            job,
            TraceKind::PaymentProcessing,
            Err(format!("attempt {} failed, will retry: {e}", job.attempts)),
        );
        if let Err(err) = self
            .bus
            .execute::<Payment>(&payment_id, &attempt_ctx, record)
            .await
        {
            tracing::warn!(payment = %payment_id, error = %err, "could not record a failed charge attempt");
        }
        Outcome::Retry {
            after,
            error: e.to_string(),
        }
    }

    /// Records a charge's capture or failure on the payment, and traces and counts it.
    async fn record_charge(
        &self,
        step: &Step<'_>,
        payment_id: PaymentId,
        amount: Money,
        command: PaymentCommand,
    ) -> Outcome {
        let counted = match &command {
            PaymentCommand::Capture { .. } => Some(("captured", None)),
            PaymentCommand::Fail { reason, .. } => Some(("failed", Some(reason.code()))),
            _ => None,
        };
        let r = self
            .bus
            .execute::<Payment>(&payment_id, &step.ctx, command)
            .await;
        if let (Some((outcome, reason)), Ok(_)) = (counted, &r) {
            let result = if outcome == "captured" {
                Ok(())
            } else {
                Err(format!("payment failed: {}", reason.unwrap_or("unknown")))
            };
            self.trace(step.job, TraceKind::PaymentProcessing, result);
        }
        // Business counters, once per payment outcome (a repeat appends nothing).
        if let (Some((outcome, reason)), Ok(done)) = (counted, &r)
            && !done.events.is_empty()
        {
            metrics::counter!("purser_payments_total", "outcome" => outcome).increment(1);
            match reason {
                Some(reason) => metrics::counter!("purser_payment_failures_total", "reason" => reason).increment(1),
                None => metrics::counter!("purser_revenue_minor_total", "currency" => amount.currency.code().to_owned())
                    .increment(amount.minor.max(0) as u64),
            }
        }
        self.settle(step.job, r)
    }

    /// Refunds through the gateway, then records the refund on the payment.
    pub(super) async fn refund(
        &self,
        step: &Step<'_>,
        payment_id: PaymentId,
        amount: Money,
        reason: String,
        refund_reference: String,
    ) -> Outcome {
        let job = step.job;
        let (state, _, _) = match self.bus.load::<Payment>(&payment_id).await {
            Ok(loaded) => loaded,
            Err(e) => return self.store_retry(job, e),
        };
        if state.refund_references.contains(&refund_reference) {
            return Outcome::Done;
        }
        let Some(gateway_reference) = state.gateway_reference.clone() else {
            return Outcome::Rejected {
                code: "NOT_CAPTURED".into(),
                message: "nothing was captured to refund".into(),
            };
        };
        let request = RefundRequest {
            payment_id,
            gateway_reference,
            amount,
            idempotency_key: refund_reference.clone(),
        };
        match self.gateway.refund(&request).await {
            Ok(_) => {}
            Err(e) if e.is_retryable() => {
                return Outcome::Retry {
                    after: self.policy.backoff(job.attempts),
                    error: e.to_string(),
                };
            }
            Err(e) => {
                return Outcome::Rejected {
                    code: "REFUND_REFUSED".into(),
                    message: e.to_string(),
                };
            }
        }
        let cmd = PaymentCommand::Refund {
            amount,
            reason,
            refund_reference,
            now: Utc::now(),
        };
        self.settle(
            job,
            self.bus
                .execute::<Payment>(&payment_id, &step.ctx, cmd)
                .await,
        )
    }
}
