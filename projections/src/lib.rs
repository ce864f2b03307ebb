//! Read models and the runtime that keeps them current.
//!
//! A [`Projection`] names the events it reads and writes its rows inside a transaction the
//! runtime hands it; the runtime ([`Projector`]) claims the projection (one process at a time),
//! subscribes to the event log from the projection's checkpoint, applies events in batches and
//! advances the checkpoint in the same transaction. [`Checkpoints`] lets readers wait until the
//! projections they read have reached a position (read-your-writes).

use async_trait::async_trait;
use purser_event_store::{EventFilter, Position, RecordedEvent, StoreError};
use sqlx::PgConnection;

pub mod analytics;
pub mod carts;
pub mod catalog;
mod checkpoints;
pub mod customers;
pub mod dead_letters;
pub mod orders;
mod runtime;
mod skips;

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

    /// Applies a batch of events (already filtered, in log order) inside the runtime's
    /// transaction; the runtime always calls this. The default applies them one by one. A
    /// projection may write several events' rows in one statement instead, as long as the rows
    /// are exactly those of applying the events one by one, and `apply` must then be this with
    /// a batch of one, so that there is one way to write a row.
    ///
    /// An error names the event when the batch has one; after a failed batch the runtime
    /// retries event by event, so the error recorded for operators names the failing event.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for e in events {
            tracing::Instrument::instrument(self.apply(tx, e), project_span(self.name(), e))
                .await
                .map_err(|err| failed_at(self.name(), e, err))?;
        }
        Ok(())
    }
}

/// The span of one event's projection write, under the correlation and causation ids the
/// event carries, so an exported trace follows a request into the read models (debug level:
/// one per event). A projection that writes a batch's rows together enters it while it takes
/// the event in.
pub fn project_span(projection: &str, e: &RecordedEvent) -> tracing::Span {
    tracing::debug_span!(
        "project",
        projection,
        event_type = %e.event_type,
        position = %e.position,
        correlation_id = e.metadata.correlation_id.map(tracing::field::display),
        causation_id = e.metadata.causation_id.map(tracing::field::display),
    )
}

/// One column of rows, as the array a statement binds for `unnest(…)`.
pub(crate) fn column<'a, T, U>(rows: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// A projection's error, located at the event it failed on.
pub fn failed_at(projection: &str, e: &RecordedEvent, err: ProjectionError) -> ProjectionError {
    ProjectionError::Other(format!(
        "{projection} failed at {} ({} in {}): {err}",
        e.position, e.event_type, e.stream
    ))
}

/// A projection's error in a statement that wrote several events' rows: located at the one
/// event when there was one, else at the batch's range (the runtime then retries event by
/// event).
pub fn failed_in(
    projection: &str,
    events: &[&RecordedEvent],
    err: ProjectionError,
) -> ProjectionError {
    match events {
        [e] => failed_at(projection, e, err),
        [first, .., last] => ProjectionError::Other(format!(
            "{projection} failed in the batch {}..={}: {err}",
            first.position, last.position
        )),
        [] => err,
    }
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
    /// A failure applying the one event at `position`.
    #[error("event at position {position}: {source}")]
    At {
        position: Position,
        #[source]
        source: Box<ProjectionError>,
    },
}

impl ProjectionError {
    /// The position of the event this failed on, when it failed on one event.
    pub fn failing_position(&self) -> Option<Position> {
        match self {
            ProjectionError::At { position, .. } => Some(*position),
            _ => None,
        }
    }
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
