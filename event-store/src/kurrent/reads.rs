//! Reads: one stream, the global log, its head, and backlog counts.

use chrono::{DateTime, Utc};
use kurrentdb::{ReadAllOptions, ReadStreamOptions, StreamPosition};
use uuid::Uuid;

use super::KurrentEventStore;
use super::codec::{decode, from_kurrent, matches_raw, recorded_at, server_filter, to_kurrent};
use super::errors::map_error;
use crate::{EventFilter, Head, Position, RecordedEvent, StoreError, StreamName};

/// The newest record of the whole log, KurrentDB's own events included, with an upper bound
/// on how far past its position the record ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LastRecord {
    pub(super) position: Position,
    pub(super) size_bound: u64,
}

/// More than a record's header, stream name and lengths take on disk besides the event's
/// type, data and metadata (a prepare record's fixed part is well under 200 bytes).
const RECORD_OVERHEAD: u64 = 4096;

impl KurrentEventStore {
    pub(super) async fn read_stream_events(
        &self,
        stream: &StreamName,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let options = ReadStreamOptions::default()
            .forwards()
            .position(StreamPosition::Position(from_version))
            .max_count(max);
        let mut read = match self.client.read_stream(stream.as_str(), &options).await {
            Ok(r) => r,
            Err(kurrentdb::Error::ResourceNotFound) => {
                self.known.observe(stream.as_str(), from_version, &[]);
                return Ok(vec![]);
            }
            Err(e) => return Err(map_error(e)),
        };
        let mut out = Vec::new();
        // Every event read, decodable or not, so what is known of the stream has no holes.
        let mut seen: Vec<(u64, Uuid)> = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    let e = resolved.get_original_event();
                    seen.push((e.revision, e.id));
                    if let Some(e) = decode(&resolved)? {
                        out.push(e);
                    }
                }
                Ok(None) => break,
                Err(kurrentdb::Error::ResourceNotFound) => {
                    seen.clear();
                    out.clear();
                    break;
                }
                Err(e) => return Err(map_error(e)),
            }
        }
        self.known.observe(stream.as_str(), from_version, &seen);
        Ok(out)
    }

    pub(super) async fn read_all_events(
        &self,
        after: Position,
        max: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // Reading from a position includes the event at that position; ask for one more.
        let options = ReadAllOptions::default()
            .forwards()
            .position(start_at(after))
            .filter(server_filter(filter))
            .max_count(max.saturating_add(1));
        let mut read = self.client.read_all(&options).await.map_err(map_error)?;
        let mut out = Vec::with_capacity(max.min(1024));
        while let Some(resolved) = read.next().await.map_err(map_error)? {
            if let Some(e) = decode(&resolved)?
                && e.position > after
                && filter.matches(&e.stream, &e.event_type)
            {
                out.push(e);
                if out.len() == max {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn newest(&self) -> Result<Option<Head>, StoreError> {
        let options = ReadAllOptions::default()
            .backwards()
            .position(StreamPosition::End)
            .filter(server_filter(&EventFilter::all()))
            .max_count(1);
        let mut read = self.client.read_all(&options).await.map_err(map_error)?;
        while let Some(resolved) = read.next().await.map_err(map_error)? {
            if let Some(e) = decode(&resolved)? {
                return Ok(Some(Head {
                    position: e.position,
                    recorded_at: e.recorded_at,
                }));
            }
        }
        Ok(None)
    }

    /// The newest record of the log, system events included (None: an empty log).
    pub(super) async fn last_record(&self) -> Result<Option<LastRecord>, StoreError> {
        let options = ReadAllOptions::default()
            .backwards()
            .position(StreamPosition::End)
            .max_count(1);
        let mut read = self.client.read_all(&options).await.map_err(map_error)?;
        let Some(resolved) = read.next().await.map_err(map_error)? else {
            return Ok(None);
        };
        let e = resolved.get_original_event();
        let size = e.data.len() + e.custom_metadata.len() + 2 * e.event_type.len();
        Ok(Some(LastRecord {
            position: from_kurrent(e.position),
            size_bound: size as u64 + e.stream_id().len() as u64 + RECORD_OVERHEAD,
        }))
    }

    /// Counts matching events after `after` (at most `cap`) without decoding their data: the
    /// server has no count, but the stream name, type and recording time are enough.
    pub(super) async fn count_after(
        &self,
        after: Position,
        filter: &EventFilter,
        cap: u64,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        if cap == 0
            || self
                .newest()
                .await?
                .is_none_or(|head| head.position <= after)
        {
            return Ok((0, None));
        }
        let max = usize::try_from(cap).unwrap_or(usize::MAX);
        let options = ReadAllOptions::default()
            .forwards()
            .position(start_at(after))
            .filter(server_filter(filter))
            .max_count(max.saturating_add(1));
        let mut read = self.client.read_all(&options).await.map_err(map_error)?;
        let (mut n, mut oldest) = (0u64, None);
        while let Some(resolved) = read.next().await.map_err(map_error)? {
            let e = resolved.get_original_event();
            if from_kurrent(e.position) > after && matches_raw(e.stream_id(), &e.event_type, filter)
            {
                oldest.get_or_insert_with(|| recorded_at(&e.metadata, e.created));
                n += 1;
                if n == cap {
                    break;
                }
            }
        }
        Ok((n, oldest))
    }
}

fn start_at(after: Position) -> StreamPosition<kurrentdb::Position> {
    if after == Position::START {
        StreamPosition::Start
    } else {
        StreamPosition::Position(to_kurrent(after))
    }
}
