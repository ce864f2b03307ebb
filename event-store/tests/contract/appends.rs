//! Appends: expected versions, idempotency, concurrency.

use std::sync::Arc;
use std::time::Duration;

use purser_event_store::{
    EventFilter, EventStore, ExpectedVersion, NewEvent, Position, StoreError, committed_snapshot,
};

use super::{Traits, assert_strictly_increasing, category, event, stream};

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
    // The outcome names the positions of the first and the last event written.
    assert_eq!(out.first_position, read[0].position);
    assert_eq!(out.last_position, read[2].position);
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
    assert!(again.duplicate);
    assert_eq!(
        (again.first_version, again.last_version),
        (first.first_version, first.last_version)
    );
    assert_eq!(
        (again.first_position, again.last_position),
        (first.first_position, first.last_position)
    );
    let again_any = store
        .append(&s, ExpectedVersion::Any, batch.clone())
        .await
        .unwrap();
    assert!(again_any.duplicate);
    assert_eq!(again_any.last_version, first.last_version);
    let read = store.read_stream(&s, 0, 100).await.unwrap();
    assert_eq!(read.len(), 3, "a retried append must not append again");
    // A later append still works and continues the versions.
    let next = store
        .append(&s, ExpectedVersion::Exact(2), vec![event(9)])
        .await
        .unwrap();
    assert_eq!(next.last_version, 3);
    assert!(!next.duplicate);
}

/// What the command bus sends when it reloads a stream after its first attempt went through
/// unseen (a lost reply, a crash) and decides the same command again: the same event ids,
/// expecting the version the stream has now, which already includes them.
pub(crate) async fn a_retry_with_the_current_version_is_a_duplicate(store: &dyn EventStore) {
    let cat = category();
    let s = stream(&cat, "r");
    let batch: Vec<NewEvent> = (0..2).map(event).collect();
    let first = store
        .append(&s, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!((first.first_version, first.last_version), (0, 1));
    let again = store
        .append(&s, ExpectedVersion::Exact(1), batch.clone())
        .await
        .unwrap();
    assert!(again.duplicate, "nothing appended, and the caller told so");
    assert_eq!((again.first_version, again.last_version), (0, 1));
    assert_eq!(again.last_position, first.last_position);
    assert_eq!(store.read_stream(&s, 0, 100).await.unwrap().len(), 2);

    // Other events follow; the repeat, now deep in the stream, is still recognised.
    let other = store
        .append(&s, ExpectedVersion::Exact(1), vec![event(7)])
        .await
        .unwrap();
    assert_eq!((other.first_version, other.duplicate), (2, false));
    for expected in [
        ExpectedVersion::Exact(2),
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exists,
    ] {
        let late = store.append(&s, expected, batch.clone()).await.unwrap();
        assert!(late.duplicate, "{expected}");
        assert_eq!((late.first_version, late.last_version), (0, 1));
    }
    // A single event of the batch on its own is part of what is stored, too.
    let one = store
        .append(&s, ExpectedVersion::Exact(2), vec![batch[1].clone()])
        .await
        .unwrap();
    assert!(one.duplicate);
    assert_eq!((one.first_version, one.last_version), (1, 1));
    assert_eq!(store.read_stream(&s, 0, 100).await.unwrap().len(), 3);
}

/// Some ids of an append are stored and some are not: not a repeat of anything, and refused
/// as such rather than half appended or reported as a version conflict.
pub(crate) async fn ids_partly_stored_are_a_mismatch(store: &dyn EventStore) {
    let cat = category();
    let s = stream(&cat, "m");
    let stored = event(0);
    store
        .append(&s, ExpectedVersion::NoStream, vec![stored.clone()])
        .await
        .unwrap();
    for expected in [ExpectedVersion::Exact(0), ExpectedVersion::Any] {
        match store
            .append(&s, expected, vec![event(1), stored.clone()])
            .await
        {
            Err(StoreError::IdempotencyMismatch { event_id, .. }) => {
                assert_eq!(event_id, stored.id)
            }
            other => panic!("expected an idempotency mismatch, got {other:?}"),
        }
    }
    assert_eq!(store.read_stream(&s, 0, 100).await.unwrap().len(), 1);
}

/// An event id already used in another stream. Postgres refuses it (a unique index on event
/// ids); KurrentDB has no index by event id, so the adapter cannot see it and the append goes
/// through. Purser's own ids cannot collide across streams: deterministic ids derive from
/// a command id, and a command targets one stream.
pub(crate) async fn an_id_used_in_another_stream(store: &dyn EventStore, traits: Traits) {
    let cat = category();
    let (a, b) = (stream(&cat, "a"), stream(&cat, "b"));
    let e = event(0);
    store
        .append(&a, ExpectedVersion::NoStream, vec![e.clone()])
        .await
        .unwrap();
    let reused = store
        .append(&b, ExpectedVersion::NoStream, vec![e.clone()])
        .await;
    if traits.refuses_ids_of_other_streams {
        match reused {
            Err(StoreError::IdempotencyMismatch { event_id, detail }) => {
                assert_eq!(event_id, e.id);
                assert!(detail.contains(a.as_str()), "{detail}");
            }
            other => panic!("expected an idempotency mismatch, got {other:?}"),
        }
        assert!(store.read_stream(&b, 0, 10).await.unwrap().is_empty());
    } else {
        let out = reused.expect("not detectable here, so appended");
        assert!(!out.duplicate);
        assert_eq!(store.read_stream(&b, 0, 10).await.unwrap().len(), 1);
    }
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
