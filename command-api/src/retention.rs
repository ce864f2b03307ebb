//! Retention of the command side's operational rows: what is finished and kept only for
//! operators is deleted once it is older than its retention, so no table grows with traffic.
//!
//! The queues themselves need no pruning: a sent outbox command, a fired deadline and a sent
//! (or given-up) notification are deleted by the worker that finished them, in the same
//! statement or transaction that records the outcome. What stays behind are records for
//! operators: trace events (`trace.rs`) and refused process-manager commands
//! (`purser.outbox_rejections`). Their pruner runs in every command-side process, deletes
//! along an index on the time column in batches of 10,000 (never a long lock or a long
//! transaction), and any number of processes may run it side by side.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// A table of finished rows kept for a while, and the column that says when each finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// `schema.table`; a constant of this module, never input.
    pub table: &'static str,
    /// Its primary key (the batch is chosen by it).
    pub key: &'static str,
    /// A `timestamptz` column with an index.
    pub at: &'static str,
    /// The `table` label of `purser_rows_pruned_total`.
    pub label: &'static str,
}

/// Operational trace events (`PURSER_TRACE_RETENTION_DAYS`).
pub const TRACE_EVENTS: Kept = Kept {
    table: "purser.trace_events",
    key: "id",
    at: "at",
    label: "trace_events",
};

/// Process-manager commands the target aggregate refused (`PURSER_REJECTION_RETENTION_DAYS`).
pub const OUTBOX_REJECTIONS: Kept = Kept {
    table: "purser.outbox_rejections",
    key: "id",
    at: "rejected_at",
    label: "outbox_rejections",
};

const BATCH: u64 = 10_000;

/// Deletes the rows of `kept` older than `retention`, batch by batch; returns how many.
pub async fn prune_once(
    pool: &PgPool,
    kept: Kept,
    retention: Duration,
) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "delete from {table} where {key} in (
             select {key} from {table}
             where {at} < now() - make_interval(secs => $1) limit {BATCH})",
        table = kept.table,
        key = kept.key,
        at = kept.at,
    );
    let mut total = 0;
    loop {
        let done = sqlx::query(&sql)
            .bind(retention.as_secs_f64())
            .execute(pool)
            .await?;
        total += done.rows_affected();
        metrics::counter!("purser_rows_pruned_total", "table" => kept.label)
            .increment(done.rows_affected());
        if kept == TRACE_EVENTS {
            // The name operators already know for this table.
            metrics::counter!("purser_trace_events_pruned_total").increment(done.rows_affected());
        }
        if done.rows_affected() < BATCH {
            return Ok(total);
        }
    }
}

/// Prunes every table of `rules` now and then every `every`, until `stop`. A failure is
/// logged and tried again next round: pruning late costs disk, never correctness.
pub async fn run(
    pool: PgPool,
    rules: Vec<(Kept, Duration)>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        for (kept, retention) in &rules {
            if let Err(e) = prune_once(&pool, *kept, *retention).await {
                tracing::debug!(table = kept.table, error = %e, "could not prune");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
