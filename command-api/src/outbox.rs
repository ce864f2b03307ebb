//! The outbox dispatcher: sends the commands process managers decided on.
//!
//! Claiming. A dispatcher leases rows (`claimed_until`) in a short transaction, sends them
//! outside any transaction, then deletes or reschedules them. Holding a transaction open while
//! calling a payment gateway would hold back the event store's visibility horizon for every
//! reader, so leases replace row locks. A dispatcher that dies leaves leases that expire; the
//! rows are sent again, which is harmless because every command is idempotent.
//!
//! Ordering. Only the oldest row of each key (order) is ever eligible, so one checkout's
//! commands go out one at a time and in the order they were decided. Different checkouts
//! proceed concurrently.
//!
//! Waking. The in-process projector's commits wake the dispatcher at once; rows written by
//! another process, and retries that fall due, are found by a poll every `poll` at most.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sqlx::{PgPool, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::actions::{ActionExecutor, Job, Outcome};

#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// Most rows claimed at once (one per key).
    pub batch: i64,
    /// How long a claim lasts before another dispatcher may take the row.
    pub lease: Duration,
    /// Longest wait between looks at the table.
    pub poll: Duration,
    /// Commands sent concurrently.
    pub concurrency: usize,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        DispatcherOptions {
            batch: 64,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(500),
            concurrency: 16,
        }
    }
}

pub struct Dispatcher {
    pool: PgPool,
    executor: Arc<ActionExecutor>,
    wake: watch::Receiver<u64>,
    opts: DispatcherOptions,
}

impl Dispatcher {
    pub fn new(
        pool: PgPool,
        executor: Arc<ActionExecutor>,
        wake: watch::Receiver<u64>,
        opts: DispatcherOptions,
    ) -> Dispatcher {
        Dispatcher {
            pool,
            executor,
            wake,
            opts,
        }
    }

    /// Runs until `shutdown`; commands being sent when it fires are finished first.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        while !shutdown.is_cancelled() {
            self.wake.borrow_and_update();
            match self.round().await {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(50);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "outbox dispatcher cannot reach the database");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            let wait = self
                .until_next_due()
                .await
                .unwrap_or(self.opts.poll)
                .min(self.opts.poll);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// How long until the earliest row falls due (zero if one already has).
    async fn until_next_due(&self) -> Result<Duration, sqlx::Error> {
        let secs: Option<f64> = sqlx::query_scalar(
            "select greatest(0, extract(epoch from min(next_attempt_at) - now()))::float8 from purser.outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(secs.map(Duration::from_secs_f64).unwrap_or(self.opts.poll))
    }

    /// Claims what is due and sends it. Returns how many rows were handled.
    pub async fn round(&self) -> Result<usize, sqlx::Error> {
        let jobs = self.claim().await?;
        let n = jobs.len();
        let results: Vec<Result<(), sqlx::Error>> = futures::stream::iter(jobs)
            .map(|job| async move {
                let outcome = self.executor.execute(&job).await;
                self.finish(&job, outcome).await
            })
            .buffer_unordered(self.opts.concurrency)
            .collect()
            .await;
        for r in results {
            r?;
        }
        Ok(n)
    }

    async fn claim(&self) -> Result<Vec<Job>, sqlx::Error> {
        let rows = sqlx::query(
            "update purser.outbox o
             set claimed_until = now() + make_interval(secs => $2), attempts = o.attempts + 1
             from (
                 select h.id from (
                     select distinct on (key) id, next_attempt_at, claimed_until, seq
                     from purser.outbox order by key, seq
                 ) h
                 where h.next_attempt_at <= now()
                   and (h.claimed_until is null or h.claimed_until < now())
                 order by h.seq
                 limit $1
             ) c
             where o.id = c.id and (o.claimed_until is null or o.claimed_until < now())
             returning o.id, o.key, o.command, o.causation_id, o.correlation_id, o.attempts",
        )
        .bind(self.opts.batch)
        .bind(self.opts.lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Job {
                id: r.get("id"),
                key: r.get("key"),
                command: r.get("command"),
                causation_id: r.get("causation_id"),
                correlation_id: r.get("correlation_id"),
                attempts: r.get::<i32, _>("attempts").max(1) as u32,
            })
            .collect())
    }

    async fn finish(&self, job: &Job, outcome: Outcome) -> Result<(), sqlx::Error> {
        match outcome {
            Outcome::Done => {
                sqlx::query("delete from purser.outbox where id = $1")
                    .bind(job.id)
                    .execute(&self.pool)
                    .await?;
            }
            Outcome::Rejected { code, message } => {
                tracing::warn!(job = %job.id, key = %job.key, code = %code, message = %message, "a process-manager command was refused");
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "insert into purser.outbox_rejections (id, process, key, command, code, message)
                     select id, process, key, command, $2, $3 from purser.outbox where id = $1
                     on conflict (id) do nothing",
                )
                .bind(job.id)
                .bind(&code)
                .bind(&message)
                .execute(&mut *tx)
                .await?;
                sqlx::query("delete from purser.outbox where id = $1")
                    .bind(job.id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Outcome::Retry { after, error } => {
                tracing::info!(job = %job.id, key = %job.key, error = %error, retry_in_ms = after.as_millis() as u64, "will retry a process-manager command");
                sqlx::query(
                    "update purser.outbox
                     set claimed_until = null, next_attempt_at = now() + make_interval(secs => $2), last_error = $3
                     where id = $1",
                )
                .bind(job.id)
                .bind(after.as_secs_f64())
                .bind(error.chars().take(1000).collect::<String>())
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }
}
