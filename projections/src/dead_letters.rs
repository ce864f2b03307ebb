//! Events a projection was told, on purpose, to pass over (`purser.dead_letters`).
//!
//! A projection never skips an event on its own: an event it cannot apply stops it, loudly
//! (its status, `/ready`, `purser status` and a metric say so), and it retries with back-off.
//! An operator who has looked at the event can ask for it to be skipped; the projector then
//! passes over that position, records what it passed over in the same transaction as its
//! checkpoint, and passes over it again in every rebuild, so a rebuild still equals the live
//! model. Auditors see every row: who asked, why, the event and the error.

use chrono::{DateTime, Utc};
use purser_event_store::Position;
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::runtime::{Claim, Stop};
use crate::{ProjectionError, Projector};

/// One skip, as asked for and (once the projector reached it) as done.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub projection: String,
    pub position: Position,
    pub requested_by: String,
    pub reason: String,
    pub requested_at: DateTime<Utc>,
    pub event_id: Option<Uuid>,
    pub stream: Option<String>,
    pub stream_version: Option<i64>,
    pub event_type: Option<String>,
    pub error: Option<String>,
    pub skipped_at: Option<DateTime<Utc>>,
}

/// Asks for the event at `position` to be passed over by `projection` from now on. Asking
/// twice is harmless (the first request stands).
pub async fn request_skip(
    pool: &PgPool,
    projection: &str,
    position: Position,
    requested_by: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let (commit, prepare) = position.to_db();
    sqlx::query(
        "insert into purser.dead_letters
             (projection, commit_position, prepare_position, requested_by, reason)
         values ($1, $2, $3, $4, $5)
         on conflict do nothing",
    )
    .bind(projection)
    .bind(commit)
    .bind(prepare)
    .bind(requested_by)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every skip asked for, newest first, at most `limit`.
pub async fn list(pool: &PgPool, limit: i64) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let rows = sqlx::query("select * from purser.dead_letters order by requested_at desc limit $1")
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| DeadLetter {
            projection: r.get("projection"),
            position: Position::from_db(r.get("commit_position"), r.get("prepare_position")),
            requested_by: r.get("requested_by"),
            reason: r.get("reason"),
            requested_at: r.get("requested_at"),
            event_id: r.get("event_id"),
            stream: r.get("stream"),
            stream_version: r.get("stream_version"),
            event_type: r.get("event_type"),
            error: r.get("error"),
            skipped_at: r.get("skipped_at"),
        })
        .collect())
}

/// What `Projector::skip` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipOutcome {
    /// This process held the projection and has passed over the event.
    Skipped,
    /// Another process runs the projection; it passes over the event at its next retry.
    HandedOver { owner: Option<String> },
}

impl Projector {
    /// Has `name` pass over the event at `position`, on purpose and on the record. Unless
    /// `force` is set, only the event the projection is failing on may be skipped.
    pub async fn skip(
        &self,
        name: &str,
        position: Position,
        requested_by: &str,
        reason: &str,
        force: bool,
    ) -> Result<SkipOutcome, ProjectionError> {
        let p = self.find(name)?;
        let row = self
            .checkpoints()
            .all()
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ProjectionError::Other(format!("{name} has not run yet")))?;
        if position <= row.position {
            return Err(ProjectionError::Other(format!(
                "{name} is already past position {position} (it is at {})",
                row.position
            )));
        }
        if !force && row.failing_position != Some(position) {
            let failing = row
                .failing_position
                .map_or("nothing".to_owned(), |f| f.to_string());
            return Err(ProjectionError::Other(format!(
                "{name} is not failing on position {position} (status {}, failing on {failing}); \
                 pass --force to skip an event it has not failed on",
                row.status
            )));
        }
        request_skip(self.pool(), name, position, requested_by, reason).await?;
        let Some(mut claim) = Claim::try_acquire(self.pool(), name).await? else {
            return Ok(SkipOutcome::HandedOver { owner: row.owner });
        };
        // One event per batch up to the position, so the run stops exactly there.
        let never = CancellationToken::new();
        let mut one_at_a_time = usize::MAX;
        let outcome = loop {
            match self
                .drive(&p, &mut claim, &never, Some(position), &mut one_at_a_time)
                .await
            {
                Ok(Stop::Restart) => continue,
                other => break other,
            }
        };
        claim.release(name).await;
        outcome.map(|_| SkipOutcome::Skipped)
    }
}

/// Copies every skip of `from` into `to` (a scratch database that rebuilds read models from
/// the same log), so the rebuild passes over the same events as the live projections.
pub async fn copy(from: &PgPool, to: &PgPool) -> Result<u64, sqlx::Error> {
    let rows: Vec<(String, i64, i64, String, String)> = sqlx::query_as(
        "select projection, commit_position, prepare_position, requested_by, reason
         from purser.dead_letters",
    )
    .fetch_all(from)
    .await?;
    let mut copied = 0;
    for (projection, commit, prepare, by, reason) in rows {
        let at = Position::from_db(commit, prepare);
        request_skip(to, &projection, at, &by, &reason).await?;
        copied += 1;
    }
    Ok(copied)
}
