//! Reads that walk the log in log order from a position: subscription and `read_all` pages,
//! and the backlog count. They run with the planner held to the `events_log_order` index.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgEventStore;
use super::rows::{decode_event, map_db_error};
use crate::{EventFilter, Head, Position, RecordedEvent, StoreError};

/// One page of the log, and what lies beyond it, all against one horizon.
pub(super) struct Page {
    pub(super) events: Vec<RecordedEvent>,
    /// The last event below the horizon, whatever the filter.
    pub(super) tail: Option<Head>,
    /// Committed events exist beyond the horizon: an older transaction is still running.
    pub(super) held_back: bool,
}

impl PgEventStore {
    /// A transaction for a read that walks the log in log order from a position, at most so
    /// many events: the `events_log_order` index in order is always the plan for it. The row
    /// comparison on (transaction id, position) defeats the planner's row estimates, and on a
    /// large log it picks a parallel index scan for the prepared page read (worker start-ups
    /// competing for the cores) or a sequential scan and sort for the lag count, both far slower
    /// than walking the index in order (BENCHMARKS.md has the figures). The settings last for
    /// this transaction only and go in one round trip with `BEGIN`.
    pub(super) async fn begin_log_walk(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool
            .begin_with(
                "begin; set local max_parallel_workers_per_gather = 0; \
                 set local enable_seqscan = off; set local enable_bitmapscan = off",
            )
            .await
            .map_err(map_db_error)
    }

    /// One page of the log after `after`, plus what the subscriber needs to know about what
    /// lies beyond it. All parts are computed against one horizon.
    pub(super) async fn fetch_page(
        &self,
        after: Position,
        max: usize,
        filter: &EventFilter,
    ) -> Result<Page, StoreError> {
        let sql = self.page_sql();
        let (commit, prepare) = after.to_db();
        let mut tx = self.begin_log_walk().await?;
        let rows = sqlx::query(&sql)
            .bind(commit)
            .bind(prepare)
            .bind(max as i64)
            .bind(non_empty(&filter.categories))
            .bind(non_empty(&filter.event_types))
            .fetch_all(&mut *tx)
            .await
            .map_err(map_db_error)?;
        tx.commit().await.map_err(map_db_error)?;
        decode_page(rows)
    }

    /// The page query: the events (kind 0), the last visible event whatever the filter (kind
    /// 1), and whether anything committed lies beyond the horizon (kind 2).
    fn page_sql(&self) -> String {
        let visible = self.visible();
        // A scalar bound, not a join with `h`: the index range scan then starts at the horizon
        // (or at `after`, whichever is later) instead of reading the whole log for one row,
        // which made every page of a long catch-up cost a sequential scan.
        let held = if self.opts.unsafe_ignore_visibility_horizon {
            "false"
        } else {
            "e.transaction_id >= greatest((select xmin from h), $1::text::xid8)"
        };
        format!(
            r#"
            with h as materialized (select pg_snapshot_xmin(pg_current_snapshot()) as xmin)
            (select 0 as kind, e.transaction_id::text::bigint as tx, e.global_position,
                    e.event_id, e.stream_name, e.stream_version, e.event_type, e.schema_version,
                    e.data, e.metadata, e.recorded_at
             from es.events e, h
             where (e.transaction_id, e.global_position) > ($1::text::xid8, $2)
               and {visible}
               and ($4::text[] is null or e.category = any($4))
               and ($5::text[] is null or e.event_type = any($5))
             order by e.transaction_id, e.global_position
             limit $3)
            union all
            (select 1, e.transaction_id::text::bigint, e.global_position,
                    null::uuid, null::text, null::bigint, null::text, null::integer,
                    null::jsonb, null::jsonb, e.recorded_at
             from es.events e, h
             where {visible}
             order by e.transaction_id desc, e.global_position desc
             limit 1)
            union all
            (select 2, null::bigint, null::bigint, null::uuid, null::text, null::bigint,
                    null::text, null::integer, null::jsonb, null::jsonb, null::timestamptz
             from es.events e
             where {held}
               -- With the bound above, the same as (transaction_id, global_position) > $1/$2,
               -- but as a filter, so the index scan starts at the horizon.
               and (e.transaction_id > $1::text::xid8 or e.global_position > $2)
             order by e.transaction_id, e.global_position
             limit 1)
            "#
        )
    }

    /// How many events matching `filter` lie after `after` (counting stops at `cap`), and when
    /// the oldest of them was recorded.
    pub(super) async fn count_backlog(
        &self,
        after: Position,
        filter: &EventFilter,
        cap: u64,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        let (commit, prepare) = after.to_db();
        let mut tx = self.begin_log_walk().await?;
        let row = sqlx::query(
            "select count(*) as n, min(recorded_at) as oldest from (
                 select e.recorded_at from es.events e
                 where (e.transaction_id, e.global_position) > ($1::text::xid8, $2)
                   and ($4::text[] is null or e.category = any($4))
                   and ($5::text[] is null or e.event_type = any($5))
                 order by e.transaction_id, e.global_position
                 limit $3) s",
        )
        .bind(commit)
        .bind(prepare)
        .bind(cap.min(i64::MAX as u64) as i64)
        .bind(non_empty(&filter.categories))
        .bind(non_empty(&filter.event_types))
        .fetch_one(&mut *tx)
        .await
        .map_err(map_db_error)?;
        tx.commit().await.map_err(map_db_error)?;
        let n: i64 = row.get("n");
        Ok((n as u64, row.get("oldest")))
    }
}

fn decode_page(rows: Vec<PgRow>) -> Result<Page, StoreError> {
    let mut page = Page {
        events: Vec::with_capacity(rows.len()),
        tail: None,
        held_back: false,
    };
    for row in rows {
        let kind: i32 = row.try_get("kind").map_err(map_db_error)?;
        match kind {
            0 => page.events.push(decode_event(&row)?),
            1 => {
                let tx: i64 = row.try_get("tx").map_err(map_db_error)?;
                let pos: i64 = row.try_get("global_position").map_err(map_db_error)?;
                let at: DateTime<Utc> = row.try_get("recorded_at").map_err(map_db_error)?;
                page.tail = Some(Head {
                    position: Position::from_db(tx, pos),
                    recorded_at: at,
                });
            }
            _ => page.held_back = true,
        }
    }
    Ok(page)
}

fn non_empty(v: &[String]) -> Option<&[String]> {
    if v.is_empty() { None } else { Some(v) }
}
