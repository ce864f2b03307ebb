//! `purser audit import`: replays an export into an empty event store.
//!
//! Every event keeps its id, stream, version, type, schema version, data and metadata. Events
//! are appended in the order of the file (the log order of the export), consecutive events of
//! one stream together, each append with the exact expected version the export says the
//! stream was at, so the store itself refuses a file with a gap, a repeat or a reordering
//! inside a stream. What cannot be kept: positions (the new store hands out its own) and
//! recording times (the store stamps each append with its own clock), and therefore, on
//! Postgres, the hashes, which cover the recording time. The export keeps the originals.
//!
//! The file is read line by line, so memory stays the size of one batch.

use std::io::BufRead;

use purser_event_store::{EventStore, ExpectedVersion, NewEvent, StreamName};

use super::export::ExportedEvent;
use super::progress::Progress;

/// Most events appended in one call. Consecutive events of one stream share an append.
pub const BATCH: usize = 500;

/// Most bytes (data, metadata and type, as KurrentDB counts an append's size) in one append.
/// KurrentDB refuses a write larger than its `MaxAppendSize`, 1 MiB by default up to v25.0
/// (`ClusterVNodeOptions`); half of that leaves room for what this estimate leaves out. An
/// event larger than this on its own is still sent alone.
pub const BATCH_BYTES: usize = 512 * 1024;

/// What an import appended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub events: u64,
    pub appends: u64,
}

struct Batch {
    stream: StreamName,
    first_version: u64,
    first_line: u64,
    events: Vec<NewEvent>,
    bytes: usize,
}

/// An event's size as KurrentDB counts it towards the append limit (`Event.SizeOnDisk`: data,
/// metadata, and the type at two bytes a character), with Purser's metadata as stored.
fn append_size(e: &NewEvent) -> usize {
    let data = serde_json::to_vec(&e.data).map_or(0, |v| v.len());
    let metadata = serde_json::to_vec(&e.metadata).map_or(0, |v| v.len());
    // The schema version travels in the metadata too: `"schema_version":65535,` at most.
    data + metadata + 24 + 2 * e.event_type.len()
}

/// Refuses unless the store holds no event at all: an import rebuilds a history, it does not
/// merge one into another.
pub async fn ensure_empty(store: &dyn EventStore) -> anyhow::Result<()> {
    if let Some(head) = store.last_committed().await? {
        anyhow::bail!(
            "the event store is not empty (its newest event is at {}); import only into an empty store",
            head.position
        );
    }
    Ok(())
}

/// Appends every event of `input` (JSON Lines as `purser audit export` writes them).
pub async fn import(
    store: &dyn EventStore,
    input: &mut dyn BufRead,
    progress: &mut Progress,
) -> anyhow::Result<ImportSummary> {
    ensure_empty(store).await?;
    let mut summary = ImportSummary::default();
    let mut batch: Option<Batch> = None;
    let mut raw = String::new();
    let mut line_no: u64 = 0;
    loop {
        raw.clear();
        if input.read_line(&mut raw)? == 0 {
            break;
        }
        line_no += 1;
        if raw.trim().is_empty() {
            continue;
        }
        let e: ExportedEvent = serde_json::from_str(&raw)
            .map_err(|err| anyhow::anyhow!("line {line_no}: not an exported event: {err}"))?;
        let stream = StreamName::new(e.stream.clone())
            .map_err(|err| anyhow::anyhow!("line {line_no}: {err}"))?;
        let event = NewEvent {
            id: e.id,
            event_type: e.event_type,
            schema_version: e.schema_version,
            data: e.data,
            metadata: e.metadata,
        };
        let size = append_size(&event);
        let continues = batch.as_ref().is_some_and(|b| {
            b.stream == stream
                && b.events.len() < BATCH
                && b.bytes + size <= BATCH_BYTES
                && b.first_version + b.events.len() as u64 == e.version
        });
        if continues {
            if let Some(b) = batch.as_mut() {
                b.events.push(event);
                b.bytes += size;
            }
            continue;
        }
        if let Some(b) = batch.take() {
            flush(store, b, &mut summary, progress).await?;
        }
        batch = Some(Batch {
            stream,
            first_version: e.version,
            first_line: line_no,
            events: vec![event],
            bytes: size,
        });
    }
    if let Some(b) = batch.take() {
        flush(store, b, &mut summary, progress).await?;
    }
    Ok(summary)
}

async fn flush(
    store: &dyn EventStore,
    b: Batch,
    summary: &mut ImportSummary,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let expected = match b.first_version {
        0 => ExpectedVersion::NoStream,
        v => ExpectedVersion::Exact(v - 1),
    };
    let n = b.events.len() as u64;
    let outcome = store
        .append(&b.stream, expected, b.events)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "line {}: cannot append {} at version {}: {e}",
                b.first_line,
                b.stream,
                b.first_version
            )
        })?;
    if outcome.duplicate {
        anyhow::bail!(
            "line {}: the events of {} at version {} are already in the store (does the file repeat them?)",
            b.first_line,
            b.stream,
            b.first_version
        );
    }
    summary.events += n;
    summary.appends += 1;
    progress.advance(n, &format_args!("line {}", b.first_line + n - 1));
    Ok(())
}
