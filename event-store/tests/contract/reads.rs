//! Reads: the head of the log, backlog counts, filters by event type, what an event keeps.

use std::time::Duration;

use chrono::Timelike;
use purser_event_store::{EventFilter, EventStore, ExpectedVersion, NewEvent, committed_snapshot};

use super::{category, event, start_position, stream};

fn typed(n: u64, event_type: &str) -> NewEvent {
    NewEvent {
        event_type: event_type.to_owned(),
        ..event(n)
    }
}

pub(crate) async fn head_last_committed_and_backlog(store: &dyn EventStore) {
    let cat = category();
    let before = start_position(store).await;
    let s = stream(&cat, "h");
    let two = store
        .append(&s, ExpectedVersion::NoStream, vec![event(0), event(1)])
        .await
        .unwrap();
    let one = store
        .append(&s, ExpectedVersion::Exact(1), vec![event(2)])
        .await
        .unwrap();
    committed_snapshot(store, Duration::from_secs(30))
        .await
        .unwrap();
    let head = store.head().await.unwrap().expect("a head");
    let committed = store.last_committed().await.unwrap().expect("a last event");
    assert!(head.position >= one.last_position);
    assert!(committed.position >= head.position);

    let mine = EventFilter::categories([cat.as_str()]);
    let stored = store.read_stream(&s, 0, 10).await.unwrap();
    assert_eq!(
        store.backlog(before, &mine, 100).await.unwrap(),
        (3, Some(stored[0].recorded_at))
    );
    assert_eq!(store.backlog(before, &mine, 2).await.unwrap().0, 2);
    assert_eq!(
        store.backlog(two.first_position, &mine, 100).await.unwrap(),
        (2, Some(stored[1].recorded_at))
    );
    assert_eq!(
        store.backlog(one.last_position, &mine, 100).await.unwrap(),
        (0, None)
    );
    let nobody = EventFilter::categories([category()]);
    assert_eq!(
        store.backlog(before, &nobody, 100).await.unwrap(),
        (0, None)
    );
}

/// Filters by event type, alone and together with a category, in every read that takes one.
pub(crate) async fn event_type_filters_select_by_type(store: &dyn EventStore) {
    let (cat, other) = (category(), category());
    // Types of this test's own, so that other tests sharing a server do not match them.
    let (placed, paid, shipped) = (
        format!("{cat}Placed"),
        format!("{cat}Paid"),
        format!("{cat}Shipped"),
    );
    let start = start_position(store).await;
    let s = stream(&cat, 1);
    let written = vec![
        typed(0, &placed),
        typed(1, &paid),
        typed(2, &shipped),
        typed(3, &paid),
    ];
    store
        .append(&s, ExpectedVersion::NoStream, written.clone())
        .await
        .unwrap();
    let elsewhere = typed(4, &paid);
    store
        .append(
            &stream(&other, 1),
            ExpectedVersion::NoStream,
            vec![elsewhere.clone()],
        )
        .await
        .unwrap();
    committed_snapshot(store, Duration::from_secs(30))
        .await
        .unwrap();

    let by_type = EventFilter::event_types([paid.as_str(), placed.as_str()]);
    let got = store.read_all(start, 100, &by_type).await.unwrap();
    let ids = |v: &[purser_event_store::RecordedEvent]| v.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&got),
        vec![written[0].id, written[1].id, written[3].id, elsewhere.id]
    );
    assert_eq!(store.backlog(start, &by_type, 100).await.unwrap().0, 4);

    let both = EventFilter {
        categories: vec![cat.clone()],
        event_types: vec![paid.clone()],
    };
    let got = store.read_all(start, 100, &both).await.unwrap();
    assert_eq!(ids(&got), vec![written[1].id, written[3].id]);
    assert_eq!(store.backlog(start, &both, 100).await.unwrap().0, 2);

    let mut sub = store.subscribe(start, both);
    let live = super::collect_until(&mut sub, |g| g.len() >= 2).await;
    assert_eq!(ids(&live), vec![written[1].id, written[3].id]);
}

/// Events keep the schema version they were written with, in every read.
pub(crate) async fn schema_versions_round_trip(store: &dyn EventStore) {
    let cat = category();
    let start = start_position(store).await;
    let versions = [2u16, 1, 7, u16::MAX];
    let written: Vec<NewEvent> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| NewEvent {
            schema_version: *v,
            ..event(i as u64)
        })
        .collect();
    let s = stream(&cat, "v");
    store
        .append(&s, ExpectedVersion::NoStream, written)
        .await
        .unwrap();
    let got = |events: Vec<purser_event_store::RecordedEvent>| {
        events.iter().map(|e| e.schema_version).collect::<Vec<_>>()
    };
    assert_eq!(got(store.read_stream(&s, 0, 10).await.unwrap()), versions);
    committed_snapshot(store, Duration::from_secs(30))
        .await
        .unwrap();
    let mine = EventFilter::categories([cat.as_str()]);
    assert_eq!(
        got(store.read_all(start, 10, &mine).await.unwrap()),
        versions
    );
    let mut sub = store.subscribe(start, mine);
    let live = super::collect_until(&mut sub, |g| g.len() >= versions.len()).await;
    assert_eq!(got(live), versions);
}

/// Recording times are finer than seconds: as-of queries, exports by time and lag in seconds
/// depend on it. (Each event has a one-in-a-million chance of a whole second; all five, none.)
pub(crate) async fn recording_times_keep_sub_second_precision(store: &dyn EventStore) {
    let cat = category();
    let s = stream(&cat, "t");
    for i in 0..5 {
        store
            .append(&s, ExpectedVersion::Any, vec![event(i)])
            .await
            .unwrap();
    }
    let stored = store.read_stream(&s, 0, 10).await.unwrap();
    assert!(
        stored.iter().any(|e| e.recorded_at.nanosecond() != 0),
        "recording times truncated to seconds: {:?}",
        stored.iter().map(|e| e.recorded_at).collect::<Vec<_>>()
    );
    for w in stored.windows(2) {
        assert!(w[0].recorded_at <= w[1].recorded_at);
    }
}
