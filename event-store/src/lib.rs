//! The EventStore port and its adapters.
//!
//! The port is [`EventStore`]: append to a stream with an expected version, read a stream, read
//! the global log, and subscribe to the global log (catch up, then live). Two adapters implement
//! it: [`postgres::PgEventStore`] (the default, needs nothing but Postgres) and
//! [`kurrent::KurrentEventStore`] (KurrentDB over gRPC). Both pass one contract suite
//! (`tests/contract`).
//!
//! Positions in the global log are pairs that order lexicographically. On KurrentDB they are
//! the log's (commit, prepare) positions. On Postgres they are (id of the appending transaction,
//! global sequence number): the log is delivered in that order, which is the order in which
//! events become safely visible, so a reader never skips an event that a slower transaction
//! commits late (see the `postgres` module).

use std::fmt;
use std::pin::Pin;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub mod kurrent;
pub mod postgres;

pub use kurrent::KurrentEventStore;
pub use postgres::{ChainLink, LoggedHash, PgEventStore, PgStoreOptions};

/// A validated stream name, `<category>-<id>`: the category is lower-case letters, digits and
/// `_`; the id is any non-empty run of visible characters. At most 200 bytes in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamName(String);

impl StreamName {
    pub const MAX_LEN: usize = 200;

    pub fn new(raw: impl Into<String>) -> Result<StreamName, StoreError> {
        let s: String = raw.into();
        let bad = |why: &str| StoreError::InvalidStream(format!("{s:?}: {why}"));
        if s.len() > Self::MAX_LEN {
            return Err(bad("longer than 200 bytes"));
        }
        let Some((category, id)) = s.split_once('-') else {
            return Err(bad("must be <category>-<id>"));
        };
        if category.is_empty()
            || !category
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(bad("category must be lower-case letters, digits or '_'"));
        }
        if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("id must be non-empty and contain no whitespace"));
        }
        Ok(StreamName(s))
    }

    /// Joins a category and an id.
    pub fn of(category: &str, id: impl fmt::Display) -> Result<StreamName, StoreError> {
        StreamName::new(format!("{category}-{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn category(&self) -> &str {
        self.0.split_once('-').map(|(c, _)| c).unwrap_or(&self.0)
    }

    pub fn id(&self) -> &str {
        self.0.split_once('-').map(|(_, id)| id).unwrap_or("")
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for StreamName {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        StreamName::new(s)
    }
}

impl From<StreamName> for String {
    fn from(s: StreamName) -> String {
        s.0
    }
}

/// A position in the global log. Ordered lexicographically by (commit, prepare).
///
/// `Position::START` is before every event. Checkpoints are positions; a reader resumes
/// *after* its checkpoint.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Position {
    pub commit: u64,
    pub prepare: u64,
}

impl Position {
    pub const START: Position = Position {
        commit: 0,
        prepare: 0,
    };

    pub fn new(commit: u64, prepare: u64) -> Position {
        Position { commit, prepare }
    }

    /// The two halves as Postgres `bigint`s. Both fit: transaction ids and sequence numbers
    /// stay far below 2^63.
    pub fn to_db(self) -> (i64, i64) {
        (self.commit as i64, self.prepare as i64)
    }

    pub fn from_db(commit: i64, prepare: i64) -> Position {
        Position {
            commit: commit.max(0) as u64,
            prepare: prepare.max(0) as u64,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.commit, self.prepare)
    }
}

/// A position string was not `<commit>/<prepare>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a position looks like 1234/5678 (as returned by a mutation), got {0:?}")]
pub struct PositionParseError(pub String);

impl FromStr for Position {
    type Err = PositionParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PositionParseError(s.chars().take(64).collect());
        let (c, p) = s.trim().split_once('/').ok_or_else(err)?;
        let commit = c.parse::<u64>().map_err(|_| err())?;
        let prepare = p.parse::<u64>().map_err(|_| err())?;
        if commit > i64::MAX as u64 || prepare > i64::MAX as u64 {
            return Err(err());
        }
        Ok(Position { commit, prepare })
    }
}

/// What the writer believes about the stream's current version. Versions are 0-based: a
/// stream with one event is at version 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (at any version).
    Exists,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exists => f.write_str("stream exists"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// The envelope's metadata: where an event came from and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The id shared by everything one request set in motion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The id of the event or command that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Who did it: `customer:<id>`, `admin:<id>`, `system:<component>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The client's idempotency key, for commands that take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The W3C trace id of the request, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique per event. Re-appending the same ids is an idempotent no-op.
    pub id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub data: Value,
    pub metadata: Metadata,
}

impl NewEvent {
    pub const MAX_TYPE_LEN: usize = 200;
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub id: Uuid,
    pub stream: StreamName,
    /// 0-based version within its stream.
    pub version: u64,
    pub position: Position,
    pub event_type: String,
    pub schema_version: u16,
    pub data: Value,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
}

/// One stream's part of a multi-stream append.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream: StreamName,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The version of the first event appended (or found, for a repeat).
    pub first_version: u64,
    /// The stream's version after the append: the version of the last event.
    pub last_version: u64,
    pub first_position: Position,
    pub last_position: Position,
    /// True when every event id was already in the stream: nothing was appended and this is
    /// the original result.
    pub duplicate: bool,
}

/// Selects part of the global log. Empty lists mean "everything".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub categories: Vec<String>,
    pub event_types: Vec<String>,
}

impl EventFilter {
    pub fn all() -> EventFilter {
        EventFilter::default()
    }

    pub fn categories<I, S>(cats: I) -> EventFilter
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EventFilter {
            categories: cats.into_iter().map(Into::into).collect(),
            event_types: vec![],
        }
    }

    pub fn event_types<I, S>(types: I) -> EventFilter
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EventFilter {
            categories: vec![],
            event_types: types.into_iter().map(Into::into).collect(),
        }
    }

    pub fn matches(&self, stream: &StreamName, event_type: &str) -> bool {
        (self.categories.is_empty() || self.categories.iter().any(|c| c == stream.category()))
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionItem {
    /// The next event, in log order.
    Event(Box<RecordedEvent>),
    /// Every event up to and including this position that matches the filter has been
    /// delivered. A consumer may checkpoint here; it lets a filtered consumer's checkpoint move
    /// past events it does not handle.
    Checkpoint(Position),
}

pub type SubscriptionStream =
    Pin<Box<dyn Stream<Item = Result<SubscriptionItem, StoreError>> + Send>>;

/// The newest event in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub position: Position,
    pub recorded_at: DateTime<Utc>,
}

/// Failures of the store. A wrong expected version is a normal, typed outcome the caller acts
/// on (reload and retry, or report a conflict); the others are faults.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("wrong expected version on {stream}: expected {expected}, stream is at {}", actual.map_or("no stream".to_string(), |v| format!("version {v}")))]
    WrongExpectedVersion {
        stream: String,
        expected: String,
        actual: Option<u64>,
    },
    #[error("event id {event_id} was already used for a different append ({detail})")]
    IdempotencyMismatch { event_id: Uuid, detail: String },
    #[error("invalid stream name {0}")]
    InvalidStream(String),
    #[error("invalid append: {0}")]
    InvalidInput(String),
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// The store cannot do this at all (a multi-stream atomic append on KurrentDB).
    #[error("this event store does not support {0}")]
    Unsupported(&'static str),
    #[error("event store error: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::WrongExpectedVersion { .. })
    }
}

/// The event store port.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// `"postgres"` or `"kurrentdb"`.
    fn kind(&self) -> &'static str;

    /// Appends `events` to `stream` atomically if `expected` holds. Re-sending events whose
    /// ids are already in the stream appends nothing and returns the original outcome.
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Appends to several streams at once, each with its own expected version: all of it or
    /// none of it, in one transaction. A wrong expectation on any stream refuses the whole
    /// call with that stream's conflict; re-sending a call whose event ids are all stored
    /// returns the original outcomes (`duplicate`), in the order of `appends`. Stores that
    /// cannot make it atomic answer `Unsupported`, and callers fall back to one append per
    /// stream with deterministic event ids (each then idempotent on its own).
    async fn append_many(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let _ = appends;
        Err(StoreError::Unsupported("multi-stream atomic append"))
    }

    /// Reads up to `max` events of `stream` with version ≥ `from_version`, in version order.
    /// A stream that does not exist reads as empty.
    async fn read_stream(
        &self,
        stream: &StreamName,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `max` events of the global log strictly after `after`, in log order,
    /// limited to what is safely visible (never a position a later reader would see before
    /// an earlier one).
    async fn read_all(
        &self,
        after: Position,
        max: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Catch-up subscription to the global log strictly after `after`, then live. Never
    /// skips an event and delivers each once, in log order.
    fn subscribe(&self, after: Position, filter: EventFilter) -> SubscriptionStream;

    /// The newest event a subscriber can be given now, if any: a live-only subscription may
    /// start after it without missing anything. On Postgres this is the last event below the
    /// commit-visibility horizon, which any open transaction in the cluster holds back.
    async fn head(&self) -> Result<Option<Head>, StoreError>;

    /// The newest committed event, even if subscribers cannot be given it yet. Waiting until a
    /// checkpoint reaches it means "everything written so far is applied". Never subscribe
    /// after it: on Postgres an older transaction may still commit below it.
    async fn last_committed(&self) -> Result<Option<Head>, StoreError> {
        self.head().await
    }

    /// How many events matching `filter` lie after `after`, counting at most `cap`, and the
    /// recording time of the first of them.
    async fn backlog(
        &self,
        after: Position,
        filter: &EventFilter,
        cap: u64,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError>;
}

/// Reads a whole stream from `from_version`, page by page.
pub async fn read_stream_to_end(
    store: &dyn EventStore,
    stream: &StreamName,
    from_version: u64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    const PAGE: usize = 1000;
    let mut out = Vec::new();
    let mut next = from_version;
    loop {
        let page = store.read_stream(stream, next, PAGE).await?;
        let n = page.len();
        if let Some(last) = page.last() {
            next = last.version + 1;
        }
        out.extend(page);
        if n < PAGE {
            return Ok(out);
        }
    }
}

/// Waits until readers can be given everything committed now, and returns that position
/// (None for an empty log). On Postgres an open transaction anywhere in the cluster holds the
/// read horizon back, so a one-shot reader (an export, a verification) that read only to the
/// horizon could end early and silently miss committed events; after this it reads to the
/// returned position and misses nothing. Fails after `timeout` if the horizon does not move.
pub async fn committed_snapshot(
    store: &dyn EventStore,
    timeout: std::time::Duration,
) -> Result<Option<Position>, StoreError> {
    let Some(target) = store.last_committed().await?.map(|h| h.position) else {
        return Ok(None);
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        if store.head().await?.is_some_and(|h| h.position >= target) {
            return Ok(Some(target));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "an open transaction has held the read horizon below {target} for {timeout:?}"
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(200));
    }
}

/// Checks an append's arguments the same way for every adapter.
pub(crate) fn validate_append(events: &[NewEvent]) -> Result<(), StoreError> {
    const MAX_EVENTS: usize = 10_000;
    if events.is_empty() {
        return Err(StoreError::InvalidInput(
            "an append needs at least one event".into(),
        ));
    }
    if events.len() > MAX_EVENTS {
        return Err(StoreError::InvalidInput(format!(
            "at most {MAX_EVENTS} events per append"
        )));
    }
    let mut ids = std::collections::HashSet::with_capacity(events.len());
    for e in events {
        if e.event_type.is_empty() || e.event_type.len() > NewEvent::MAX_TYPE_LEN {
            return Err(StoreError::InvalidInput(format!(
                "event type must be 1 to {} bytes",
                NewEvent::MAX_TYPE_LEN
            )));
        }
        if !ids.insert(e.id) {
            return Err(StoreError::InvalidInput(format!(
                "event id {} appears twice",
                e.id
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_validated() {
        let s = StreamName::new("order-0193").unwrap();
        assert_eq!(s.category(), "order");
        assert_eq!(s.id(), "0193");
        let sku = StreamName::new("inventory-LAP-13").unwrap();
        assert_eq!(sku.category(), "inventory");
        assert_eq!(sku.id(), "LAP-13");
        for bad in [
            "",
            "order",
            "-x",
            "Order-1",
            "order-",
            "order-a b",
            &"x-".repeat(101),
        ] {
            assert!(StreamName::new(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn positions_order_and_round_trip() {
        let a = Position::new(5, 900);
        let b = Position::new(6, 10);
        assert!(a < b, "commit order dominates");
        assert!(Position::START < a);
        assert_eq!("5/900".parse::<Position>().unwrap(), a);
        assert_eq!(a.to_string(), "5/900");
        assert!("5".parse::<Position>().is_err());
        assert!("a/b".parse::<Position>().is_err());
        assert!("99999999999999999999/1".parse::<Position>().is_err());
    }

    #[test]
    fn filters_match_category_and_type() {
        let s = StreamName::new("order-1").unwrap();
        assert!(EventFilter::all().matches(&s, "OrderPlaced"));
        assert!(EventFilter::categories(["order"]).matches(&s, "OrderPlaced"));
        assert!(!EventFilter::categories(["cart"]).matches(&s, "OrderPlaced"));
        assert!(EventFilter::event_types(["OrderPlaced"]).matches(&s, "OrderPlaced"));
        assert!(!EventFilter::event_types(["OrderPaid"]).matches(&s, "OrderPlaced"));
    }

    #[test]
    fn appends_are_validated() {
        let e = |id: u128| NewEvent {
            id: Uuid::from_u128(id),
            event_type: "X".into(),
            schema_version: 1,
            data: Value::Null,
            metadata: Metadata::default(),
        };
        assert!(validate_append(&[]).is_err());
        assert!(validate_append(&[e(1), e(1)]).is_err());
        assert!(validate_append(&[e(1), e(2)]).is_ok());
    }
}
