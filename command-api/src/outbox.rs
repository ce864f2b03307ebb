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
use uuid::Uuid;

use crate::actions::{ActionExecutor, Job, Outcome};
use crate::polling::{due_in, run_rounds, sooner};

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
    pub async fn run(self, shutdown: CancellationToken) {
        let errors = (Duration::from_millis(50), Duration::from_secs(5));
        run_rounds(
            "outbox dispatcher",
            self.wake.clone(),
            self.opts.poll,
            errors,
            &shutdown,
            || self.round(),
        )
        .await;
    }

    /// Claims what is due and sends it. Returns how many rows it claimed and how long until
    /// the next row not claimed by this round falls due (zero if one already has; None if the
    /// outbox holds no other row), learnt in the same statement as the claim.
    pub async fn round(&self) -> Result<(usize, Option<Duration>), sqlx::Error> {
        let (jobs, mut next_due) = self.claim().await?;
        let claimed = jobs.len();
        let results: Vec<Result<Option<Duration>, sqlx::Error>> = futures::stream::iter(jobs)
            .map(|job| async move {
                let outcome = self.executor.execute(&job).await;
                self.finish(&job, outcome).await
            })
            .buffer_unordered(self.opts.concurrency)
            .collect()
            .await;
        for r in results {
            // A command put off for a retry falls due again after its pause.
            if let Some(retry) = r? {
                next_due = sooner(next_due, retry);
            }
        }
        Ok((claimed, next_due))
    }

    async fn claim(&self) -> Result<(Vec<Job>, Option<Duration>), sqlx::Error> {
        // The first part claims the oldest due row of each key; the last row answers when the
        // earliest row not claimed here can be claimed: the first row of each key once the rows
        // just claimed are gone (both parts read one snapshot, so those are left out by id),
        // when it is due and its lease (if another dispatcher holds one) has run out. NULL
        // when there is no such row (`greatest` would turn that into 0).
        let rows = sqlx::query(
            "with claimed as (
                 update purser.outbox o
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
                 returning o.id, o.key, o.command, o.causation_id, o.correlation_id, o.attempts
             )
             select id, key, command, causation_id, correlation_id, attempts, null::float8 as next_due
             from claimed
             union all
             select null, null, null, null, null, null,
                    (select extract(epoch from
                                min(greatest(h.next_attempt_at, coalesce(h.claimed_until, h.next_attempt_at)))
                                - now())::float8
                     from (select distinct on (key) next_attempt_at, claimed_until
                           from purser.outbox where id not in (select id from claimed)
                           order by key, seq) h)",
        )
        .bind(self.opts.batch)
        .bind(self.opts.lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        let mut next_due = None;
        for r in rows {
            match r.get::<Option<Uuid>, _>("id") {
                Some(id) => jobs.push(Job {
                    id,
                    key: r.get("key"),
                    command: r.get("command"),
                    causation_id: r.get("causation_id"),
                    correlation_id: r.get("correlation_id"),
                    attempts: r.get::<i32, _>("attempts").max(1) as u32,
                }),
                None => {
                    next_due = due_in(r.get("next_due"));
                }
            }
        }
        Ok((jobs, next_due))
    }

    /// Records a command's outcome. Returns the pause before its retry, if it is to be retried.
    async fn finish(&self, job: &Job, outcome: Outcome) -> Result<Option<Duration>, sqlx::Error> {
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
                return Ok(Some(after));
            }
        }
        Ok(None)
    }
}
