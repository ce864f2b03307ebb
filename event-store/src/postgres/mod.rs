//! The Postgres adapter: `es.events` and `es.append_events` (see migrations/0001_event_store.sql).
//!
//! Reading order and the commit-visibility horizon. Global positions come from a sequence, so
//! they are taken when a transaction inserts, not when it commits. Readers therefore take only
//! rows written by transactions below `pg_snapshot_xmin(pg_current_snapshot())`, all of which
//! have finished, and read them in (transaction id, global position) order. A transaction that
//! is still running has an id at or above the horizon, so whatever it commits later sorts after
//! everything already delivered: nothing is skipped and nothing is seen twice.
//!
//! Waking readers. An append does not NOTIFY inside its own transaction: Postgres serialises
//! the commits of every notifying transaction on one lock, which would cap append throughput.
//! Instead, after commit the appender wakes subscribers of its own process directly and asks a
//! per-process task to send one `NOTIFY purser_events` for other processes; requests that
//! arrive while one is in flight, or within 5 ms of the last, are folded into the next. A
//! listener task turns notifications from other processes into wake-ups. Subscribers also
//! re-read on a slow timer, so a lost notification costs latency, never an event.
//!
//! One reader for the live tail. A process runs many subscribers (every projection and process
//! manager), and once they have caught up they all want the same few new events. Instead of
//! each of them querying the log on every wake-up, one task per store reads the newest stretch
//! of the log (every category, same query, same horizon) into a shared window of the last few
//! thousand events; a subscriber whose position lies inside the window takes its events from
//! there, filtering in memory. The window only ever holds a contiguous run of visible events in
//! log order, so a subscriber served from it sees exactly what its own query would have
//! returned. A subscriber outside the window (catching up, or fallen behind it) reads its own
//! pages as before until it reaches the window.
//!
//! Where things are: `append` (appending and recognising retries), `log_walk` (pages of the
//! log in log order and the backlog count), `reads` (one stream, the newest event),
//! `subscription` (feeding one subscriber), `tail` (the shared tail window and its reader),
//! `wake` (wake-ups and NOTIFY/LISTEN), `audit` (hash reads for the sealer and verifier),
//! `rows` (row decoding and error mapping).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    AppendOutcome, EventFilter, EventStore, ExpectedVersion, Head, NewEvent, Position,
    RecordedEvent, StoreError, StreamName, SubscriptionStream,
};

mod append;
mod append_many;
mod audit;
mod log_walk;
mod reads;
mod rows;
mod subscription;
mod tail;
mod wake;

pub use audit::{ChainLink, LoggedHash};
use wake::Wake;

/// The NOTIFY channel that announces new events.
pub const EVENTS_CHANNEL: &str = "purser_events";

/// Tuning for the Postgres adapter.
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// Events per page when catching up.
    pub batch_size: usize,
    /// How often an idle subscriber re-reads without a notification (a safety net).
    pub idle_poll: Duration,
    /// Only for the contract suite's proof that its gap test has teeth: reads ignore the
    /// commit-visibility horizon, which makes subscribers skip late-committing events.
    #[doc(hidden)]
    pub unsafe_ignore_visibility_horizon: bool,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions {
            batch_size: 500,
            idle_poll: Duration::from_secs(1),
            unsafe_ignore_visibility_horizon: false,
        }
    }
}

/// The Postgres event store. Cheap to clone.
#[derive(Clone)]
pub struct PgEventStore {
    pool: PgPool,
    opts: PgStoreOptions,
    wake: Arc<Wake>,
}

impl PgEventStore {
    pub fn new(pool: PgPool) -> PgEventStore {
        PgEventStore::with_options(pool, PgStoreOptions::default())
    }

    pub fn with_options(pool: PgPool, opts: PgStoreOptions) -> PgEventStore {
        PgEventStore {
            pool,
            opts,
            wake: Arc::new(Wake::new()),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait::async_trait]
impl EventStore for PgEventStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.append_events(stream, expected, events).await
    }

    async fn append_many(
        &self,
        appends: Vec<crate::StreamAppend>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.append_many_events(appends).await
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
        Ok(self.fetch_page(after, max, filter).await?.events)
    }

    fn subscribe(&self, after: Position, filter: EventFilter) -> SubscriptionStream {
        let (tx, rx) = mpsc::channel(self.opts.batch_size.max(16) * 2);
        let store = self.clone();
        tokio::spawn(async move { store.run_subscription(after, filter, tx).await });
        Box::pin(ReceiverStream::new(rx))
    }

    async fn head(&self) -> Result<Option<Head>, StoreError> {
        self.newest(self.visible()).await
    }

    async fn last_committed(&self) -> Result<Option<Head>, StoreError> {
        self.newest("true").await
    }

    async fn backlog(
        &self,
        after: Position,
        filter: &EventFilter,
        cap: u64,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        self.count_backlog(after, filter, cap).await
    }
}
