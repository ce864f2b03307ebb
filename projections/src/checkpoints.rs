//! Projection checkpoints: reading them, waiting for them, and the runtime's writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use purser_event_store::Position;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;

/// One projection's checkpoint and health, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRow {
    pub name: String,
    pub position: Position,
    pub generation: i64,
    pub events_applied: i64,
    pub last_event_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub owner: Option<String>,
    pub owner_seen_at: Option<DateTime<Utc>>,
    pub lag_events: i64,
    pub lag_seconds: f64,
    pub status: String,
    pub last_error: Option<String>,
    /// The event the last failed attempt held on its own, when it failed on one.
    pub failing_position: Option<Position>,
    /// Failed attempts since the last batch that committed.
    pub failures: i64,
}

/// Read access to checkpoints, and waiting for them to reach a position.
///
/// Projectors running in the same process bump an in-process signal after every commit, so a
/// waiter wakes at once; projectors in other processes are seen by re-reading the (tiny)
/// checkpoint table on a short, growing interval while someone waits.
#[derive(Clone)]
pub struct Checkpoints {
    pool: PgPool,
    tick: Arc<watch::Sender<u64>>,
    /// One signal per projection name, for workers that act on one projection's table only.
    named: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl Checkpoints {
    pub fn new(pool: PgPool) -> Checkpoints {
        let (tick, _) = watch::channel(0);
        Checkpoints {
            pool,
            tick: Arc::new(tick),
            named: Arc::default(),
        }
    }

    /// A signal that changes whenever an in-process projector commits (for workers that act
    /// on what several projections write, such as the outbox dispatcher).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }

    /// A signal that changes whenever the in-process projector of `projection` commits (and
    /// on every [`Checkpoints::bump`]), for a worker that acts on that projection's table
    /// alone: the deadline worker needs no look at its table when the catalog moved.
    pub fn subscribe_to(&self, projection: &str) -> watch::Receiver<u64> {
        let mut named = self.named.lock().expect("checkpoint signals");
        named
            .entry(projection.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes in-process waiters after checkpoints moved in a way not tied to one projection
    /// (an online rebuild switched).
    pub fn bump(&self) {
        self.tick.send_modify(|n| *n = n.wrapping_add(1));
        for signal in self.named.lock().expect("checkpoint signals").values() {
            signal.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes in-process waiters after `projection`'s checkpoint moved (its projector committed
    /// a batch, or it was reset).
    pub fn bump_projection(&self, projection: &str) {
        self.tick.send_modify(|n| *n = n.wrapping_add(1));
        if let Some(signal) = self
            .named
            .lock()
            .expect("checkpoint signals")
            .get(projection)
        {
            signal.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    pub async fn positions(
        &self,
        names: &[&str],
    ) -> Result<HashMap<String, Position>, sqlx::Error> {
        let rows = sqlx::query(
            "select name, commit_position, prepare_position
             from purser.projection_checkpoints where name = any($1)",
        )
        .bind(names)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.get("name"),
                    Position::from_db(r.get("commit_position"), r.get("prepare_position")),
                )
            })
            .collect())
    }

    /// Waits until every projection in `names` has applied everything up to `target`, for at
    /// most `timeout`. Returns whether they got there.
    /// Whether every one of `names` has applied everything up to `target` (one query).
    pub async fn reached(&self, names: &[&str], target: Position) -> Result<bool, sqlx::Error> {
        let at = self.positions(names).await?;
        Ok(names
            .iter()
            .all(|n| at.get(*n).is_some_and(|p| *p >= target)))
    }

    pub async fn wait_for(
        &self,
        names: &[&str],
        target: Position,
        timeout: Duration,
    ) -> Result<bool, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ticks = self.tick.subscribe();
        let mut pause = Duration::from_millis(5);
        loop {
            ticks.borrow_and_update();
            let at = self.positions(names).await?;
            if names
                .iter()
                .all(|n| at.get(*n).is_some_and(|p| *p >= target))
            {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            let wake = tokio::time::Instant::now() + pause;
            tokio::select! {
                _ = ticks.changed() => {}
                _ = tokio::time::sleep_until(wake.min(deadline)) => {}
            }
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Every projection's checkpoint and health.
    pub async fn all(&self) -> Result<Vec<CheckpointRow>, sqlx::Error> {
        let rows = sqlx::query(
            "select c.name, c.commit_position, c.prepare_position, c.generation, c.events_applied,
                    c.last_event_at, c.updated_at, c.owner, c.owner_seen_at, s.lag_events,
                    s.lag_seconds, s.status, c.last_error, c.failing_commit, c.failing_prepare,
                    c.failures
             from purser.projection_checkpoints c
             join purser.projection_status s using (name)
             order by c.name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| CheckpointRow {
                name: r.get("name"),
                position: Position::from_db(r.get("commit_position"), r.get("prepare_position")),
                generation: r.get("generation"),
                events_applied: r.get("events_applied"),
                last_event_at: r.get("last_event_at"),
                updated_at: r.get("updated_at"),
                owner: r.get("owner"),
                owner_seen_at: r.get("owner_seen_at"),
                lag_events: r.get("lag_events"),
                lag_seconds: r.get("lag_seconds"),
                status: r.get("status"),
                last_error: r.get("last_error"),
                failing_position: r
                    .get::<Option<i64>, _>("failing_commit")
                    .zip(r.get::<Option<i64>, _>("failing_prepare"))
                    .map(|(c, p)| Position::from_db(c, p)),
                failures: r.get("failures"),
            })
            .collect())
    }
}

/// The runtime's view of a checkpoint: where to resume and the generation to compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) position: Position,
    pub(crate) generation: i64,
}

pub(crate) async fn load_or_create(pool: &PgPool, name: &str) -> Result<Mark, sqlx::Error> {
    sqlx::query(
        "insert into purser.projection_checkpoints (name) values ($1) on conflict do nothing",
    )
    .bind(name)
    .execute(pool)
    .await?;
    let r = sqlx::query(
        "select commit_position, prepare_position, generation
         from purser.projection_checkpoints where name = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await?;
    Ok(Mark {
        position: Position::from_db(r.get("commit_position"), r.get("prepare_position")),
        generation: r.get("generation"),
    })
}

/// The projection's current generation (bumped by every reset).
pub(crate) async fn generation(pool: &PgPool, name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select generation from purser.projection_checkpoints where name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
}

/// Moves the checkpoint from `from` to `to` inside the caller's transaction, only if nobody
/// else moved or reset it meanwhile. Returns false when the compare fails.
pub(crate) async fn advance(
    tx: &mut PgConnection,
    name: &str,
    from: Mark,
    to: Position,
    applied: i64,
    last_event_at: Option<DateTime<Utc>>,
) -> Result<bool, sqlx::Error> {
    let (fc, fp) = from.position.to_db();
    let (tc, tp) = to.to_db();
    let done = sqlx::query(
        "update purser.projection_checkpoints
         set commit_position = $5, prepare_position = $6,
             events_applied = events_applied + $7,
             last_event_at = coalesce($8, last_event_at),
             updated_at = now(), failing_commit = null, failing_prepare = null, failures = 0
         where name = $1 and commit_position = $2 and prepare_position = $3 and generation = $4",
    )
    .bind(name)
    .bind(fc)
    .bind(fp)
    .bind(from.generation)
    .bind(tc)
    .bind(tp)
    .bind(applied)
    .bind(last_event_at)
    .execute(tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn heartbeat(
    pool: &PgPool,
    name: &str,
    owner: &str,
    head: Option<Position>,
    lag_events: i64,
    lag_seconds: f64,
) -> Result<(), sqlx::Error> {
    let (hc, hp) = head
        .map(|h| h.to_db())
        .map_or((None, None), |(c, p)| (Some(c), Some(p)));
    sqlx::query(
        "update purser.projection_checkpoints
         set owner = $2, owner_seen_at = now(), head_commit = $3, head_prepare = $4,
             lag_events = $5, lag_seconds = $6
         where name = $1",
    )
    .bind(name)
    .bind(owner)
    .bind(hc)
    .bind(hp)
    .bind(lag_events)
    .bind(lag_seconds)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed attempt: its error and, when the attempt held one event, that event's
/// position (the event an operator may look at and choose to skip).
pub(crate) async fn record_error(
    pool: &PgPool,
    name: &str,
    error: &str,
    failing: Option<Position>,
) -> Result<(), sqlx::Error> {
    let failing = failing.map(Position::to_db);
    sqlx::query(
        "update purser.projection_checkpoints
         set last_error = $2, last_error_at = now(), failures = failures + 1,
             failing_commit = coalesce($3, failing_commit),
             failing_prepare = coalesce($4, failing_prepare)
         where name = $1",
    )
    .bind(name)
    .bind(error.chars().take(2000).collect::<String>())
    .bind(failing.map(|f| f.0))
    .bind(failing.map(|f| f.1))
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn release(pool: &PgPool, name: &str, owner: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update purser.projection_checkpoints set owner = null where name = $1 and owner = $2",
    )
    .bind(name)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker watching one projection wakes for that projection's commits and for bumps
    /// not tied to a projection, and sleeps through every other projection's commits.
    #[tokio::test]
    async fn a_projection_signal_changes_only_for_its_projection_and_global_bumps() {
        // Never connects: the signals are in memory.
        let pool = PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let checkpoints = Checkpoints::new(pool);
        let mut deadlines = checkpoints.subscribe_to("deadlines");
        let mut any = checkpoints.subscribe();

        checkpoints.bump_projection("catalog");
        assert!(!deadlines.has_changed().unwrap());
        assert!(any.has_changed().unwrap());
        any.borrow_and_update();

        checkpoints.bump_projection("deadlines");
        assert!(deadlines.has_changed().unwrap());
        assert!(any.has_changed().unwrap());
        deadlines.borrow_and_update();

        checkpoints.bump();
        assert!(deadlines.has_changed().unwrap());

        // A second subscriber to the same projection shares its signal.
        let mut again = checkpoints.subscribe_to("deadlines");
        again.borrow_and_update();
        checkpoints.bump_projection("deadlines");
        assert!(again.has_changed().unwrap());
    }
}
