//! Carries out process-manager actions: each becomes one command on one aggregate (and, for
//! charges and refunds, one gateway call first).
//!
//! Every command carries the outbox row's id as its command id, so its event ids are derived
//! from it and sending it again (after a crash, or a lost lease) appends nothing. Gateway
//! calls are idempotent on their keys too, so a charge retried after a crash is charged once.
//!
//! `dispatch` maps each action kind to the method that carries it out; the methods live in
//! one file per target (`stock`, `orders`, `payments`, `licenses`, `customers`).

mod customers;
mod dispatch;
mod licenses;
mod orders;
mod payments;
mod stock;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use purser_domain::checkout::CheckoutAction;
use purser_domain::{Aggregate, DomainError};
use purser_event_store::StoreError;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, Executed};
use crate::context::CommandContext;
use crate::gateway::PaymentGateway;
use crate::licensing::LicenseSigner;
use dispatch::action_label;

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

/// One job being carried out: the outbox row, the context its commands run under and the
/// time they record.
struct Step<'a> {
    job: &'a Job,
    ctx: CommandContext,
    now: DateTime<Utc>,
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

    /// Records payment processing and fulfilment as trace events.
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

    /// Sends one command to aggregate `A`'s instance `id` and settles its result.
    async fn send<A>(&self, step: &Step<'_>, id: &A::Id, command: A::Command) -> Outcome
    where
        A: Aggregate,
        A::State: Send + Sync + 'static,
        A::Command: Clone,
    {
        self.settle(
            step.job,
            self.bus.execute::<A>(id, &step.ctx, command).await,
        )
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
        let step = Step {
            job,
            ctx: self.context(job),
            now: Utc::now(),
        };
        (label, self.carry_out(&step, action).await)
    }
}
