//! Operational queries: projection health.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use purser_api_core::ReadContext;
use purser_api_core::errors::db_error;

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
}

#[derive(Default)]
pub struct OpsQuery;

#[Object]
impl OpsQuery {
    /// Every projection's position, lag and health.
    async fn projections(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ProjectionStatus>> {
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
            })
            .collect())
    }
}
