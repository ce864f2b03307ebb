//! The event store contract, written once and run against every adapter.
//!
//! Each test gets a store and a category of its own, so tests can share one server (KurrentDB)
//! as well as run on a fresh database each (Postgres). Subscriptions start at the log's head
//! when the test begins and filter on the test's category.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use purser_event_store::{
    EventFilter, EventStore, ExpectedVersion, Metadata, NewEvent, Position, RecordedEvent,
    StoreError, StreamName, SubscriptionItem, SubscriptionStream, committed_snapshot,
};
use serde_json::json;
use uuid::Uuid;

/// How long a test waits for something it expects before failing.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

pub(crate) fn category() -> String {
    format!("t{}", &Uuid::new_v4().simple().to_string()[..12])
}

pub(crate) fn stream(cat: &str, id: impl std::fmt::Display) -> StreamName {
    StreamName::of(cat, id).unwrap()
}

pub(crate) fn event(n: u64) -> NewEvent {
    NewEvent {
        id: Uuid::now_v7(),
        event_type: "ThingHappened".into(),
        schema_version: 1,
        data: json!({ "n": n, "note": "ünïcødé ✓" }),
        metadata: Metadata {
            correlation_id: Some(Uuid::now_v7()),
            causation_id: Some(Uuid::now_v7()),
            actor: Some("system:test".into()),
            idempotency_key: Some(format!("key-{n}")),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        },
    }
}

pub(crate) async fn start_position(store: &dyn EventStore) -> Position {
    store
        .head()
        .await
        .unwrap()
        .map(|h| h.position)
        .unwrap_or(Position::START)
}

/// Collects events from a subscription until `done` says stop, failing after PATIENCE.
pub(crate) async fn collect_until(
    sub: &mut SubscriptionStream,
    mut done: impl FnMut(&[RecordedEvent]) -> bool,
) -> Vec<RecordedEvent> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done(&got) {
        let item = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| panic!("subscription stalled after {} events", got.len()))
            .expect("subscription ended")
            .expect("subscription failed");
        if let SubscriptionItem::Event(e) = item {
            got.push(*e);
        }
    }
    got
}

fn assert_strictly_increasing(events: &[RecordedEvent]) {
    for w in events.windows(2) {
        assert!(
            w[0].position < w[1].position,
            "log order broken: {} then {}",
            w[0].position,
            w[1].position
        );
    }
    let ids: HashSet<Uuid> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), events.len(), "an event was delivered twice");
}

pub(crate) async fn append_and_read_back(store: &dyn EventStore) {
    let cat = category();
    let s = stream(&cat, "a");
    let written: Vec<NewEvent> = (0..3).map(event).collect();
    let out = store
        .append(&s, ExpectedVersion::NoStream, written.clone())
        .await
        .unwrap();
    assert_eq!((out.first_version, out.last_version), (0, 2));
    assert!(!out.duplicate);

    let read = store.read_stream(&s, 0, 100).await.unwrap();
    assert_eq!(read.len(), 3);
    for (i, (w, r)) in written.iter().zip(&read).enumerate() {
        assert_eq!(r.id, w.id);
        assert_eq!(r.stream, s);
        assert_eq!(r.version, i as u64);
        assert_eq!(r.event_type, w.event_type);
        assert_eq!(r.schema_version, w.schema_version);
        assert_eq!(r.data, w.data);
        assert_eq!(r.metadata, w.metadata);
    }
    assert!(read[2].position <= out.last_position);
    assert_strictly_increasing(&read);

    // Reading from a version, and a stream that does not exist.
    let tail = store.read_stream(&s, 1, 100).await.unwrap();
    assert_eq!(
        tail.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(
        store
            .read_stream(&stream(&cat, "missing"), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The global log holds the same events, in the same order (once readers may see them:
    // on Postgres another test's open transaction can hold the read horizon back).
    committed_snapshot(store, Duration::from_secs(30))
        .await
        .unwrap();
    let all = store
        .read_all(
            Position::START,
            100_000,
            &EventFilter::categories([cat.as_str()]),
        )
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        written.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    assert_eq!(all, read);
}

pub(crate) async fn expected_versions_are_enforced(store: &dyn EventStore) {
    let cat = category();
    let s = stream(&cat, "v");
    let conflict = |r: Result<_, StoreError>| match r {
        Err(StoreError::WrongExpectedVersion { actual, .. }) => actual,
        other => panic!("expected a wrong-expected-version error, got {other:?}"),
    };
    assert_eq!(
        conflict(
            store
                .append(&s, ExpectedVersion::Exists, vec![event(0)])
                .await
        ),
        None
    );
    assert_eq!(
        conflict(
            store
                .append(&s, ExpectedVersion::Exact(0), vec![event(0)])
                .await
        ),
        None
    );
    store
        .append(&s, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    assert_eq!(
        conflict(
            store
                .append(&s, ExpectedVersion::NoStream, vec![event(1)])
                .await
        ),
        Some(0)
    );
    assert_eq!(
        conflict(
            store
                .append(&s, ExpectedVersion::Exact(5), vec![event(1)])
                .await
        ),
        Some(0)
    );
    let out = store
        .append(&s, ExpectedVersion::Exact(0), vec![event(1), event(2)])
        .await
        .unwrap();
    assert_eq!(out.last_version, 2);
    store
        .append(&s, ExpectedVersion::Exists, vec![event(3)])
        .await
        .unwrap();
    let out = store
        .append(&s, ExpectedVersion::Any, vec![event(4)])
        .await
        .unwrap();
    assert_eq!(out.last_version, 4);
    assert_eq!(store.read_stream(&s, 0, 100).await.unwrap().len(), 5);
    // Bad input is a typed error, not a panic.
    assert!(matches!(
        store.append(&s, ExpectedVersion::Any, vec![]).await,
        Err(StoreError::InvalidInput(_))
    ));
}

pub(crate) async fn idempotent_retry_appends_nothing(store: &dyn EventStore) {
    let cat = category();
    let s = stream(&cat, "i");
    let batch: Vec<NewEvent> = (0..3).map(event).collect();
    let first = store
        .append(&s, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    // The same command retried, with the same expectation and with none.
    let again = store
        .append(&s, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(
        (again.first_version, again.last_version),
        (first.first_version, first.last_version)
    );
    let again_any = store
        .append(&s, ExpectedVersion::Any, batch.clone())
        .await
        .unwrap();
    assert_eq!(again_any.last_version, first.last_version);
    let read = store.read_stream(&s, 0, 100).await.unwrap();
    assert_eq!(read.len(), 3, "a retried append must not append again");
    // A later append still works and continues the versions.
    let next = store
        .append(&s, ExpectedVersion::Exact(2), vec![event(9)])
        .await
        .unwrap();
    assert_eq!(next.last_version, 3);
}

pub(crate) async fn concurrent_appenders_one_winner_per_version(store: Arc<dyn EventStore>) {
    let cat = category();
    let s = stream(&cat, "race");
    store
        .append(&s, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    const ROUNDS: u64 = 8;
    const WRITERS: usize = 12;
    for round in 0..ROUNDS {
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (store, s, barrier) = (store.clone(), s.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append(
                        &s,
                        ExpectedVersion::Exact(round),
                        vec![event(round * 100 + w as u64)],
                    )
                    .await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(out) => {
                    wins += 1;
                    assert_eq!(out.last_version, round + 1);
                }
                Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                    assert_eq!(actual, Some(round + 1))
                }
                Err(e) => panic!("a loser must get a typed conflict, got {e:?}"),
            }
        }
        assert_eq!(wins, 1, "exactly one writer wins version {}", round + 1);
    }
    let read = store.read_stream(&s, 0, 1000).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.version).collect::<Vec<_>>(),
        (0..=ROUNDS).collect::<Vec<_>>()
    );
}

pub(crate) async fn concurrent_any_appends_all_land(store: Arc<dyn EventStore>) {
    let cat = category();
    let s = stream(&cat, "any");
    let mut tasks = Vec::new();
    for w in 0..10u64 {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                store
                    .append(&s, ExpectedVersion::Any, vec![event(w * 10 + i)])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let read = store.read_stream(&s, 0, 1000).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.version).collect::<Vec<_>>(),
        (0..50).collect::<Vec<_>>()
    );
}

pub(crate) async fn subscription_catches_up_then_goes_live(store: Arc<dyn EventStore>) {
    let cat = category();
    let start = start_position(&*store).await;
    // History written before subscribing, across several streams.
    let mut expected = Vec::new();
    for i in 0..30u64 {
        let e = event(i);
        expected.push(e.id);
        store
            .append(&stream(&cat, i % 4), ExpectedVersion::Any, vec![e])
            .await
            .unwrap();
    }
    let filter = EventFilter::categories([cat.as_str()]);
    let mut sub = store.subscribe(start, filter.clone());
    let caught_up = collect_until(&mut sub, |g| g.len() >= 30).await;
    assert_eq!(caught_up.iter().map(|e| e.id).collect::<Vec<_>>(), expected);

    // Live: many writers at once.
    let mut tasks = Vec::new();
    for w in 0..6u64 {
        let (store, cat) = (store.clone(), cat.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..20u64 {
                let e = event(1000 + w * 100 + i);
                ids.push(e.id);
                let n = if i % 3 == 0 { 2 } else { 1 };
                let mut batch = vec![e];
                if n == 2 {
                    let extra = event(5000 + w * 100 + i);
                    ids.push(extra.id);
                    batch.push(extra);
                }
                store
                    .append(
                        &stream(&cat, format!("live{}", w % 3)),
                        ExpectedVersion::Any,
                        batch,
                    )
                    .await
                    .unwrap();
            }
            ids
        }));
    }
    let mut live_ids = HashSet::new();
    for t in tasks {
        live_ids.extend(t.await.unwrap());
    }
    let live = collect_until(&mut sub, |g| g.len() >= live_ids.len()).await;
    assert_eq!(live.iter().map(|e| e.id).collect::<HashSet<_>>(), live_ids);
    let mut everything = caught_up.clone();
    everything.extend(live.iter().cloned());
    assert_strictly_increasing(&everything);
    // Within each stream, versions arrive in order.
    for s in 0..3 {
        let name = stream(&cat, format!("live{s}"));
        let versions: Vec<u64> = live
            .iter()
            .filter(|e| e.stream == name)
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, (0..versions.len() as u64).collect::<Vec<_>>());
    }
    // The log read page by page agrees with what the subscription delivered.
    let mut paged = Vec::new();
    let mut after = start;
    loop {
        let page = store.read_all(after, 7, &filter).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().position;
        paged.extend(page);
    }
    assert_eq!(paged, everything);

    // A consumer that resumes after a checkpoint gets exactly the rest.
    let checkpoint = everything[40].position;
    let mut resumed = store.subscribe(checkpoint, filter);
    let rest = collect_until(&mut resumed, |g| g.len() >= everything.len() - 41).await;
    assert_eq!(rest, everything[41..].to_vec());
}

pub(crate) async fn filtered_subscription_can_checkpoint_past_other_events(
    store: Arc<dyn EventStore>,
) {
    let mine = category();
    let other = category();
    let start = start_position(&*store).await;
    let mut sub = store.subscribe(start, EventFilter::categories([mine.as_str()]));
    for i in 0..5u64 {
        store
            .append(&stream(&other, i), ExpectedVersion::Any, vec![event(i)])
            .await
            .unwrap();
    }
    let last_other = store
        .append(&stream(&other, "z"), ExpectedVersion::Any, vec![event(9)])
        .await
        .unwrap();
    let e = event(100);
    store
        .append(&stream(&mine, 1), ExpectedVersion::Any, vec![e.clone()])
        .await
        .unwrap();
    // Only the matching event is delivered.
    let got = collect_until(&mut sub, |g| !g.is_empty()).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, e.id);
    // After more unrelated appends, a checkpoint marker eventually passes them, so a filtered
    // consumer's checkpoint can move past events it does not handle.
    let tail = store
        .append(&stream(&other, "y"), ExpectedVersion::Any, vec![event(10)])
        .await
        .unwrap();
    assert!(tail.last_position > last_other.last_position);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let item = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("no checkpoint past the unrelated events")
            .unwrap()
            .unwrap();
        match item {
            SubscriptionItem::Checkpoint(p) if p >= tail.last_position => break,
            SubscriptionItem::Checkpoint(_) => continue,
            SubscriptionItem::Event(e) => panic!("unexpected event {e:?}"),
        }
    }
}

/// Generates one `#[tokio::test]` per contract test for an adapter. `$make` is an async fn
/// returning `Option<(Arc<dyn EventStore>, Guard)>`; None skips the suite (no server).
#[macro_export]
macro_rules! contract_suite {
    ($make:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn append_and_read_back() {
            let Some((store, _guard)) = $make().await else {
                return;
            };
            contract::append_and_read_back(&*store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn expected_versions_are_enforced() {
            let Some((store, _guard)) = $make().await else {
                return;
            };
            contract::expected_versions_are_enforced(&*store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn idempotent_retry_appends_nothing() {
            let Some((store, _guard)) = $make().await else {
                return;
            };
            contract::idempotent_retry_appends_nothing(&*store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_appenders_one_winner_per_version() {
            let Some((store, _guard)) = $make().await else {
                return;
            };
            contract::concurrent_appenders_one_winner_per_version(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_any_appends_all_land() {
            let Some((store, _guard)) = $make().await else {
                return;
            };
            contract::concurrent_any_appends_all_land(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn subscription_catches_up_then_goes_live() {
            let Some((store, _guard)) = $make().await else {
                return;
            };
            contract::subscription_catches_up_then_goes_live(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn filtered_subscription_can_checkpoint_past_other_events() {
            let Some((store, _guard)) = $make().await else {
                return;
            };
            contract::filtered_subscription_can_checkpoint_past_other_events(store).await;
        }
    };
}
