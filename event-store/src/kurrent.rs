//! The KurrentDB adapter (gRPC client crate `kurrentdb`).
//!
//! Streams map one to one. Global positions are KurrentDB's own (commit, prepare) pairs, and
//! KurrentDB's log is written in commit order, so there is no visibility horizon to respect.
//! Subscriptions to `$all` use a server-side filter: by event type or stream prefix when the
//! consumer asks for one, and otherwise one that excludes system events (`$…`). The server's
//! filtered-subscription checkpoints are passed on as [`SubscriptionItem::Checkpoint`].
//!
//! Idempotent appends rely on KurrentDB's own duplicate detection by event id; the schema
//! version and Purser's metadata travel in the event's custom metadata as JSON.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, ReadAllOptions, ReadStreamOptions,
    ResolvedEvent, RetryOptions, StreamPosition, StreamState, SubscribeToAllOptions,
    SubscriptionEvent, SubscriptionFilter,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    AppendOutcome, EventFilter, EventStore, ExpectedVersion, Head, Metadata, NewEvent, Position,
    RecordedEvent, StoreError, StreamName, SubscriptionItem, SubscriptionStream, validate_append,
};

/// The KurrentDB event store. Cheap to clone.
#[derive(Clone)]
pub struct KurrentEventStore {
    client: Client,
}

/// What Purser stores in a KurrentDB event's custom metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredMetadata {
    schema_version: u16,
    #[serde(flatten)]
    metadata: Metadata,
}

/// Checks a KurrentDB connection string without connecting.
pub fn check_url(url: &str) -> Result<(), String> {
    url.parse::<ClientSettings>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl KurrentEventStore {
    /// Parses a connection string such as `kurrentdb://localhost:2113?tls=false`. Does not
    /// connect; call [`KurrentEventStore::check`] for that.
    pub fn from_url(url: &str) -> Result<KurrentEventStore, StoreError> {
        let settings: ClientSettings = url
            .parse()
            .map_err(|e| StoreError::InvalidInput(format!("bad KURRENTDB_URL: {e}")))?;
        let client = Client::new(settings)
            .map_err(|e| StoreError::Unavailable(format!("cannot create KurrentDB client: {e}")))?;
        Ok(KurrentEventStore { client })
    }

    /// Proves the server answers, within `timeout`.
    pub async fn check(&self, timeout: Duration) -> Result<(), StoreError> {
        let options = ReadAllOptions::default().max_count(1);
        let probe = self.client.read_all(&options);
        match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(mut read)) => match tokio::time::timeout(timeout, read.next()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(map_error(e)),
                Err(_) => Err(StoreError::Unavailable(
                    "KurrentDB did not answer in time".into(),
                )),
            },
            Ok(Err(e)) => Err(map_error(e)),
            Err(_) => Err(StoreError::Unavailable(
                "KurrentDB did not answer in time".into(),
            )),
        }
    }
}

fn stream_state(expected: ExpectedVersion) -> StreamState {
    match expected {
        ExpectedVersion::Any => StreamState::Any,
        ExpectedVersion::NoStream => StreamState::NoStream,
        ExpectedVersion::Exists => StreamState::StreamExists,
        ExpectedVersion::Exact(v) => StreamState::StreamRevision(v),
    }
}

fn to_kurrent(p: Position) -> kurrentdb::Position {
    kurrentdb::Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

fn from_kurrent(p: kurrentdb::Position) -> Position {
    Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

/// The server-side filter for an [`EventFilter`], as plain data so it can be tested.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FilterSpec {
    on_stream_name: bool,
    prefixes: Vec<String>,
    exclude_system: bool,
}

fn filter_spec(filter: &EventFilter) -> FilterSpec {
    // KurrentDB filters on either event type or stream name, not both. Event types are the
    // narrower choice; whatever the server lets through is checked again on our side.
    if !filter.event_types.is_empty() {
        FilterSpec {
            on_stream_name: false,
            prefixes: filter.event_types.clone(),
            exclude_system: false,
        }
    } else if !filter.categories.is_empty() {
        FilterSpec {
            on_stream_name: true,
            prefixes: filter.categories.iter().map(|c| format!("{c}-")).collect(),
            exclude_system: false,
        }
    } else {
        FilterSpec {
            on_stream_name: false,
            prefixes: vec![],
            exclude_system: true,
        }
    }
}

fn server_filter(spec: &FilterSpec) -> SubscriptionFilter {
    let mut f = if spec.on_stream_name {
        SubscriptionFilter::on_stream_name()
    } else {
        SubscriptionFilter::on_event_type()
    };
    for p in &spec.prefixes {
        f = f.add_prefix(p);
    }
    if spec.exclude_system {
        f = f.exclude_system_events();
    }
    f
}

fn decode(resolved: &ResolvedEvent) -> Result<Option<RecordedEvent>, StoreError> {
    let e = resolved.get_original_event();
    if e.stream_id().starts_with('$') || e.event_type.starts_with('$') {
        return Ok(None);
    }
    let stream = StreamName::new(e.stream_id())?;
    let stored: StoredMetadata = if e.custom_metadata.is_empty() {
        StoredMetadata {
            schema_version: 1,
            metadata: Metadata::default(),
        }
    } else {
        serde_json::from_slice(&e.custom_metadata)
            .map_err(|err| StoreError::Backend(format!("bad metadata on {}: {err}", e.id)))?
    };
    let data = serde_json::from_slice(&e.data)
        .map_err(|err| StoreError::Backend(format!("event {} is not JSON: {err}", e.id)))?;
    Ok(Some(RecordedEvent {
        id: e.id,
        stream,
        version: e.revision,
        position: from_kurrent(e.position),
        event_type: e.event_type.clone(),
        schema_version: stored.schema_version,
        data,
        metadata: stored.metadata,
        recorded_at: e.created,
    }))
}

fn map_error(e: kurrentdb::Error) -> StoreError {
    use kurrentdb::Error as K;
    match e {
        K::ConnectionClosed
        | K::GrpcConnectionError(_)
        | K::DeadlineExceeded
        | K::NotLeaderException(_) => StoreError::Unavailable(e.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
}

#[async_trait::async_trait]
impl EventStore for KurrentEventStore {
    fn kind(&self) -> &'static str {
        "kurrentdb"
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        validate_append(&events)?;
        let n = events.len() as u64;
        let mut batch = Vec::with_capacity(events.len());
        for e in &events {
            let meta = StoredMetadata {
                schema_version: e.schema_version,
                metadata: e.metadata.clone(),
            };
            let data = kurrentdb::EventData::json(&e.event_type, &e.data)
                .and_then(|d| d.id(e.id).metadata_as_json(&meta))
                .map_err(|err| StoreError::InvalidInput(err.to_string()))?;
            batch.push(data);
        }
        let options = AppendToStreamOptions::default().stream_state(stream_state(expected));
        match self
            .client
            .append_to_stream(stream.as_str(), &options, batch)
            .await
        {
            Ok(result) => {
                let last = result.next_expected_version;
                let position = from_kurrent(result.position);
                Ok(AppendOutcome {
                    first_version: (last + 1).saturating_sub(n),
                    last_version: last,
                    // KurrentDB reports the position of the write as a whole.
                    first_position: position,
                    last_position: position,
                    duplicate: false,
                })
            }
            Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                let actual = match current {
                    kurrentdb::CurrentRevision::Current(v) => Some(v),
                    kurrentdb::CurrentRevision::NoStream => None,
                };
                Err(StoreError::WrongExpectedVersion {
                    stream: stream.to_string(),
                    expected: expected.to_string(),
                    actual,
                })
            }
            Err(e) => Err(map_error(e)),
        }
    }

    async fn read_stream(
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
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(vec![]),
            Err(e) => return Err(map_error(e)),
        };
        let mut out = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(e) = decode(&resolved)? {
                        out.push(e);
                    }
                }
                Ok(None) => return Ok(out),
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(vec![]),
                Err(e) => return Err(map_error(e)),
            }
        }
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let start = if after == Position::START {
            StreamPosition::Start
        } else {
            StreamPosition::Position(to_kurrent(after))
        };
        // Reading from a position includes the event at that position; ask for one more.
        let options = ReadAllOptions::default()
            .forwards()
            .position(start)
            .filter(server_filter(&filter_spec(filter)))
            .max_count(max + 1);
        let mut read = self.client.read_all(&options).await.map_err(map_error)?;
        let mut out = Vec::with_capacity(max);
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

    fn subscribe(&self, after: Position, filter: EventFilter) -> SubscriptionStream {
        let (tx, rx) = mpsc::channel(1024);
        let client = self.client.clone();
        tokio::spawn(async move {
            let start = if after == Position::START {
                StreamPosition::Start
            } else {
                StreamPosition::Position(to_kurrent(after))
            };
            let options = SubscribeToAllOptions::default()
                .position(start)
                .filter(server_filter(&filter_spec(&filter)))
                .retry_options(RetryOptions::default().retry_forever());
            let mut sub = client.subscribe_to_all(&options).await;
            let mut last = after;
            loop {
                let item = match sub.next_subscription_event().await {
                    Ok(SubscriptionEvent::EventAppeared(resolved)) => match decode(&resolved) {
                        Ok(Some(e))
                            if e.position > last && filter.matches(&e.stream, &e.event_type) =>
                        {
                            last = e.position;
                            SubscriptionItem::Event(Box::new(e))
                        }
                        Ok(_) => continue,
                        Err(err) => {
                            let _ = tx.send(Err(err)).await;
                            return;
                        }
                    },
                    Ok(SubscriptionEvent::Checkpoint(p)) => {
                        let p = from_kurrent(p);
                        if p <= last {
                            continue;
                        }
                        last = p;
                        SubscriptionItem::Checkpoint(p)
                    }
                    Ok(_) => continue,
                    Err(err) => {
                        let _ = tx.send(Err(map_error(err))).await;
                        return;
                    }
                };
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }

    async fn head(&self) -> Result<Option<Head>, StoreError> {
        let options = ReadAllOptions::default()
            .backwards()
            .position(StreamPosition::End)
            .filter(server_filter(&filter_spec(&EventFilter::all())))
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

    async fn backlog(
        &self,
        after: Position,
        filter: &EventFilter,
        cap: u64,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        // KurrentDB has no count; read forward, bounded by the cap.
        let page = self
            .read_all(after, cap.min(100_000) as usize, filter)
            .await?;
        Ok((page.len() as u64, page.first().map(|e| e.recorded_at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_versions_map_to_stream_states() {
        assert_eq!(stream_state(ExpectedVersion::Any), StreamState::Any);
        assert_eq!(
            stream_state(ExpectedVersion::NoStream),
            StreamState::NoStream
        );
        assert_eq!(
            stream_state(ExpectedVersion::Exists),
            StreamState::StreamExists
        );
        assert_eq!(
            stream_state(ExpectedVersion::Exact(7)),
            StreamState::StreamRevision(7)
        );
    }

    #[test]
    fn positions_map_both_ways_and_keep_their_order() {
        let a = Position::new(10, 5);
        let b = Position::new(11, 2);
        assert_eq!(from_kurrent(to_kurrent(a)), a);
        assert_eq!(a < b, to_kurrent(a) < to_kurrent(b));
    }

    #[test]
    fn filters_exclude_system_events_unless_narrowed() {
        assert_eq!(
            filter_spec(&EventFilter::all()),
            FilterSpec {
                on_stream_name: false,
                prefixes: vec![],
                exclude_system: true
            }
        );
        assert_eq!(
            filter_spec(&EventFilter::categories(["order", "cart"])),
            FilterSpec {
                on_stream_name: true,
                prefixes: vec!["order-".into(), "cart-".into()],
                exclude_system: false
            }
        );
        let by_type = filter_spec(&EventFilter {
            categories: vec!["order".into()],
            event_types: vec!["OrderPlaced".into()],
        });
        assert!(!by_type.on_stream_name);
        assert_eq!(by_type.prefixes, vec!["OrderPlaced".to_string()]);
    }

    #[test]
    fn metadata_carries_the_schema_version() {
        let stored = StoredMetadata {
            schema_version: 3,
            metadata: Metadata {
                actor: Some("admin:1".into()),
                ..Default::default()
            },
        };
        let json = serde_json::to_value(&stored).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"schema_version": 3, "actor": "admin:1"})
        );
        let back: StoredMetadata = serde_json::from_value(json).unwrap();
        assert_eq!(back, stored);
    }

    #[test]
    fn bad_urls_are_reported_not_panicked() {
        assert!(matches!(
            KurrentEventStore::from_url("not a url"),
            Err(StoreError::InvalidInput(_))
        ));
    }
}
