//! Read-only reads for the auditing tools: event hashes for the sealer, hash-chain checks for
//! the verifier, and stored hashes by sequence number for exports.

use std::collections::HashMap;

use sqlx::Row;
use uuid::Uuid;

use super::PgEventStore;
use super::rows::map_db_error;
use crate::{Position, StoreError};

/// One event of the log as the auditing tools see it: where it is, which stream version it
/// claims to be, its stored hash, and what the database finds when it recomputes that hash.
///
/// The stream name is kept as raw text: a row edited by hand may no longer hold a valid name,
/// and the verifier must report such a row rather than fail on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub position: Position,
    pub event_id: Uuid,
    pub stream: String,
    pub version: u64,
    /// The hash stored with the event (32 bytes unless the row was tampered with).
    pub hash: Vec<u8>,
    /// `es.event_hash` recomputed from the stored content and the stored hash of version − 1
    /// equals the stored hash.
    pub hash_matches: bool,
    /// Version − 1 of the same stream exists (always true for version 0).
    pub has_predecessor: bool,
}

/// An event's position and stored hash, which is all a seal needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedHash {
    pub position: Position,
    pub hash: Vec<u8>,
}

/// Reading for auditors: the same log order and commit-visibility horizon as
/// [`EventStore::read_all`](crate::EventStore::read_all) (so a page never changes once read),
/// but yielding hashes instead of payloads. Nothing here writes or locks: the sealer and the
/// verifier must never slow appends down.
impl PgEventStore {
    /// Up to `max` events strictly after `after`, in log order, with their stored hashes.
    pub async fn read_hashes(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<LoggedHash>, StoreError> {
        let sql = format!(
            "with h as materialized (select pg_snapshot_xmin(pg_current_snapshot()) as xmin)
             select e.transaction_id::text::bigint as tx, e.global_position, e.hash
             from es.events e, h
             where (e.transaction_id, e.global_position) > ($1::text::xid8, $2)
               and {}
             order by e.transaction_id, e.global_position
             limit $3",
            self.visible()
        );
        let (commit, prepare) = after.to_db();
        let rows = sqlx::query(&sql)
            .bind(commit)
            .bind(prepare)
            .bind(max.min(i64::MAX as usize) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(map_db_error)?;
        rows.iter()
            .map(|r| {
                Ok(LoggedHash {
                    position: Position::from_db(
                        r.try_get("tx").map_err(map_db_error)?,
                        r.try_get("global_position").map_err(map_db_error)?,
                    ),
                    hash: r.try_get("hash").map_err(map_db_error)?,
                })
            })
            .collect()
    }

    /// Up to `max` events strictly after `after`, in log order, each checked against its
    /// stream's hash chain by the database itself: `es.event_hash` is recomputed from the
    /// stored content and the stored hash of the previous version (found through the unique
    /// (stream, version) index, so the check needs no memory of earlier pages).
    pub async fn read_chain(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<ChainLink>, StoreError> {
        let sql = format!(
            "with h as materialized (select pg_snapshot_xmin(pg_current_snapshot()) as xmin)
             select e.transaction_id::text::bigint as tx, e.global_position, e.event_id,
                    e.stream_name, e.stream_version, e.hash,
                    (e.stream_version = 0 or p.global_position is not null) as has_predecessor,
                    coalesce(es.event_hash(p.hash, e.event_id, e.stream_name, e.stream_version,
                                           e.event_type, e.schema_version, e.data, e.metadata,
                                           e.recorded_at) = e.hash, false) as hash_matches
             from es.events e
             cross join h
             left join es.events p
                    on p.stream_name = e.stream_name and p.stream_version = e.stream_version - 1
             where (e.transaction_id, e.global_position) > ($1::text::xid8, $2)
               and {}
             order by e.transaction_id, e.global_position
             limit $3",
            self.visible()
        );
        let (commit, prepare) = after.to_db();
        let rows = sqlx::query(&sql)
            .bind(commit)
            .bind(prepare)
            .bind(max.min(i64::MAX as usize) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(map_db_error)?;
        rows.iter()
            .map(|r| {
                let get = |e: sqlx::Error| map_db_error(e);
                Ok(ChainLink {
                    position: Position::from_db(
                        r.try_get("tx").map_err(get)?,
                        r.try_get("global_position").map_err(get)?,
                    ),
                    event_id: r.try_get("event_id").map_err(get)?,
                    stream: r.try_get("stream_name").map_err(get)?,
                    version: r.try_get::<i64, _>("stream_version").map_err(get)?.max(0) as u64,
                    hash: r.try_get("hash").map_err(get)?,
                    hash_matches: r.try_get("hash_matches").map_err(get)?,
                    has_predecessor: r.try_get("has_predecessor").map_err(get)?,
                })
            })
            .collect()
    }

    /// The stored hashes of the events with these global sequence numbers (the `prepare`
    /// half of a Postgres position), for exports that carry each event's hash.
    pub async fn hashes_of(&self, prepares: &[u64]) -> Result<HashMap<u64, Vec<u8>>, StoreError> {
        let ids: Vec<i64> = prepares
            .iter()
            .map(|p| (*p).min(i64::MAX as u64) as i64)
            .collect();
        let rows = sqlx::query(
            "select global_position, hash from es.events where global_position = any($1)",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(map_db_error)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("global_position")
                        .map_err(map_db_error)?
                        .max(0) as u64,
                    r.try_get("hash").map_err(map_db_error)?,
                ))
            })
            .collect()
    }
}
