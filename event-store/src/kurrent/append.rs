//! Appends: decide against what is known of the stream, then write on the condition that the
//! stream has not moved (see `idempotency.rs` for why).

use kurrentdb::{AppendToStreamOptions, EventData, StreamState};
use uuid::Uuid;

use super::KurrentEventStore;
use super::codec::{StoredMetadata, from_kurrent};
use super::errors::map_error;
use super::idempotency::Judgement;
use crate::{
    AppendOutcome, ExpectedVersion, NewEvent, StoreError, StreamName, read_stream_to_end,
    validate_append,
};

/// How often an append decides again after the stream moved underneath it before giving up
/// (the same bound as the Postgres adapter's).
const MAX_ROUNDS: usize = 50;

impl KurrentEventStore {
    pub(super) async fn append_idempotent(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        validate_append(&events)?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let batch = encode(&events)?;
        // Appends to one stream from this process take turns, so they do not spend their
        // rounds failing each other's version conditions; other processes still can, and are
        // caught by the condition.
        let _turn = self.turn(stream).lock().await;
        // Whether what is known of the stream was read in this call: a refusal is reported
        // only on fresh knowledge (another process may have appended these very ids).
        let mut fresh = false;
        for _ in 0..MAX_ROUNDS {
            let Some(judgement) = self.known.judge(stream.as_str(), expected, &ids) else {
                self.catch_up_on(stream).await?;
                fresh = true;
                continue;
            };
            if judgement.needs_fresh_knowledge() && !fresh {
                self.catch_up_on(stream).await?;
                fresh = true;
                continue;
            }
            match judgement {
                Judgement::Duplicate {
                    first_version,
                    last_version,
                } => return self.original(stream, first_version, last_version).await,
                Judgement::Append { at } => {
                    match self.append_at(stream, at, &ids, batch.clone()).await {
                        Err(StoreError::WrongExpectedVersion { .. }) => {
                            self.catch_up_on(stream).await?;
                            fresh = true;
                        }
                        other => return other,
                    }
                }
                Judgement::Conflict { actual } => {
                    return Err(StoreError::WrongExpectedVersion {
                        stream: stream.to_string(),
                        expected: expected.to_string(),
                        actual,
                    });
                }
                Judgement::Mismatch { event_id, detail } => {
                    return Err(StoreError::IdempotencyMismatch { event_id, detail });
                }
            }
        }
        Err(StoreError::Backend(format!(
            "append to {stream} kept racing; gave up"
        )))
    }

    /// Reads what this process does not know of the stream yet (all of it, the first time).
    /// `read_stream` records what it reads.
    async fn catch_up_on(&self, stream: &StreamName) -> Result<(), StoreError> {
        let from = self.known.next(stream.as_str()).unwrap_or(0);
        read_stream_to_end(self, stream, from).await?;
        if self.known.next(stream.as_str()).is_none() {
            // The read did not connect to what was known (a truncated stream): from the start.
            read_stream_to_end(self, stream, 0).await?;
        }
        Ok(())
    }

    /// Appends if the stream is still at `at` (None: does not exist).
    async fn append_at(
        &self,
        stream: &StreamName,
        at: Option<u64>,
        ids: &[Uuid],
        batch: Vec<EventData>,
    ) -> Result<AppendOutcome, StoreError> {
        let state = match at {
            None => StreamState::NoStream,
            Some(v) => StreamState::StreamRevision(v),
        };
        let options = AppendToStreamOptions::default().stream_state(state);
        let result = match self
            .client
            .append_to_stream(stream.as_str(), &options, batch)
            .await
        {
            Ok(result) => result,
            Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                let actual = match current {
                    kurrentdb::CurrentRevision::Current(v) => Some(v),
                    kurrentdb::CurrentRevision::NoStream => None,
                };
                return Err(StoreError::WrongExpectedVersion {
                    stream: stream.to_string(),
                    expected: ExpectedVersion::Exact(at.unwrap_or_default()).to_string(),
                    actual,
                });
            }
            Err(e) => return Err(map_error(e)),
        };
        let n = ids.len() as u64;
        let last_version = result.next_expected_version;
        let first_version = (last_version + 1).saturating_sub(n);
        let events: Vec<(u64, Uuid)> = (first_version..).zip(ids.iter().copied()).collect();
        self.known.observe(stream.as_str(), first_version, &events);
        // The server reports the position of the write's last event (the log position of the
        // prepare that ends the transaction: `StorageChaser` publishes it as `CommitChased`,
        // which becomes the append's result). The first event's is read back when they differ.
        let last_position = from_kurrent(result.position);
        let first_position = if n == 1 {
            last_position
        } else {
            self.read_stream_events(stream, first_version, 1)
                .await?
                .first()
                .map_or(last_position, |e| e.position)
        };
        Ok(AppendOutcome {
            first_version,
            last_version,
            first_position,
            last_position,
            duplicate: false,
        })
    }

    /// The outcome of the original append whose events are at these versions.
    async fn original(
        &self,
        stream: &StreamName,
        first_version: u64,
        last_version: u64,
    ) -> Result<AppendOutcome, StoreError> {
        let span = (last_version - first_version + 1) as usize;
        let stored = self.read_stream_events(stream, first_version, span).await?;
        let (Some(first), Some(last)) = (stored.first(), stored.last()) else {
            return Err(StoreError::Backend(format!(
                "{stream} no longer holds versions {first_version} to {last_version}"
            )));
        };
        Ok(AppendOutcome {
            first_version,
            last_version,
            first_position: first.position,
            last_position: last.position,
            duplicate: true,
        })
    }
}

/// The events as KurrentDB takes them: JSON data, Purser's metadata and schema version as
/// JSON custom metadata.
fn encode(events: &[NewEvent]) -> Result<Vec<EventData>, StoreError> {
    events
        .iter()
        .map(|e| {
            let meta = StoredMetadata {
                schema_version: e.schema_version,
                metadata: e.metadata.clone(),
            };
            EventData::json(&e.event_type, &e.data)
                .and_then(|d| d.id(e.id).metadata_as_json(&meta))
                .map_err(|err| StoreError::InvalidInput(err.to_string()))
        })
        .collect()
}
