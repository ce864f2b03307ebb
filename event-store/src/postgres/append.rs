//! Appending: one call of `es.append_events` per attempt, retried when a race for the next
//! version number was lost, and recognising a retried append by its event ids.

use sqlx::Row;
use sqlx::postgres::{PgDatabaseError, PgRow};
use uuid::Uuid;

use super::PgEventStore;
use super::rows::map_db_error;
use crate::{
    AppendOutcome, ExpectedVersion, NewEvent, Position, StoreError, StreamName, validate_append,
};

impl PgEventStore {
    /// Appends `events` to `stream` if its version is as `expected`; a repeat of an earlier
    /// append with the same event ids returns that append's outcome and appends nothing.
    pub(super) async fn append_events(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        validate_append(&events)?;
        // "Any" and "Exists" cannot be wrong about a version, so losing a race for the next
        // version number just means trying again with the new one.
        const MAX_RACES: usize = 50;
        for _ in 0..MAX_RACES {
            let mut conn = self.pool.acquire().await.map_err(map_db_error)?;
            let attempt = self
                .try_append(&mut conn, stream, expected, &events)
                .await?;
            drop(conn);
            let conflict_actual = match attempt {
                Attempt::Appended(outcome) => {
                    self.announce().await;
                    return Ok(outcome);
                }
                Attempt::WrongVersion { actual } => actual,
                Attempt::UniqueViolation { constraint } => {
                    if constraint == "events_stream_version_key"
                        && matches!(expected, ExpectedVersion::Any | ExpectedVersion::Exists)
                    {
                        continue;
                    }
                    self.current_version(stream).await?
                }
            };
            // A failed append may be the retry of one that succeeded.
            if let Some(original) = self.find_duplicate(stream, &events).await? {
                return Ok(original);
            }
            return Err(StoreError::WrongExpectedVersion {
                stream: stream.to_string(),
                expected: expected.to_string(),
                actual: conflict_actual,
            });
        }
        Err(StoreError::Backend(format!(
            "append to {stream} kept racing; gave up"
        )))
    }

    /// When an append fails, decides whether it was a repeat of an earlier append with the
    /// same event ids (then returns that append's outcome).
    pub(super) async fn find_duplicate(
        &self,
        stream: &StreamName,
        events: &[NewEvent],
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let rows = sqlx::query(
            "select event_id, stream_name, stream_version, global_position,
                    transaction_id::text::bigint as tx
             from es.events where event_id = any($1)
             order by stream_version",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(map_db_error)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mismatch = |detail: String| {
            let event_id = rows[0].get::<Uuid, _>("event_id");
            Err(StoreError::IdempotencyMismatch { event_id, detail })
        };
        if rows.len() != ids.len() {
            return mismatch(format!(
                "{} of the {} event ids are already stored",
                rows.len(),
                ids.len()
            ));
        }
        if let Some(other) = rows
            .iter()
            .map(|r| r.get::<String, _>("stream_name"))
            .find(|s| s != stream.as_str())
        {
            return mismatch(format!("stored in stream {other}, not {stream}"));
        }
        let first = &rows[0];
        let last = &rows[rows.len() - 1];
        let pos = |r: &PgRow| Position::from_db(r.get("tx"), r.get("global_position"));
        Ok(Some(AppendOutcome {
            first_version: first.get::<i64, _>("stream_version") as u64,
            last_version: last.get::<i64, _>("stream_version") as u64,
            first_position: pos(first),
            last_position: pos(last),
            duplicate: true,
        }))
    }

    pub(super) async fn current_version(
        &self,
        stream: &StreamName,
    ) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("select max(stream_version) from es.events where stream_name = $1")
                .bind(stream.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(map_db_error)?;
        Ok(v.map(|v| v as u64))
    }

    /// One call of `es.append_events` on `conn` (a pooled connection, or a transaction that
    /// appends to several streams).
    pub(super) async fn try_append(
        &self,
        conn: &mut sqlx::PgConnection,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<Attempt, StoreError> {
        let expected_code: i64 = match expected {
            ExpectedVersion::Any => -1,
            ExpectedVersion::NoStream => -2,
            ExpectedVersion::Exists => -3,
            ExpectedVersion::Exact(v) => v as i64,
        };
        let mut ids = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut versions = Vec::with_capacity(events.len());
        let mut data = Vec::with_capacity(events.len());
        let mut metadata = Vec::with_capacity(events.len());
        for e in events {
            ids.push(e.id);
            types.push(e.event_type.as_str());
            versions.push(i32::from(e.schema_version));
            data.push(&e.data);
            metadata.push(serde_json::to_value(&e.metadata).expect("metadata serialises"));
        }
        let result = sqlx::query(
            "select o_status, o_version, o_first_position, o_last_position, o_transaction_id
             from es.append_events($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(stream.as_str())
        .bind(expected_code)
        .bind(&ids)
        .bind(&types)
        .bind(&versions)
        .bind(&data)
        .bind(&metadata)
        .fetch_one(conn)
        .await;
        let row = match result {
            Ok(row) => row,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => {
                let constraint = db
                    .try_downcast_ref::<PgDatabaseError>()
                    .and_then(|e| e.constraint())
                    .unwrap_or_default()
                    .to_owned();
                return Ok(Attempt::UniqueViolation { constraint });
            }
            Err(e) => return Err(map_db_error(e)),
        };
        let status: i32 = row.get("o_status");
        let version: Option<i64> = row.get("o_version");
        if status != 0 {
            return Ok(Attempt::WrongVersion {
                actual: version.map(|v| v as u64),
            });
        }
        let tx: i64 = row.get("o_transaction_id");
        let last_version = version.unwrap_or_default() as u64;
        Ok(Attempt::Appended(AppendOutcome {
            first_version: last_version + 1 - events.len() as u64,
            last_version,
            first_position: Position::from_db(tx, row.get("o_first_position")),
            last_position: Position::from_db(tx, row.get("o_last_position")),
            duplicate: false,
        }))
    }
}

/// What one call of `es.append_events` came to.
pub(super) enum Attempt {
    Appended(AppendOutcome),
    WrongVersion { actual: Option<u64> },
    UniqueViolation { constraint: String },
}
