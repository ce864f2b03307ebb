//! Read models and the runtime that keeps them current.
//!
//! A [`Projection`] names the events it reads and writes its rows inside a transaction the
//! runtime hands it; the runtime ([`Projector`]) claims the projection (one process at a time),
//! subscribes to the event log from the projection's checkpoint, applies events in batches and
//! advances the checkpoint in the same transaction. [`Checkpoints`] lets readers wait until the
//! projections they read have reached a position (read-your-writes).

use async_trait::async_trait;
use purser_event_store::{EventFilter, RecordedEvent, StoreError};
use sqlx::PgConnection;

pub mod analytics;
pub mod carts;
pub mod catalog;
mod checkpoints;
pub mod customers;
pub mod orders;
mod runtime;

pub use checkpoints::{CheckpointRow, Checkpoints};
pub use runtime::{
    Claim, Projector, ProjectorOptions, RebuildOutcome, batch_begin, claim, fast_forward,
};

/// A read model fed from the event log.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// A stable name; it keys the checkpoint and the claim.
    fn name(&self) -> &'static str;

    /// The events this projection reads.
    fn filter(&self) -> EventFilter;

    /// The tables it owns, schema-qualified. A rebuild truncates them; replay compares them.
    fn tables(&self) -> &'static [&'static str];

    /// Applies one event inside the runtime's transaction. Must be deterministic: the same
    /// events applied from an empty model always give the same rows.
    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot decode event {event_id} ({event_type}): {reason}")]
    Decode {
        event_id: uuid::Uuid,
        event_type: String,
        reason: String,
    },
    #[error("projection {0} is not known")]
    Unknown(String),
    #[error("{0}")]
    Other(String),
}

/// Decodes a recorded event into the domain's typed events (upcasting older versions).
pub fn decode(event: &RecordedEvent) -> Result<purser_domain::events::AnyEvent, ProjectionError> {
    purser_domain::events::AnyEvent::decode(
        event.stream.category(),
        &event.event_type,
        event.schema_version,
        event.data.clone(),
    )
    .map_err(|e| ProjectionError::Decode {
        event_id: event.id,
        event_type: event.event_type.clone(),
        reason: e.to_string(),
    })
}

/// A checksum of a table's full contents, independent of physical row order: the md5 of every
/// row's text form, sorted. Two tables with the same rows have the same checksum.
pub async fn table_checksum(
    conn: impl sqlx::PgExecutor<'_>,
    table: &str,
) -> Result<(i64, String), sqlx::Error> {
    let sql = format!(
        "select count(*), coalesce(md5(string_agg(md5(t::text), '' order by md5(t::text))), md5(''))
         from {table} t"
    );
    sqlx::query_as::<_, (i64, String)>(&sql)
        .fetch_one(conn)
        .await
}

/// Every projection this build has, in the order they are listed to operators.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(catalog::CatalogProjection),
        std::sync::Arc::new(orders::OrdersProjection),
        std::sync::Arc::new(carts::CartsProjection),
        std::sync::Arc::new(customers::CustomersProjection),
        std::sync::Arc::new(analytics::AnalyticsProjection),
    ]
}
