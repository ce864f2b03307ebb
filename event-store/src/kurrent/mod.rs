//! The KurrentDB adapter (gRPC client crate `kurrentdb`).
//!
//! Streams map one to one. Global positions are KurrentDB's own (commit, prepare) pairs, and
//! KurrentDB's log is written in commit order, so there is no visibility horizon to respect.
//! Subscriptions to `$all` use a server-side filter: by event type or stream prefix when the
//! consumer asks for one, and otherwise one that excludes system events (`$…`). The schema
//! version and Purser's metadata travel in the event's custom metadata as JSON.
//!
//! What the adapter adds to the server, and why: appends that recognise a repeat whatever
//! expected version it names (`idempotency.rs`, `append.rs`), checkpoints at the head of a quiet
//! log (`subscription.rs`), recording times to the microsecond (`codec.rs`), and transient
//! server states reported as `Unavailable` (`errors.rs`).

mod append;
mod codec;
mod errors;
mod idempotency;
mod reads;
mod subscription;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kurrentdb::{Client, ClientSettings, ReadAllOptions};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use self::errors::map_error;
use self::idempotency::KnownStreams;
use crate::{
    AppendOutcome, EventFilter, EventStore, ExpectedVersion, Head, NewEvent, Position,
    RecordedEvent, StoreError, StreamName, SubscriptionStream,
};

/// Appends to one stream from one process take turns on one of this many locks.
const TURN_STRIPES: usize = 256;

/// The KurrentDB event store. Cheap to clone; clones share what they know of streams.
#[derive(Clone)]
pub struct KurrentEventStore {
    client: Client,
    known: Arc<KnownStreams>,
    turns: Arc<Vec<tokio::sync::Mutex<()>>>,
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
        Ok(KurrentEventStore {
            client,
            known: Arc::new(KnownStreams::default()),
            turns: Arc::new(
                (0..TURN_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            ),
        })
    }

    /// Proves that a leader answers, within `timeout`. Every request of this client needs
    /// the leader (the connection string's `nodePreference` defaults to it, and the crate then
    /// sends `requires-leader`), so a node that is starting or still electing one answers
    /// `Unavailable`.
    pub async fn check(&self, timeout: Duration) -> Result<(), StoreError> {
        let late = || StoreError::Unavailable("KurrentDB did not answer in time".into());
        let options = ReadAllOptions::default().max_count(1);
        let mut read = tokio::time::timeout(timeout, self.client.read_all(&options))
            .await
            .map_err(|_| late())?
            .map_err(map_error)?;
        tokio::time::timeout(timeout, read.next())
            .await
            .map_err(|_| late())?
            .map_err(map_error)?;
        Ok(())
    }

    /// Waits up to `patience` for a leader to answer (a cluster electing one, a node still
    /// starting), checking every second; any other failure is reported at once.
    pub async fn wait_for_leader(&self, patience: Duration) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match self.check(Duration::from_secs(5)).await {
                Err(StoreError::Unavailable(why)) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(reason = %why, "waiting for a KurrentDB leader");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => return other,
            }
        }
    }

    fn turn(&self, stream: &StreamName) -> &tokio::sync::Mutex<()> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in stream.as_str().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        &self.turns[(h % TURN_STRIPES as u64) as usize]
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
        self.append_idempotent(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream_events(stream, from_version, max).await
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all_events(after, max, filter).await
    }

    fn subscribe(&self, after: Position, filter: EventFilter) -> SubscriptionStream {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(self.clone().feed(after, filter, tx));
        Box::pin(ReceiverStream::new(rx))
    }

    async fn head(&self) -> Result<Option<Head>, StoreError> {
        self.newest().await
    }

    async fn backlog(
        &self,
        after: Position,
        filter: &EventFilter,
        cap: u64,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        self.count_after(after, filter, cap).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_reported_not_panicked() {
        assert!(matches!(
            KurrentEventStore::from_url("not a url"),
            Err(StoreError::InvalidInput(_))
        ));
    }
}
