//! Operational trace events: login, order creation, payment processing,
//! fulfilment and data lookups, each with `success` or `failed` and the error, kept in
//! `purser.trace_events` for operators.
//!
//! Recording never waits on the database: events go into a bounded channel and a background
//! task writes them in batches. When the channel is full an event is dropped and counted,
//! because an operator's trace must never slow a customer's request. Rows older than their
//! retention are deleted by `retention.rs`.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    Login,
    OrderCreation,
    PaymentProcessing,
    Fulfilment,
    DataLookup,
}

impl TraceKind {
    fn as_str(self) -> &'static str {
        match self {
            TraceKind::Login => "login",
            TraceKind::OrderCreation => "order_creation",
            TraceKind::PaymentProcessing => "payment_processing",
            TraceKind::Fulfilment => "fulfilment",
            TraceKind::DataLookup => "data_lookup",
        }
    }
}

/// One tracked operation.
#[derive(Debug, Clone)]
pub struct TraceEvent {
    pub kind: TraceKind,
    /// `Ok(())` for success, `Err(message)` for a failure.
    pub outcome: Result<(), String>,
    pub correlation_id: Option<Uuid>,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub duration: Option<Duration>,
}

/// A handle for recording trace events. Cheap to clone.
#[derive(Clone)]
pub struct TraceLog {
    tx: mpsc::Sender<TraceEvent>,
}

impl TraceLog {
    /// Starts the writer on `pool` and returns the handle.
    pub fn start(pool: PgPool) -> TraceLog {
        let (tx, rx) = mpsc::channel(10_000);
        tokio::spawn(write(pool, rx));
        TraceLog { tx }
    }

    pub fn record(&self, event: TraceEvent) {
        if self.tx.try_send(event).is_err() {
            metrics::counter!("purser_trace_events_dropped_total").increment(1);
        }
    }

    /// Shorthand for the common case.
    pub fn outcome<E: std::fmt::Display>(
        &self,
        kind: TraceKind,
        outcome: Result<(), E>,
        correlation_id: Option<Uuid>,
        actor: Option<String>,
        subject: Option<String>,
    ) {
        self.record(TraceEvent {
            kind,
            outcome: outcome.map_err(|e| e.to_string()),
            correlation_id,
            actor,
            subject,
            duration: None,
        });
    }
}

async fn write(pool: PgPool, mut rx: mpsc::Receiver<TraceEvent>) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let mut kinds = Vec::with_capacity(batch.len());
        let mut statuses = Vec::with_capacity(batch.len());
        let mut errors: Vec<Option<String>> = Vec::with_capacity(batch.len());
        let mut correlations = Vec::with_capacity(batch.len());
        let mut actors = Vec::with_capacity(batch.len());
        let mut subjects = Vec::with_capacity(batch.len());
        let mut durations = Vec::with_capacity(batch.len());
        for e in batch.drain(..) {
            kinds.push(e.kind.as_str());
            statuses.push(if e.outcome.is_ok() {
                "success"
            } else {
                "failed"
            });
            errors.push(e.outcome.err().map(|m| m.chars().take(1000).collect()));
            correlations.push(e.correlation_id);
            actors.push(e.actor);
            subjects.push(e.subject.map(|s| s.chars().take(300).collect::<String>()));
            durations.push(e.duration.map(|d| d.as_secs_f64() * 1000.0));
        }
        let written = sqlx::query(
            "insert into purser.trace_events (kind, status, error, correlation_id, actor, subject, duration_ms)
             select * from unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::float8[])",
        )
        .bind(&kinds)
        .bind(&statuses)
        .bind(&errors)
        .bind(&correlations)
        .bind(&actors)
        .bind(&subjects)
        .bind(&durations)
        .execute(&pool)
        .await;
        if let Err(e) = written {
            metrics::counter!("purser_trace_events_dropped_total").increment(kinds.len() as u64);
            tracing::debug!(error = %e, "could not write trace events");
        }
    }
}
