//! Operational queries: projection health, and the events projections were told to pass
//! over (dead letters).

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use purser_api_core::ReadContext;
use purser_api_core::auth::Viewer;
use purser_api_core::errors::db_error;
use purser_domain::customer::Role;
use purser_projections::dead_letters;

/// One projection's position in the event log and how far behind it is.
#[derive(SimpleObject, Debug, Clone)]
pub struct ProjectionStatus {
    pub name: String,
    /// The last log position applied, as `commit/prepare`.
    pub position: String,
    pub events_applied: i64,
    /// Events in the log the projection has not applied yet.
    pub lag_events: i64,
    /// Age of the oldest event not applied yet, in seconds (0 when caught up).
    pub lag_seconds: f64,
    /// `live`, `catching_up`, `failing` or `stopped`.
    pub status: String,
    /// The process running it (`host:pid`).
    pub owner: Option<String>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// The position of the event it is failing on, when it fails on one.
    pub failing_position: Option<String>,
    /// Failed attempts since the last batch that committed.
    pub failures: i64,
}

/// An event a projection passes over on purpose (`purser projector --skip`).
#[derive(SimpleObject, Debug, Clone)]
pub struct DeadLetter {
    pub projection: String,
    pub position: String,
    pub requested_by: String,
    pub reason: String,
    pub requested_at: DateTime<Utc>,
    pub event_id: Option<String>,
    pub stream: Option<String>,
    pub stream_version: Option<i64>,
    pub event_type: Option<String>,
    /// The error the projection failed with.
    pub error: Option<String>,
    /// When the projection passed over it (null: not reached yet).
    pub skipped_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct OpsQuery;

#[Object]
impl OpsQuery {
    /// Every projection's position, lag and health (admins: it names hosts and processes and
    /// quotes database errors).
    async fn projections(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ProjectionStatus>> {
        purser_api_core::auth::Viewer::from_ctx(ctx)
            .require(purser_domain::customer::Role::Admin)?;
        let read = ReadContext::from_ctx(ctx);
        let rows = read.checkpoints.all().await.map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|r| ProjectionStatus {
                name: r.name,
                position: r.position.to_string(),
                events_applied: r.events_applied,
                lag_events: r.lag_events,
                lag_seconds: r.lag_seconds,
                status: r.status,
                owner: r.owner,
                last_event_at: r.last_event_at,
                updated_at: r.updated_at,
                last_error: r.last_error,
                failing_position: r.failing_position.map(|p| p.to_string()),
                failures: r.failures,
            })
            .collect())
    }

    /// Events projections were told to pass over, newest first (auditors and admins).
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100, validator(minimum = 1, maximum = 1000))] first: i32,
    ) -> async_graphql::Result<Vec<DeadLetter>> {
        Viewer::from_ctx(ctx).require(Role::Auditor)?;
        let read = ReadContext::from_ctx(ctx);
        let rows = dead_letters::list(&read.pool, i64::from(first))
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|d| DeadLetter {
                projection: d.projection,
                position: d.position.to_string(),
                requested_by: d.requested_by,
                reason: d.reason,
                requested_at: d.requested_at,
                event_id: d.event_id.map(|u| u.to_string()),
                stream: d.stream,
                stream_version: d.stream_version,
                event_type: d.event_type,
                error: d.error,
                skipped_at: d.skipped_at,
            })
            .collect())
    }
}
