//! Carries out process-manager actions: each becomes one command on one aggregate (and, for
//! charges and refunds, one gateway call first).
//!
//! Every command carries the outbox row's id as its command id, so its event ids are derived
//! from it and sending it again (after a crash, or a lost lease) appends nothing. Gateway
//! calls are idempotent on their keys too, so a charge retried after a crash is charged once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use purser_domain::checkout::CheckoutAction;
use purser_domain::customer::{Customer, CustomerCommand};
use purser_domain::inventory::{AdjustmentReason, Inventory, InventoryCommand};
use purser_domain::license::{
    License, LicenseCommand, LicensePayload, LicensePool, LicensePoolCommand,
};
use purser_domain::notification::{Notification, NotificationCommand};
use purser_domain::order::{CancelledBy, Order, OrderCommand};
use purser_domain::payment::{Payment, PaymentCommand, PaymentFailureReason, PaymentStatus};
use purser_domain::{Aggregate, DomainError, Sku};
use purser_event_store::{StoreError, StreamName};
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Executed};
use crate::context::CommandContext;
use crate::gateway::{ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest};
use crate::licensing::LicenseSigner;

/// What became of one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The target refused (a lost race, typically); nothing to retry.
    Rejected {
        code: String,
        message: String,
    },
    /// Try again after `after`.
    Retry {
        after: Duration,
        error: String,
    },
}

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Gateway timeouts tolerated per charge before the payment is failed.
    pub max_charge_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_charge_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff for the `attempt`-th try (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        (self.base_backoff * factor).min(self.max_backoff)
    }
}

/// One outbox row to carry out.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    pub key: String,
    pub command: serde_json::Value,
    pub causation_id: Uuid,
    pub correlation_id: Option<Uuid>,
    /// How many times this row has been claimed, this time included.
    pub attempts: u32,
}

pub struct ActionExecutor {
    bus: CommandBus,
    gateway: Arc<dyn PaymentGateway>,
    signer: Option<LicenseSigner>,
    policy: RetryPolicy,
    trace: Option<crate::trace::TraceLog>,
}

fn stream(name: String) -> StreamName {
    StreamName::new(name).expect("ids and SKUs make valid stream names")
}

fn sku_stream(sku: &Sku) -> StreamName {
    stream(sku.inventory_stream())
}

impl ActionExecutor {
    pub fn new(
        bus: CommandBus,
        gateway: Arc<dyn PaymentGateway>,
        signer: Option<LicenseSigner>,
        policy: RetryPolicy,
    ) -> ActionExecutor {
        ActionExecutor {
            bus,
            gateway,
            signer,
            policy,
            trace: None,
        }
    }

    /// Records payment processing and fulfilment as trace events (seed 003).
    pub fn with_trace(mut self, trace: crate::trace::TraceLog) -> ActionExecutor {
        self.trace = Some(trace);
        self
    }

    fn trace(&self, job: &Job, kind: crate::trace::TraceKind, outcome: Result<(), String>) {
        if let Some(t) = &self.trace {
            t.outcome(
                kind,
                outcome,
                job.correlation_id,
                Some("system:checkout".into()),
                Some(job.key.clone()),
            );
        }
    }

    fn context(&self, job: &Job) -> CommandContext {
        CommandContext {
            correlation_id: job.correlation_id.unwrap_or_else(Uuid::now_v7),
            causation_id: Some(job.causation_id),
            actor: "system:checkout".into(),
            idempotency_key: None,
            trace_id: None,
            command_id: Some(job.id),
        }
    }

    /// Turns a command's result into an outcome.
    fn settle<A: Aggregate>(
        &self,
        job: &Job,
        r: Result<Executed<A>, CommandError<A::Error>>,
    ) -> Outcome {
        match r {
            Ok(_) => Outcome::Done,
            Err(CommandError::Domain(e)) => Outcome::Rejected {
                code: e.code().to_owned(),
                message: e.to_string(),
            },
            Err(CommandError::Conflict { stream }) => Outcome::Retry {
                after: self.policy.backoff(job.attempts),
                error: format!("contention on {stream}"),
            },
            Err(CommandError::Store(e)) => self.store_retry(job, e),
        }
    }

    fn store_retry(&self, job: &Job, e: StoreError) -> Outcome {
        if !matches!(e, StoreError::Unavailable(_)) {
            tracing::error!(job = %job.id, error = %e, "event store failure while sending a command");
        }
        Outcome::Retry {
            after: self.policy.backoff(job.attempts),
            error: e.to_string(),
        }
    }

    pub async fn execute(&self, job: &Job) -> Outcome {
        let started = std::time::Instant::now();
        // A process-manager step: the command the outbox holds, under the correlation id of
        // the request that started the process and the id of the event that caused the step.
        let span = tracing::info_span!(
            "process_step",
            key = %job.key,
            correlation_id = job.correlation_id.map(tracing::field::display),
            causation_id = %job.causation_id,
            attempt = job.attempts,
        );
        let (label, outcome) = tracing::Instrument::instrument(self.execute_inner(job), span).await;
        use crate::trace::TraceKind;
        // Payment processing is traced inside `charge`, where the payment's outcome is known.
        let kind = match label {
            "confirm_order" | "fulfill_order" => Some(TraceKind::Fulfilment),
            _ => None,
        };
        if let Some(kind) = kind {
            match &outcome {
                Outcome::Done => self.trace(job, kind, Ok(())),
                Outcome::Rejected { code, message } => {
                    self.trace(job, kind, Err(format!("{code}: {message}")))
                }
                Outcome::Retry { error, .. } => {
                    self.trace(job, kind, Err(format!("will retry: {error}")))
                }
            }
        }
        let result = match &outcome {
            Outcome::Done => "done",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Retry { .. } => "retry",
        };
        metrics::counter!("purser_pm_actions_total", "action" => label, "outcome" => result)
            .increment(1);
        metrics::histogram!("purser_pm_action_duration_seconds", "action" => label)
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    /// Counts an order reaching an outcome, once (only when the command appended).
    fn count_order<A: Aggregate>(
        r: &Result<Executed<A>, CommandError<A::Error>>,
        outcome: &'static str,
    ) {
        if r.as_ref().is_ok_and(|e| !e.events.is_empty()) {
            metrics::counter!("purser_orders_total", "outcome" => outcome).increment(1);
        }
    }

    async fn execute_inner(&self, job: &Job) -> (&'static str, Outcome) {
        let action: CheckoutAction = match serde_json::from_value(job.command.clone()) {
            Ok(a) => a,
            Err(e) => {
                let outcome = Outcome::Rejected {
                    code: "UNREADABLE_COMMAND".into(),
                    message: e.to_string(),
                };
                return ("unreadable", outcome);
            }
        };
        let label = action_label(&action);
        let ctx = self.context(job);
        let now = Utc::now();
        let bus = &self.bus;
        let outcome = match action {
            CheckoutAction::ReserveStock {
                sku,
                reservation_id,
                order_id,
                qty,
                expires_at,
            } => {
                let s = sku_stream(&sku);
                let cmd = InventoryCommand::Reserve {
                    sku,
                    reservation_id,
                    order_id,
                    qty,
                    expires_at,
                    now,
                };
                self.settle(job, bus.execute::<Inventory>(&s, &ctx, cmd).await)
            }
            CheckoutAction::ReleaseReservation {
                sku,
                reservation_id,
                reason,
            } => {
                let cmd = InventoryCommand::Release {
                    reservation_id,
                    reason,
                    now,
                };
                self.settle(
                    job,
                    bus.execute::<Inventory>(&sku_stream(&sku), &ctx, cmd).await,
                )
            }
            CheckoutAction::ConfirmReservation {
                sku,
                reservation_id,
            } => {
                let cmd = InventoryCommand::Confirm {
                    reservation_id,
                    now,
                };
                self.settle(
                    job,
                    bus.execute::<Inventory>(&sku_stream(&sku), &ctx, cmd).await,
                )
            }
            CheckoutAction::RestockConfirmed { sku, qty, order_id } => {
                let s = sku_stream(&sku);
                let cmd = InventoryCommand::Adjust {
                    sku,
                    delta: i64::from(qty.get()),
                    reason: AdjustmentReason::OrderCancelled,
                    note: format!("order {order_id} cancelled after its stock left the shelf"),
                    now,
                };
                self.settle(job, bus.execute::<Inventory>(&s, &ctx, cmd).await)
            }
            CheckoutAction::MarkOrderInventoryUnavailable { order_id, skus } => {
                let cmd = OrderCommand::MarkInventoryUnavailable { skus, now };
                self.settle(
                    job,
                    bus.execute::<Order>(&stream(order_id.stream()), &ctx, cmd)
                        .await,
                )
            }
            CheckoutAction::CreatePayment {
                payment_id,
                order_id,
                amount,
                payment_method,
                idempotency_key,
            } => {
                let cmd = PaymentCommand::CreateIntent {
                    payment_id,
                    order_id,
                    amount,
                    payment_method,
                    idempotency_key,
                    now,
                };
                self.settle(
                    job,
                    bus.execute::<Payment>(&stream(payment_id.stream()), &ctx, cmd)
                        .await,
                )
            }
            CheckoutAction::StartOrderPayment {
                order_id,
                payment_id,
            } => {
                let cmd = OrderCommand::StartPayment { payment_id, now };
                self.settle(
                    job,
                    bus.execute::<Order>(&stream(order_id.stream()), &ctx, cmd)
                        .await,
                )
            }
            CheckoutAction::ChargePayment { payment_id } => {
                self.charge(job, &ctx, payment_id).await
            }
            CheckoutAction::MarkOrderPaid {
                order_id,
                payment_id,
                gateway_reference,
                amount,
            } => {
                let cmd = OrderCommand::MarkPaid {
                    payment_id,
                    gateway_reference,
                    amount,
                    now,
                };
                self.settle(
                    job,
                    bus.execute::<Order>(&stream(order_id.stream()), &ctx, cmd)
                        .await,
                )
            }
            CheckoutAction::MarkOrderPaymentFailed {
                order_id,
                reason,
                message,
            } => {
                let cmd = OrderCommand::MarkPaymentFailed {
                    reason,
                    message,
                    now,
                };
                self.settle(
                    job,
                    bus.execute::<Order>(&stream(order_id.stream()), &ctx, cmd)
                        .await,
                )
            }
            CheckoutAction::ConfirmOrder { order_id } => {
                let cmd = OrderCommand::Confirm { now };
                {
                    let r = bus
                        .execute::<Order>(&stream(order_id.stream()), &ctx, cmd)
                        .await;
                    Self::count_order(&r, "confirmed");
                    self.settle(job, r)
                }
            }
            CheckoutAction::CancelOrder { order_id, reason } => {
                let cmd = OrderCommand::Cancel {
                    reason,
                    by: CancelledBy::System,
                    now,
                };
                {
                    let r = bus
                        .execute::<Order>(&stream(order_id.stream()), &ctx, cmd)
                        .await;
                    Self::count_order(&r, "cancelled");
                    self.settle(job, r)
                }
            }
            CheckoutAction::ProvisionAccount {
                customer_id,
                email,
                order_id,
            } => {
                let cmd = CustomerCommand::ProvisionAccount {
                    email,
                    order_id,
                    guest: true,
                    now,
                };
                self.settle(
                    job,
                    bus.execute::<Customer>(&stream(customer_id.stream()), &ctx, cmd)
                        .await,
                )
            }
            CheckoutAction::AllocateLicense {
                sku,
                license_id,
                order_id,
            } => {
                let s = stream(sku.license_pool_stream());
                let cmd = LicensePoolCommand::Allocate {
                    sku,
                    license_id,
                    order_id,
                    now,
                };
                self.settle(job, bus.execute::<LicensePool>(&s, &ctx, cmd).await)
            }
            CheckoutAction::IssueSignedLicense {
                sku,
                license_id,
                order_id,
                customer_id,
                seats,
                expires_at,
                ..
            } => {
                let s = stream(license_id.stream());
                let cmd = match &self.signer {
                    Some(signer) => {
                        let payload = LicensePayload {
                            license_id,
                            sku: sku.clone(),
                            customer_id,
                            seats,
                            expires_at,
                        };
                        let key = signer.sign(&payload);
                        LicenseCommand::Issue {
                            license_id,
                            sku,
                            order_id,
                            customer_id,
                            seats,
                            key,
                            expires_at,
                            now,
                        }
                    }
                    // Without a key no license can be issued: record that as a fact, and the
                    // checkout refunds and cancels rather than leave the customer charged.
                    None => LicenseCommand::RecordIssueFailure {
                        license_id,
                        sku,
                        order_id,
                        reason: "no license signing key is configured".into(),
                        now,
                    },
                };
                self.settle(job, bus.execute::<License>(&s, &ctx, cmd).await)
            }
            CheckoutAction::IssueLicense {
                license_id,
                sku,
                order_id,
                customer_id,
                seats,
                key,
                expires_at,
            } => {
                let cmd = LicenseCommand::Issue {
                    license_id,
                    sku,
                    order_id,
                    customer_id,
                    seats,
                    key,
                    expires_at,
                    now,
                };
                self.settle(
                    job,
                    bus.execute::<License>(&stream(license_id.stream()), &ctx, cmd)
                        .await,
                )
            }
            CheckoutAction::AttachLicense {
                license_id,
                customer_id,
            } => {
                let cmd = LicenseCommand::Attach { customer_id, now };
                self.settle(
                    job,
                    bus.execute::<License>(&stream(license_id.stream()), &ctx, cmd)
                        .await,
                )
            }
            CheckoutAction::AttachLicenseToOrder {
                order_id,
                sku,
                license_id,
            } => {
                let cmd = OrderCommand::AttachLicense {
                    sku,
                    license_id,
                    now,
                };
                self.settle(
                    job,
                    bus.execute::<Order>(&stream(order_id.stream()), &ctx, cmd)
                        .await,
                )
            }
            CheckoutAction::FulfillOrder { order_id } => {
                let cmd = OrderCommand::Fulfill { now };
                {
                    let r = bus
                        .execute::<Order>(&stream(order_id.stream()), &ctx, cmd)
                        .await;
                    Self::count_order(&r, "fulfilled");
                    self.settle(job, r)
                }
            }
            CheckoutAction::RefundPayment {
                payment_id,
                amount,
                reason,
                refund_reference,
            } => {
                self.refund(job, &ctx, payment_id, amount, reason, refund_reference)
                    .await
            }
            CheckoutAction::MarkOrderRefunded {
                order_id,
                amount,
                reason,
                refund_reference,
            } => {
                let cmd = OrderCommand::Refund {
                    amount,
                    reason,
                    refund_reference,
                    now,
                };
                {
                    let r = bus
                        .execute::<Order>(&stream(order_id.stream()), &ctx, cmd)
                        .await;
                    Self::count_order(&r, "refunded");
                    self.settle(job, r)
                }
            }
            CheckoutAction::RevokeLicense { license_id, reason } => {
                let cmd = LicenseCommand::Revoke { reason, now };
                self.settle(
                    job,
                    bus.execute::<License>(&stream(license_id.stream()), &ctx, cmd)
                        .await,
                )
            }
            CheckoutAction::QueueNotification {
                notification_id,
                kind,
                to,
                order_id,
                license_id,
            } => {
                let cmd = NotificationCommand::Queue {
                    notification_id,
                    kind,
                    to,
                    order_id,
                    license_id,
                    now,
                };
                self.settle(
                    job,
                    bus.execute::<Notification>(&stream(notification_id.stream()), &ctx, cmd)
                        .await,
                )
            }
        };
        (label, outcome)
    }

    /// Charges a payment through the gateway and records the result on the payment.
    async fn charge(
        &self,
        job: &Job,
        ctx: &CommandContext,
        payment_id: purser_domain::PaymentId,
    ) -> Outcome {
        let s = stream(payment_id.stream());
        let (state, version, _) = match self.bus.load::<Payment>(&s).await {
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
                let after = self.policy.backoff(job.attempts);
                let retry_at = now + chrono::Duration::from_std(after).unwrap_or_default();
                // Each attempt is its own command, so each is recorded once.
                let mut attempt_ctx = ctx.clone();
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
                    crate::trace::TraceKind::PaymentProcessing,
                    Err(format!("attempt {} failed, will retry: {e}", job.attempts)),
                );
                if let Err(err) = self.bus.execute::<Payment>(&s, &attempt_ctx, record).await {
                    tracing::warn!(payment = %payment_id, error = %err, "could not record a failed charge attempt");
                }
                return Outcome::Retry {
                    after,
                    error: e.to_string(),
                };
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
        let counted = match &command {
            PaymentCommand::Capture { .. } => Some(("captured", None)),
            PaymentCommand::Fail { reason, .. } => Some(("failed", Some(reason.code()))),
            _ => None,
        };
        let r = self.bus.execute::<Payment>(&s, ctx, command).await;
        if let (Some((outcome, reason)), Ok(_)) = (counted, &r) {
            let result = if outcome == "captured" {
                Ok(())
            } else {
                Err(format!("payment failed: {}", reason.unwrap_or("unknown")))
            };
            self.trace(job, crate::trace::TraceKind::PaymentProcessing, result);
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
        self.settle(job, r)
    }

    /// Refunds through the gateway, then records the refund on the payment.
    async fn refund(
        &self,
        job: &Job,
        ctx: &CommandContext,
        payment_id: purser_domain::PaymentId,
        amount: purser_domain::Money,
        reason: String,
        refund_reference: String,
    ) -> Outcome {
        let s = stream(payment_id.stream());
        let (state, _, _) = match self.bus.load::<Payment>(&s).await {
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
        self.settle(job, self.bus.execute::<Payment>(&s, ctx, cmd).await)
    }
}

/// A short name per action kind, for metrics.
fn action_label(a: &CheckoutAction) -> &'static str {
    match a {
        CheckoutAction::ReserveStock { .. } => "reserve_stock",
        CheckoutAction::ReleaseReservation { .. } => "release_reservation",
        CheckoutAction::ConfirmReservation { .. } => "confirm_reservation",
        CheckoutAction::RestockConfirmed { .. } => "restock_confirmed",
        CheckoutAction::MarkOrderInventoryUnavailable { .. } => "mark_order_inventory_unavailable",
        CheckoutAction::CreatePayment { .. } => "create_payment",
        CheckoutAction::StartOrderPayment { .. } => "start_order_payment",
        CheckoutAction::ChargePayment { .. } => "charge_payment",
        CheckoutAction::MarkOrderPaid { .. } => "mark_order_paid",
        CheckoutAction::MarkOrderPaymentFailed { .. } => "mark_order_payment_failed",
        CheckoutAction::ConfirmOrder { .. } => "confirm_order",
        CheckoutAction::CancelOrder { .. } => "cancel_order",
        CheckoutAction::ProvisionAccount { .. } => "provision_account",
        CheckoutAction::AllocateLicense { .. } => "allocate_license",
        CheckoutAction::IssueSignedLicense { .. } => "issue_signed_license",
        CheckoutAction::IssueLicense { .. } => "issue_license",
        CheckoutAction::AttachLicense { .. } => "attach_license",
        CheckoutAction::AttachLicenseToOrder { .. } => "attach_license_to_order",
        CheckoutAction::FulfillOrder { .. } => "fulfill_order",
        CheckoutAction::RefundPayment { .. } => "refund_payment",
        CheckoutAction::MarkOrderRefunded { .. } => "mark_order_refunded",
        CheckoutAction::RevokeLicense { .. } => "revoke_license",
        CheckoutAction::QueueNotification { .. } => "queue_notification",
    }
}
