//! `purser audit export`: the global log as JSON Lines.
//!
//! One line per event, in log order, with every envelope field. The log is read page by page
//! through the EventStore port (`read_all`), so memory stays the size of one page however long
//! the log is, and the same code exports from Postgres and from KurrentDB. On Postgres each line
//! also carries the event's stored hash (hex), looked up for the page in one query, so an
//! export is also a copy of the hash chain that can be kept away from the database.

use std::io::Write;

use chrono::{DateTime, Utc};
use purser_event_store::{
    EventFilter, EventStore, Metadata, PgEventStore, Position, RecordedEvent, StreamName,
    committed_snapshot,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::progress::Progress;

/// One exported event. Field order is the order of the keys in each line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedEvent {
    pub id: Uuid,
    pub stream: String,
    pub version: u64,
    /// `commit/prepare`, as mutations return it and `--from-position` takes it.
    pub position: String,
    pub commit: u64,
    pub prepare: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u16,
    pub data: Value,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
    /// The stored SHA-256 chain hash, hex; only the Postgres store has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// A secret an older version wrote into the data (a password hash) was left out, so this
    /// event's data no longer matches its hash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

impl ExportedEvent {
    pub fn from_recorded(e: &RecordedEvent, hash: Option<&[u8]>) -> ExportedEvent {
        let mut data = e.data.clone();
        let redacted = purser_domain::events::redact_secrets(&e.event_type, &mut data);
        ExportedEvent {
            id: e.id,
            stream: e.stream.to_string(),
            version: e.version,
            position: e.position.to_string(),
            commit: e.position.commit,
            prepare: e.position.prepare,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            data,
            metadata: e.metadata.clone(),
            recorded_at: e.recorded_at,
            hash: hash.map(hex::encode),
            redacted,
        }
    }
}

/// Which part of the log to export. Every filter narrows; none means the whole log.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub stream: Option<StreamName>,
    pub category: Option<String>,
    /// Events strictly after this position (like a checkpoint: pass the last position of an
    /// earlier export to continue it).
    pub after: Option<Position>,
    /// Events at or before this position.
    pub to: Option<Position>,
    /// Events recorded at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Events recorded before this time.
    pub until: Option<DateTime<Utc>>,
}

impl ExportFilter {
    /// The category the store can filter on for us, if any; checks that `--stream` and
    /// `--category` do not contradict each other.
    fn store_filter(&self) -> anyhow::Result<EventFilter> {
        match (&self.stream, &self.category) {
            (Some(s), Some(c)) if s.category() != c => anyhow::bail!(
                "--stream {s} is not in --category {c}; give one of them, or matching ones"
            ),
            (Some(s), _) => Ok(EventFilter::categories([s.category()])),
            (None, Some(c)) => Ok(EventFilter::categories([c.as_str()])),
            (None, None) => Ok(EventFilter::all()),
        }
    }

    fn keeps(&self, e: &RecordedEvent) -> bool {
        self.stream.as_ref().is_none_or(|s| &e.stream == s)
            && self.since.is_none_or(|t| e.recorded_at >= t)
            && self.until.is_none_or(|t| e.recorded_at < t)
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub events: u64,
    pub first: Option<Position>,
    pub last: Option<Position>,
}

/// Events per `read_all` page: large enough that round trips do not dominate, small enough
/// that a page of big events stays a few megabytes.
pub const PAGE: usize = 1000;

/// How long an export waits for older transactions to finish before it starts.
const SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Writes the selected events to `out`, one JSON object per line, in log order. `hashes` is
/// the Postgres store when hashes should be included.
pub async fn export(
    store: &dyn EventStore,
    hashes: Option<&PgEventStore>,
    filter: &ExportFilter,
    out: &mut dyn Write,
    progress: &mut Progress,
) -> anyhow::Result<ExportSummary> {
    let store_filter = filter.store_filter()?;
    // Everything committed when the export starts, and nothing after: a consistent cut.
    let Some(end) = committed_snapshot(store, SNAPSHOT_WAIT).await? else {
        out.flush()?;
        return Ok(ExportSummary::default());
    };
    let to = filter.to.map_or(end, |to| to.min(end));
    let mut after = filter.after.unwrap_or(Position::START);
    let mut summary = ExportSummary::default();
    let mut line = Vec::with_capacity(4096);
    'pages: loop {
        let page = store.read_all(after, PAGE, &store_filter).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        let full = page.len() == PAGE;
        let found = match hashes {
            Some(pg) => {
                let prepares: Vec<u64> = page.iter().map(|e| e.position.prepare).collect();
                Some(pg.hashes_of(&prepares).await?)
            }
            None => None,
        };
        let read = page.len() as u64;
        for e in &page {
            // The log is in position order, so the first event past the end ends the export.
            if e.position > to {
                progress.advance(read, &e.position);
                break 'pages;
            }
            if !filter.keeps(e) {
                continue;
            }
            let hash = found
                .as_ref()
                .and_then(|m| m.get(&e.position.prepare))
                .map(Vec::as_slice);
            line.clear();
            serde_json::to_writer(&mut line, &ExportedEvent::from_recorded(e, hash))?;
            line.push(b'\n');
            out.write_all(&line)?;
            summary.events += 1;
            summary.first.get_or_insert(e.position);
            summary.last = Some(e.position);
        }
        progress.advance(read, &after);
        if !full {
            break;
        }
    }
    out.flush()?;
    Ok(summary)
}
