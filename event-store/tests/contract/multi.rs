//! Multi-stream appends: all or nothing, idempotent as a whole, and free of deadlocks between
//! calls that touch the same streams in different orders.

use std::sync::Arc;

use purser_event_store::{
    EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend, StreamName,
};

use super::{Traits, category, event, stream};

fn part(stream: &StreamName, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend {
        stream: stream.clone(),
        expected,
        events,
    }
}

pub(crate) async fn multi_stream_appends_are_all_or_nothing(
    store: &dyn EventStore,
    traits: Traits,
) {
    let cat = category();
    let (a, b, c) = (stream(&cat, "a"), stream(&cat, "b"), stream(&cat, "c"));
    store
        .append(&a, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let call = vec![
        part(&b, ExpectedVersion::NoStream, vec![event(1), event(2)]),
        part(&a, ExpectedVersion::Exact(0), vec![event(3)]),
    ];
    if !traits.atomic_multi_stream {
        let refused = store.append_many(call).await;
        assert!(
            matches!(refused, Err(StoreError::Unsupported(_))),
            "{refused:?}"
        );
        return;
    }
    let out = store.append_many(call).await.unwrap();
    // Outcomes come in the caller's order.
    assert_eq!((out[0].first_version, out[0].last_version), (0, 1));
    assert_eq!((out[1].first_version, out[1].last_version), (1, 1));
    assert_eq!(store.read_stream(&b, 0, 10).await.unwrap().len(), 2);
    assert_eq!(store.read_stream(&a, 0, 10).await.unwrap().len(), 2);

    // One wrong expectation refuses the whole call: nothing of it is written.
    let refused = store
        .append_many(vec![
            part(&c, ExpectedVersion::NoStream, vec![event(4)]),
            part(&a, ExpectedVersion::Exact(0), vec![event(5)]),
        ])
        .await;
    match refused {
        Err(StoreError::WrongExpectedVersion { stream, actual, .. }) => {
            assert_eq!(stream, a.to_string());
            assert_eq!(actual, Some(1));
        }
        other => panic!("expected a conflict on {a}, got {other:?}"),
    }
    assert!(store.read_stream(&c, 0, 10).await.unwrap().is_empty());
    assert_eq!(store.read_stream(&a, 0, 10).await.unwrap().len(), 2);
}

pub(crate) async fn a_retried_multi_stream_append_is_a_duplicate(
    store: &dyn EventStore,
    traits: Traits,
) {
    if !traits.atomic_multi_stream {
        return;
    }
    let cat = category();
    let (a, b) = (stream(&cat, "a"), stream(&cat, "b"));
    let call = vec![
        part(&a, ExpectedVersion::NoStream, vec![event(0)]),
        part(&b, ExpectedVersion::NoStream, vec![event(1), event(2)]),
    ];
    let first = store.append_many(call.clone()).await.unwrap();
    let again = store.append_many(call.clone()).await.unwrap();
    assert!(again.iter().all(|o| o.duplicate), "{again:?}");
    for (f, g) in first.iter().zip(&again) {
        assert_eq!(
            (f.first_version, f.last_version),
            (g.first_version, g.last_version)
        );
        assert_eq!(f.last_position, g.last_position);
    }
    assert_eq!(store.read_stream(&b, 0, 10).await.unwrap().len(), 2);
    // Part of a call already stored and part not is a mismatch, not a silent half-append.
    let half = vec![
        call[0].clone(),
        part(
            &stream(&cat, "new"),
            ExpectedVersion::NoStream,
            vec![event(3)],
        ),
    ];
    let refused = store.append_many(half).await;
    assert!(
        matches!(refused, Err(StoreError::IdempotencyMismatch { .. })),
        "{refused:?}"
    );
}

pub(crate) async fn crossing_multi_stream_appends_all_land(
    store: Arc<dyn EventStore>,
    traits: Traits,
) {
    if !traits.atomic_multi_stream {
        return;
    }
    let cat = category();
    let (x, y) = (stream(&cat, "x"), stream(&cat, "y"));
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let (store, x, y) = (store.clone(), x.clone(), y.clone());
        tasks.push(tokio::spawn(async move {
            // Half the calls name the streams the other way round.
            let (first, second) = if i % 2 == 0 { (x, y) } else { (y, x) };
            store
                .append_many(vec![
                    part(&first, ExpectedVersion::Any, vec![event(i)]),
                    part(&second, ExpectedVersion::Any, vec![event(100 + i)]),
                ])
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.read_stream(&x, 0, 100).await.unwrap().len(), 8);
    assert_eq!(store.read_stream(&y, 0, 100).await.unwrap().len(), 8);
}
