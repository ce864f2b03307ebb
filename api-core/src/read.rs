//! Read-your-writes: what every resolver that reads read models needs, including mutation
//! payloads that return the entity they changed.
//!
//! A wait is bounded twice. Per request: every field of one request that waits shares one
//! deadline ([`WaitDeadline`]), so a document with many waiting fields waits at most once.
//! Per process: at most a fixed number of requests wait at once; beyond it a query gets a fast
//! `UNAVAILABLE` with a retry hint rather than a place in a queue that a client could grow.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_graphql::{Context, ErrorExtensions};
use purser_event_store::Position;
use purser_projections::Checkpoints;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::errors::{api_error, bad_argument, unavailable};

/// Shared by all read resolvers (stored in the schema's data).
#[derive(Clone)]
pub struct ReadContext {
    /// The pool queries read from (a replica, when one is configured).
    pub pool: PgPool,
    pub checkpoints: Checkpoints,
    /// How long one request waits for the read models at most, however many of its fields
    /// ask to.
    pub consistency_timeout: Duration,
    waiters: Arc<Semaphore>,
}

/// The moment a request's read-your-writes waits give up, set by its first wait. The HTTP and
/// WebSocket layers put a fresh one in every request's data.
#[derive(Debug, Default)]
pub struct WaitDeadline(OnceLock<Instant>);

impl ReadContext {
    /// `max_waiters`: requests of this process that may wait at once.
    pub fn new(
        pool: PgPool,
        checkpoints: Checkpoints,
        consistency_timeout: Duration,
        max_waiters: usize,
    ) -> ReadContext {
        ReadContext {
            pool,
            checkpoints,
            consistency_timeout,
            waiters: Arc::new(Semaphore::new(max_waiters)),
        }
    }

    pub fn from_ctx<'a>(ctx: &Context<'a>) -> &'a ReadContext {
        ctx.data_unchecked::<ReadContext>()
    }

    /// Waits until the given projections have applied everything up to `min_position`
    /// (a string a mutation returned). No position: returns at once.
    pub async fn wait_for(
        &self,
        ctx: &Context<'_>,
        projections: &[&str],
        min_position: Option<&str>,
    ) -> async_graphql::Result<()> {
        let Some(raw) = min_position else {
            return Ok(());
        };
        let target: Position =
            raw.parse()
                .map_err(|e: purser_event_store::PositionParseError| {
                    bad_argument("minPosition", e.to_string())
                })?;
        let checkpoints_down = |e: sqlx::Error| {
            tracing::error!(error = %e, "cannot read projection checkpoints");
            unavailable()
        };
        // Most waits are over before they begin: those take no waiter's place.
        if self
            .checkpoints
            .reached(projections, target)
            .await
            .map_err(checkpoints_down)?
        {
            return Ok(());
        }
        let now = Instant::now();
        let deadline = match ctx.data_opt::<WaitDeadline>() {
            Some(d) => *d.0.get_or_init(|| now + self.consistency_timeout),
            None => now + self.consistency_timeout,
        };
        let Ok(_place) = self.waiters.try_acquire() else {
            return Err(api_error(
                "UNAVAILABLE",
                "too many requests are waiting for the read models right now; retry shortly",
            )
            .extend_with(|_, e| e.set("retryAfterMs", 200)));
        };
        let reached = self
            .checkpoints
            .wait_for(projections, target, deadline.saturating_duration_since(now))
            .await
            .map_err(checkpoints_down)?;
        if reached {
            Ok(())
        } else {
            Err(api_error(
                "CONSISTENCY_TIMEOUT",
                format!(
                    "the read models did not reach position {target} within {} ms; the write is \
                     safe, retry the query shortly",
                    self.consistency_timeout.as_millis()
                ),
            ))
        }
    }
}
