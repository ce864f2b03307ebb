//! Point reads: one stream in stream order, and the newest event (below the horizon or not).

use sqlx::Row;

use super::PgEventStore;
use super::rows::{decode_event, map_db_error};
use crate::{Head, Position, RecordedEvent, StoreError, StreamName};

impl PgEventStore {
    /// The newest event among those matching `condition` (over `es.events e` and horizon `h`).
    pub(super) async fn newest(&self, condition: &str) -> Result<Option<Head>, StoreError> {
        let sql = format!(
            "with h as materialized (select pg_snapshot_xmin(pg_current_snapshot()) as xmin)
             select e.transaction_id::text::bigint as tx, e.global_position, e.recorded_at
             from es.events e, h where {condition}
             order by e.transaction_id desc, e.global_position desc limit 1"
        );
        let row = sqlx::query(&sql)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_db_error)?;
        Ok(row.map(|r| Head {
            position: Position::from_db(r.get("tx"), r.get("global_position")),
            recorded_at: r.get("recorded_at"),
        }))
    }

    /// The condition (over `es.events e` and horizon `h`) a row must meet to be read: written
    /// by a transaction below the commit-visibility horizon.
    pub(super) fn visible(&self) -> &'static str {
        if self.opts.unsafe_ignore_visibility_horizon {
            "true"
        } else {
            "e.transaction_id < h.xmin"
        }
    }

    /// Up to `max` events of one stream from `from_version` on, in stream order.
    pub(super) async fn read_stream_events(
        &self,
        stream: &StreamName,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(
            "select 0 as kind, e.transaction_id::text::bigint as tx, e.global_position,
                    e.event_id, e.stream_name, e.stream_version, e.event_type, e.schema_version,
                    e.data, e.metadata, e.recorded_at
             from es.events e
             where e.stream_name = $1 and e.stream_version >= $2
             order by e.stream_version
             limit $3",
        )
        .bind(stream.as_str())
        .bind(from_version.min(i64::MAX as u64) as i64)
        .bind(max.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(map_db_error)?;
        rows.iter().map(decode_event).collect()
    }
}
