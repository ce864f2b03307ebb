//! The projector runtime.
//!
//! For each projection, a task loops: claim it, resume from its checkpoint, apply batches, and
//! on any failure let go and start over. The invariants:
//!
//! * One process runs a projection at a time. The claim is a session-level advisory lock held
//!   on a connection of its own; if the process dies, Postgres drops the connection and the
//!   lock with it, and a waiting projector takes over within `claim_retry`.
//! * Each batch is one transaction: the read-model writes and the checkpoint move commit
//!   together or not at all, so a crash (even SIGKILL mid-batch) can neither skip nor
//!   double-apply an event.
//! * The checkpoint move is a compare-and-set on (position, generation). A projector that lost
//!   its claim without noticing, or whose projection was reset underneath it, fails the compare
//!   and rolls back.
//! * A failing event is never skipped: the batch rolls back, the error is recorded in the
//!   checkpoint row, and the projector retries with backoff.
//! * Behind: batches of up to `batch_max`; live: whatever has arrived, often one event.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use purser_event_store::{EventFilter, EventStore, Position, RecordedEvent, SubscriptionItem};
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::checkpoints::{self, Checkpoints, Mark};
use crate::skips::SkipSet;
use crate::{Projection, ProjectionError};

/// The most events a lag measurement counts ("at least this many behind"). Counting is a scan
/// of the backlog, repeated every status tick, so a large cap costs a catch-up real database
/// time (BENCHMARKS.md); 10,000 still tells an operator "far behind", and `lag_seconds` (the
/// oldest unapplied event) stays exact.
const LAG_COUNT_CAP: u64 = 10_000;

/// Batches at least this big (a projection catching up) start by dropping the connection's
/// cached query plans.
const REPLAN_BATCH: usize = 100;

/// How the transaction of a batch of `events` begins.
///
/// Read-model and process-manager writes commit without waiting for the WAL flush: they are
/// derived from the durable log, and their checkpoint commits with them, so a Postgres crash
/// can only lose a recent tail of rows and checkpoint together, which the projection then
/// applies again. Appends stay synchronous.
///
/// A batch of a catch-up also drops the connection's cached plans (`DISCARD PLANS`; the
/// prepared statements stay), so each statement is planned for the tables as they are now. A
/// rebuild starts from truncated tables, and a generic plan Postgres made while a table was
/// empty (a sequential scan looks free then) stays cached as the table grows and gets slower
/// with every row the rebuild adds (BENCHMARKS.md). Planning each statement again once per few
/// hundred events costs next to nothing. Live batches (a few events) keep
/// their plans: the tables are no longer empty by then.
pub fn batch_begin(events: usize) -> &'static str {
    if events >= REPLAN_BATCH {
        "begin; set local synchronous_commit = off; discard plans"
    } else {
        "begin; set local synchronous_commit = off"
    }
}

/// The number `purser_projection_position` shows for a checkpoint: on Postgres the global
/// sequence number (the prepare half); on KurrentDB the log offset, which is the commit half.
/// KurrentDB's own catch-up checkpoints have a prepare half of 0 (the end of the last record
/// read), so the prepare half would drop to 0 whenever one arrived.
fn position_gauge(store_kind: &str, at: Position) -> f64 {
    if store_kind == "kurrentdb" {
        at.commit as f64
    } else {
        at.prepare as f64
    }
}

#[derive(Debug, Clone)]
pub struct ProjectorOptions {
    /// The most events applied in one transaction.
    pub batch_max: usize,
    /// How often a projector that does not hold a projection's claim tries to take it.
    pub claim_retry: Duration,
    /// How often the owner checks its claim and records lag.
    pub status_interval: Duration,
}

impl Default for ProjectorOptions {
    fn default() -> Self {
        ProjectorOptions {
            batch_max: 500,
            claim_retry: Duration::from_secs(1),
            status_interval: Duration::from_secs(2),
        }
    }
}

/// What `rebuild` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildOutcome {
    /// Reset and rebuilt in this process, up to the head of the log as it was when it started.
    Rebuilt { events: i64 },
    /// Reset; another process holds the projection and is rebuilding it.
    HandedOver { owner: Option<String> },
}

/// Runs projections.
#[derive(Clone)]
pub struct Projector {
    store: Arc<dyn EventStore>,
    pool: PgPool,
    projections: Vec<Arc<dyn Projection>>,
    checkpoints: Checkpoints,
    opts: ProjectorOptions,
    owner: String,
}

pub(crate) enum Stop {
    Shutdown,
    Reached,
    /// The checkpoint moved under us (reset, or another owner): reload and go on.
    Restart,
}

impl Projector {
    pub fn new(
        store: Arc<dyn EventStore>,
        pool: PgPool,
        projections: Vec<Arc<dyn Projection>>,
        checkpoints: Checkpoints,
    ) -> Projector {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        Projector {
            store,
            pool,
            projections,
            checkpoints,
            opts: ProjectorOptions::default(),
            owner: format!("{host}:{}", std::process::id()),
        }
    }

    pub fn with_options(mut self, opts: ProjectorOptions) -> Projector {
        self.opts = opts;
        self
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.projections.iter().map(|p| p.name()).collect()
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    pub(crate) fn find(&self, name: &str) -> Result<Arc<dyn Projection>, ProjectionError> {
        self.projections
            .iter()
            .find(|p| p.name() == name)
            .cloned()
            .ok_or_else(|| ProjectionError::Unknown(name.to_owned()))
    }

    /// Runs every projection until `shutdown` is cancelled. On shutdown each projection
    /// finishes the batch it is applying, then lets go of its claim.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for p in &self.projections {
            let (this, p, shutdown) = (self.clone(), p.clone(), shutdown.clone());
            tasks.spawn(async move { this.run_projection(p, shutdown).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn run_projection(&self, p: Arc<dyn Projection>, shutdown: CancellationToken) {
        let name = p.name();
        let mut backoff = Duration::from_millis(100);
        // 1 while this process holds the projection's claim: summed over processes, exactly 1.
        let held = metrics::gauge!("purser_projection_held", "projection" => name);
        held.set(0.0);
        // After a failed batch, this many events are applied one per batch, so that the error
        // recorded names the event (a projection may write a batch's rows in one statement).
        let mut careful = 0usize;
        while !shutdown.is_cancelled() {
            let mut claim = match Claim::try_acquire(&self.pool, name).await {
                Ok(Some(claim)) => claim,
                Ok(None) => {
                    pause(&shutdown, self.opts.claim_retry).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, "cannot try the claim");
                    pause(&shutdown, backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            tracing::info!(projection = name, owner = %self.owner, "projection claimed");
            held.set(1.0);
            // A reset underneath (or a lost compare-and-set) means: reload the checkpoint and go
            // on, still holding the claim, so no other process can slip in between.
            let outcome = loop {
                match self
                    .drive(&p, &mut claim, &shutdown, None, &mut careful)
                    .await
                {
                    Ok(Stop::Restart) => continue,
                    other => break other,
                }
            };
            // Let go of the claim before anything else, so another projector can take over.
            claim.release(name).await;
            held.set(0.0);
            match outcome {
                Ok(Stop::Shutdown) => {
                    let _ = checkpoints::release(&self.pool, name, &self.owner).await;
                    tracing::info!(projection = name, "projection released at shutdown");
                    return;
                }
                Ok(Stop::Reached | Stop::Restart) => backoff = Duration::from_millis(100),
                Err(e) => {
                    let failing = e.failing_position();
                    metrics::counter!("purser_projection_failures_total", "projection" => name)
                        .increment(1);
                    metrics::gauge!("purser_projection_failing", "projection" => name).set(1.0);
                    tracing::error!(
                        projection = name,
                        error = %e,
                        position = failing.map(tracing::field::display),
                        "projection failed; it retries with back-off until the event applies or an \
                         operator skips it (`purser projector --skip POSITION {name}`)"
                    );
                    let _ =
                        checkpoints::record_error(&self.pool, name, &e.to_string(), failing).await;
                    careful = self.opts.batch_max;
                    pause(&shutdown, backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Applies events for one claimed projection until shutdown, until `until` is reached,
    /// or until the checkpoint moves under it. While `careful` is above zero, batches hold one
    /// event each and count it down.
    pub(crate) async fn drive(
        &self,
        p: &Arc<dyn Projection>,
        claim: &mut Claim,
        shutdown: &CancellationToken,
        until: Option<Position>,
        careful: &mut usize,
    ) -> Result<Stop, ProjectionError> {
        let name = p.name();
        let filter = p.filter();
        let mut mark = checkpoints::load_or_create(&self.pool, name).await?;
        if until.is_some_and(|t| mark.position >= t) {
            return Ok(Stop::Reached);
        }
        // Loaded at every (re)start: a skip asked for while the projection fails is picked
        // up at its next retry.
        let skips = SkipSet::load(&self.pool, name).await?;
        let mut sub = self.store.subscribe(mark.position, filter.clone());
        let mut status = tokio::time::interval(self.opts.status_interval);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_report = tokio::time::Instant::now();
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(Stop::Shutdown),
                _ = status.tick() => {
                    if !claim.alive().await {
                        return Err(ProjectionError::Other(format!(
                            "lost the connection that holds the claim on {name}"
                        )));
                    }
                    // An idle projector would otherwise only learn of a reset at its next
                    // batch's compare-and-set, which may never come.
                    if checkpoints::generation(&self.pool, name).await? != mark.generation {
                        tracing::info!(projection = name, "projection was reset; rebuilding");
                        return Ok(Stop::Restart);
                    }
                    self.report_status(name, &filter, mark.position, true).await;
                    last_report = tokio::time::Instant::now();
                    continue;
                }
                item = sub.next() => item,
            };
            let first = first
                .ok_or_else(|| ProjectionError::Other("the event subscription ended".into()))??;
            let mut batch = vec![first];
            let mut drained = false;
            let batch_max = if *careful > 0 { 1 } else { self.opts.batch_max };
            // Unconstrained: tokio's cooperative budget would otherwise report the channel
            // empty after about 128 receives in one go, cutting a catch-up's batches to a
            // quarter of `batch_max` (four times the transactions and statements). The loop is
            // bounded by `batch_max` and never waits.
            while batch.len() < batch_max {
                match tokio::task::unconstrained(sub.next()).now_or_never() {
                    Some(Some(item)) => batch.push(item?),
                    _ => {
                        drained = true;
                        break;
                    }
                }
            }
            let applied = self.apply_batch(p, &filter, &skips, mark, &batch).await;
            let applied = match applied {
                Ok(applied) => applied,
                Err(e) => {
                    // A batch of one event names the event an operator may look at.
                    return Err(match batch.as_slice() {
                        [SubscriptionItem::Event(event)] => ProjectionError::At {
                            position: event.position,
                            source: Box::new(e),
                        },
                        _ => e,
                    });
                }
            };
            let Some(to) = applied else {
                return Ok(Stop::Restart);
            };
            *careful = careful.saturating_sub(batch.len());
            if to != mark.position {
                mark.position = to;
                self.checkpoints.bump_projection(name);
            }
            // Having just drained everything that had arrived, say so now rather than at the
            // next status tick, so operators do not see a stale lag.
            if drained && last_report.elapsed() > Duration::from_millis(250) {
                self.report_status(name, &filter, mark.position, false)
                    .await;
                last_report = tokio::time::Instant::now();
            }
            if until.is_some_and(|t| mark.position >= t) {
                return Ok(Stop::Reached);
            }
        }
    }

    /// One transaction: apply the batch, move the checkpoint, commit. Returns the new
    /// position, or None when the compare-and-set failed (and nothing was written).
    async fn apply_batch(
        &self,
        p: &Arc<dyn Projection>,
        filter: &EventFilter,
        skips: &SkipSet,
        mark: Mark,
        batch: &[SubscriptionItem],
    ) -> Result<Option<Position>, ProjectionError> {
        let mut to = mark.position;
        let mut last_event_at = None;
        let mut events: Vec<&RecordedEvent> = Vec::with_capacity(batch.len());
        let mut skipped: Vec<&RecordedEvent> = Vec::new();
        for item in batch {
            match item {
                SubscriptionItem::Event(e) => {
                    if skips.contains(e.position) {
                        skipped.push(&**e);
                    } else if filter.matches(&e.stream, &e.event_type) {
                        events.push(&**e);
                        last_event_at = Some(e.recorded_at);
                    }
                    to = to.max(e.position);
                }
                SubscriptionItem::Checkpoint(c) => to = to.max(*c),
            }
        }
        if to == mark.position {
            // Nothing applied and nothing to move past (a position this projection had).
            return Ok(Some(to));
        }
        let applied = events.len() as i64;
        // See `batch_begin`. On the Postgres store an append by a command the batch decided
        // flushes the WAL past the batch's commit record first; on either store a batch
        // applied again decides the same deterministic outbox and command ids, so nothing is
        // appended twice. Sent in the same round trip as BEGIN.
        let mut tx = self.pool.begin_with(batch_begin(batch.len())).await?;
        if !events.is_empty() {
            // No span around the batch: each event's `project` span must stay a root, so that
            // it joins the trace of the request that caused the event.
            p.apply_batch(&mut tx, &events).await?;
        }
        if !skipped.is_empty() {
            tracing::warn!(
                projection = p.name(),
                events = skipped.len(),
                "passing over dead-lettered events"
            );
            skips.record(&mut tx, p.name(), &skipped).await?;
        }
        if !checkpoints::advance(&mut tx, p.name(), mark, to, applied, last_event_at).await? {
            tracing::info!(
                projection = p.name(),
                "checkpoint moved underneath; reloading"
            );
            return Ok(None);
        }
        tx.commit().await?;
        metrics::histogram!("purser_projection_batch_size", "projection" => p.name())
            .record(batch.len() as f64);
        metrics::counter!("purser_projection_events_applied_total", "projection" => p.name())
            .increment(applied as u64);
        metrics::gauge!("purser_projection_position", "projection" => p.name())
            .set(position_gauge(self.store.kind(), to));
        metrics::gauge!("purser_projection_failing", "projection" => p.name()).set(0.0);
        Ok(Some(to))
    }

    /// Records the projection's lag and heartbeat. The lag count stops at [`LAG_COUNT_CAP`]:
    /// counting a million-event backlog every status interval would cost a rebuild real time.
    ///
    /// Caught up (at or past the head) is cheap to tell and always reported; counting a
    /// backlog happens only when `count` is set (the status tick), so a projector that drains
    /// its channel often during a catch-up does not spend its time counting.
    async fn report_status(&self, name: &str, filter: &EventFilter, at: Position, count: bool) {
        let head = self.store.head().await.ok().flatten();
        let caught_up = head.as_ref().is_none_or(|h| h.position <= at);
        if !caught_up && !count {
            return;
        }
        let backlog = if caught_up {
            Ok((0, None))
        } else {
            self.store.backlog(at, filter, LAG_COUNT_CAP).await
        };
        let (lag_events, lag_seconds) = match backlog {
            Ok((n, oldest)) => {
                let secs = oldest
                    .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                (n as i64, secs)
            }
            Err(e) => {
                tracing::debug!(projection = name, error = %e, "cannot measure lag");
                (0, 0.0)
            }
        };
        let head = head.map(|h| h.position);
        metrics::gauge!("purser_projection_lag_events", "projection" => name.to_owned())
            .set(lag_events as f64);
        metrics::gauge!("purser_projection_lag_seconds", "projection" => name.to_owned())
            .set(lag_seconds);
        if let Err(e) =
            checkpoints::heartbeat(&self.pool, name, &self.owner, head, lag_events, lag_seconds)
                .await
        {
            tracing::debug!(projection = name, error = %e, "cannot record status");
        }
    }

    /// Empties a projection's tables and moves its checkpoint back to the start, in one
    /// transaction. A projector running it notices (its next compare-and-set fails) and
    /// rebuilds from the start.
    pub async fn reset(&self, name: &str) -> Result<(), ProjectionError> {
        let p = self.find(name)?;
        let mut tx = self.pool.begin().await?;
        // Lock the tables before the checkpoint row, the same order a projector's batch
        // takes them in, so a reset and a running batch can wait for each other but never
        // deadlock.
        let tables = p.tables().join(", ");
        if !tables.is_empty() {
            sqlx::query(&format!("lock table {tables} in access exclusive mode"))
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!("truncate table {tables}"))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "insert into purser.projection_checkpoints (name) values ($1)
             on conflict (name) do update
             set commit_position = 0, prepare_position = 0,
                 generation = purser.projection_checkpoints.generation + 1,
                 events_applied = 0, last_event_at = null, last_error = null,
                 last_error_at = null, updated_at = now()",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.checkpoints.bump_projection(name);
        Ok(())
    }

    /// Resets a projection and rebuilds it from position zero. When another process runs the
    /// projection, that process does the rebuild.
    pub async fn rebuild(&self, name: &str) -> Result<RebuildOutcome, ProjectionError> {
        self.reset(name).await?;
        match self.catch_up(name).await? {
            Some(events) => Ok(RebuildOutcome::Rebuilt { events }),
            None => {
                let owner = self
                    .checkpoints
                    .all()
                    .await?
                    .into_iter()
                    .find(|c| c.name == name)
                    .and_then(|c| c.owner);
                Ok(RebuildOutcome::HandedOver { owner })
            }
        }
    }

    /// Brings one projection up to the head of the log as it is now, in this process.
    /// Returns the number of events it has applied in all, or None if another process holds
    /// the projection.
    pub async fn catch_up(&self, name: &str) -> Result<Option<i64>, ProjectionError> {
        let p = self.find(name)?;
        let Some(mut claim) = Claim::try_acquire(&self.pool, name).await? else {
            return Ok(None);
        };
        // Everything committed now, even what an older open transaction still holds behind
        // the horizon: the subscription waits for it rather than stopping short.
        let target = self
            .store
            .last_committed()
            .await?
            .map(|h| h.position)
            .unwrap_or(Position::START);
        let never = CancellationToken::new();
        loop {
            match self
                .drive(&p, &mut claim, &never, Some(target), &mut 0)
                .await?
            {
                Stop::Reached | Stop::Shutdown => break,
                Stop::Restart => continue,
            }
        }
        claim.release(name).await;
        let applied = self
            .checkpoints
            .all()
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .map(|c| c.events_applied)
            .unwrap_or(0);
        Ok(Some(applied))
    }
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

/// A session-level advisory lock on a connection of its own. Dropping the claim closes the
/// connection, which releases the lock.
pub struct Claim {
    conn: PgConnection,
}

/// Takes a projection's claim from outside a projector, so no projector runs it meanwhile
/// (the demo seed does this while it writes history the projection must not act on). None
/// when a projector holds it.
pub async fn claim(pool: &PgPool, name: &str) -> Result<Option<Claim>, sqlx::Error> {
    Claim::try_acquire(pool, name).await
}

/// Moves a projection's checkpoint to `to` while holding its claim: the events before it
/// will never be applied. Only for command-side state that the caller has written itself.
pub async fn fast_forward(claim: &mut Claim, name: &str, to: Position) -> Result<(), sqlx::Error> {
    let (c, p) = to.to_db();
    sqlx::query(
        "insert into purser.projection_checkpoints (name, commit_position, prepare_position) values ($1, $2, $3)
         on conflict (name) do update set commit_position = $2, prepare_position = $3, updated_at = now()",
    )
    .bind(name)
    .bind(c)
    .bind(p)
    .execute(&mut claim.conn)
    .await?;
    Ok(())
}

fn claim_key(name: &str) -> i64 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "purser.projection.".bytes().chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

impl Claim {
    pub(crate) async fn try_acquire(
        pool: &PgPool,
        name: &str,
    ) -> Result<Option<Claim>, sqlx::Error> {
        let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
        let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(claim_key(name))
            .fetch_one(&mut conn)
            .await?;
        if got {
            Ok(Some(Claim { conn }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Unlocks and closes the connection now. Merely dropping it would leave Postgres to
    /// notice the closed socket and free the lock a moment later, so a projector that lets go
    /// and another that takes over at once could miss each other.
    pub async fn release(mut self, name: &str) {
        let _ = sqlx::query("select pg_advisory_unlock($1)")
            .bind(claim_key(name))
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }

    async fn alive(&mut self) -> bool {
        sqlx::query("select 1")
            .execute(&mut self.conn)
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_gauge_never_drops_to_zero_on_a_kurrentdb_checkpoint() {
        // An event at log offset 5000, then the server's catch-up checkpoint at the end of a
        // later record: (5120, 0).
        let event = Position::new(5000, 5000);
        let checkpoint = Position::new(5120, 0);
        assert_eq!(position_gauge("kurrentdb", event), 5000.0);
        assert_eq!(position_gauge("kurrentdb", checkpoint), 5120.0);
        // On Postgres the commit half is a transaction id; the sequence number is shown.
        assert_eq!(position_gauge("postgres", Position::new(812, 77)), 77.0);
    }
}
