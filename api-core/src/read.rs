//! Read-your-writes: what every resolver that reads read models needs, including mutation
//! payloads that return the entity they changed.

use std::time::Duration;

use async_graphql::Context;
use purser_event_store::Position;
use purser_projections::Checkpoints;
use sqlx::PgPool;

use crate::errors::{api_error, bad_argument, unavailable};

/// Shared by all read resolvers (stored in the schema's data).
#[derive(Clone)]
pub struct ReadContext {
    /// The pool queries read from (a replica, when one is configured).
    pub pool: PgPool,
    pub checkpoints: Checkpoints,
    /// How long a query with `minPosition` waits for the read models at most.
    pub consistency_timeout: Duration,
}

impl ReadContext {
    pub fn from_ctx<'a>(ctx: &Context<'a>) -> &'a ReadContext {
        ctx.data_unchecked::<ReadContext>()
    }

    /// Waits until the given projections have applied everything up to `min_position`
    /// (a string a mutation returned). No position: returns at once.
    pub async fn wait_for(
        &self,
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
        let reached = self
            .checkpoints
            .wait_for(projections, target, self.consistency_timeout)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot read projection checkpoints");
                unavailable()
            })?;
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
