//! Decoding rows of `es.events` and mapping database errors onto [`StoreError`].

use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::{Metadata, Position, RecordedEvent, StoreError, StreamName};

/// One event row (the columns every event read selects) as a [`RecordedEvent`].
pub(super) fn decode_event(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Backend(format!("stored event has a bad {what}: {e}"))
    };
    let tx: i64 = row.try_get("tx").map_err(map_db_error)?;
    let global: i64 = row.try_get("global_position").map_err(map_db_error)?;
    let stream: String = row.try_get("stream_name").map_err(map_db_error)?;
    let metadata: serde_json::Value = row.try_get("metadata").map_err(map_db_error)?;
    let schema_version: i32 = row.try_get("schema_version").map_err(map_db_error)?;
    Ok(RecordedEvent {
        id: row.try_get("event_id").map_err(map_db_error)?,
        stream: StreamName::new(stream).map_err(|e| corrupt("stream name", &e))?,
        version: row
            .try_get::<i64, _>("stream_version")
            .map_err(map_db_error)? as u64,
        position: Position::from_db(tx, global),
        event_type: row.try_get("event_type").map_err(map_db_error)?,
        schema_version: u16::try_from(schema_version).map_err(|e| corrupt("schema version", &e))?,
        data: row.try_get("data").map_err(map_db_error)?,
        metadata: serde_json::from_value::<Metadata>(metadata)
            .map_err(|e| corrupt("metadata", &e))?,
        recorded_at: row.try_get("recorded_at").map_err(map_db_error)?,
    })
}

/// Connection trouble is `Unavailable` (retry later, 503); anything else is a backend error.
pub(crate) fn map_db_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
}
