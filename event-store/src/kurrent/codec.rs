//! Translation between Purser's event envelope and KurrentDB's: positions, expected versions,
//! server-side filters, and decoding a stored event.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use kurrentdb::{ResolvedEvent, SubscriptionFilter};
use serde::{Deserialize, Serialize};

use crate::{EventFilter, Metadata, Position, RecordedEvent, StoreError, StreamName};

/// What Purser stores in a KurrentDB event's custom metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct StoredMetadata {
    pub(super) schema_version: u16,
    #[serde(flatten)]
    pub(super) metadata: Metadata,
}

pub(super) fn to_kurrent(p: Position) -> kurrentdb::Position {
    kurrentdb::Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

pub(super) fn from_kurrent(p: kurrentdb::Position) -> Position {
    Position {
        commit: p.commit,
        prepare: p.prepare,
    }
}

/// The server-side filter for an [`EventFilter`], as plain data so it can be tested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FilterSpec {
    pub(super) on_stream_name: bool,
    pub(super) prefixes: Vec<String>,
    pub(super) exclude_system: bool,
}

pub(super) fn filter_spec(filter: &EventFilter) -> FilterSpec {
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

pub(super) fn server_filter(filter: &EventFilter) -> SubscriptionFilter {
    let spec = filter_spec(filter);
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

/// Whether an event belongs to KurrentDB itself (system streams and types start with `$`).
pub(super) fn is_system(stream: &str, event_type: &str) -> bool {
    stream.starts_with('$') || event_type.starts_with('$')
}

/// Whether a stored event matches `filter`, judged from its stream name and type alone
/// (without decoding its data).
pub(super) fn matches_raw(stream: &str, event_type: &str, filter: &EventFilter) -> bool {
    !is_system(stream, event_type)
        && StreamName::new(stream).is_ok_and(|s| filter.matches(&s, event_type))
}

/// When the server recorded the event. The crate's `created` keeps whole seconds only, but
/// the server's own value, in 100-nanosecond ticks since the Unix epoch, stays in the event's
/// system metadata under `created` (KurrentDB `MetadataHelpers.AddGrpcMetadataFrom`; the
/// crate's `From<ReadEvent>` keeps the map). Microseconds are kept, as on Postgres.
pub(super) fn recorded_at(
    system_metadata: &HashMap<String, String>,
    whole_seconds: DateTime<Utc>,
) -> DateTime<Utc> {
    system_metadata
        .get("created")
        .and_then(|ticks| ticks.parse::<i64>().ok())
        .and_then(|ticks| Utc.timestamp_micros(ticks / 10).single())
        .unwrap_or(whole_seconds)
}

/// Decodes a stored event; None for KurrentDB's own (system) events.
pub(super) fn decode(resolved: &ResolvedEvent) -> Result<Option<RecordedEvent>, StoreError> {
    let e = resolved.get_original_event();
    if is_system(e.stream_id(), &e.event_type) {
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
        recorded_at: recorded_at(&e.metadata, e.created),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn recording_times_keep_microseconds_from_the_servers_ticks() {
        let whole = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        // 2023-11-14T22:13:20.123456 UTC, plus 7 ticks (700 ns) that Postgres would not keep.
        let ticks = 1_700_000_000_123_456i64 * 10 + 7;
        let meta = HashMap::from([("created".to_string(), ticks.to_string())]);
        assert_eq!(
            recorded_at(&meta, whole),
            DateTime::<Utc>::from_timestamp(1_700_000_000, 123_456_000).unwrap()
        );
        // Without the ticks (or with garbage), the crate's whole seconds are all there is.
        assert_eq!(recorded_at(&HashMap::new(), whole), whole);
        let junk = HashMap::from([("created".to_string(), "soon".to_string())]);
        assert_eq!(recorded_at(&junk, whole), whole);
    }

    #[test]
    fn raw_matching_skips_system_events_and_applies_the_filter() {
        let cats = EventFilter::categories(["order"]);
        assert!(matches_raw("order-1", "OrderPlaced", &cats));
        assert!(!matches_raw("cart-1", "CartOpened", &cats));
        assert!(!matches_raw("$stats-1", "x", &EventFilter::all()));
        assert!(!matches_raw("order-1", "$metadata", &EventFilter::all()));
        assert!(!matches_raw("not a stream", "X", &EventFilter::all()));
        let types = EventFilter::event_types(["OrderPaid"]);
        assert!(!matches_raw("order-1", "OrderPlaced", &types));
        assert!(matches_raw("order-1", "OrderPaid", &types));
    }
}
