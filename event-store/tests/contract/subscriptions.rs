//! Subscriptions: catch-up then live, checkpoints past other events and at the head of a
//! quiet log, resuming from checkpoints, and surviving the loss of the server.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use purser_event_store::{
    EventFilter, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError,
    StreamName, SubscriptionItem, SubscriptionStream,
};
use uuid::Uuid;

use super::{
    PATIENCE, assert_strictly_increasing, category, collect_until, event, start_position, stream,
};

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

/// Waits for a checkpoint at or past `target`; fails on any event or after PATIENCE.
async fn checkpoint_reaching(sub: &mut SubscriptionStream, target: Position) -> Position {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let item = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| panic!("no checkpoint reached {target}"))
            .expect("subscription ended")
            .expect("subscription failed");
        match item {
            SubscriptionItem::Checkpoint(p) if p >= target => return p,
            SubscriptionItem::Checkpoint(_) => continue,
            SubscriptionItem::Event(e) => panic!("unexpected event {e:?}"),
        }
    }
}

/// The newest events match nothing the consumer asked for, and nothing more is written: its
/// checkpoint must still reach the head, or a consumer waiting for "everything written so far"
/// (a `minPosition` query, a rebuild catching up to the head, `purser replay`) waits forever.
/// Both while live and when the subscription starts after the fact (catching up).
pub(crate) async fn a_quiet_log_reaches_a_checkpoint_at_the_head(store: Arc<dyn EventStore>) {
    let (mine, other) = (category(), category());
    let start = start_position(&*store).await;
    let filter = EventFilter::categories([mine.as_str()]);
    let mut live = store.subscribe(start, filter.clone());
    let e = event(0);
    store
        .append(&stream(&mine, 1), ExpectedVersion::Any, vec![e.clone()])
        .await
        .unwrap();
    let got = collect_until(&mut live, |g| !g.is_empty()).await;
    assert_eq!(got[0].id, e.id);
    let quiet = store
        .append(&stream(&other, 1), ExpectedVersion::Any, vec![event(1)])
        .await
        .unwrap();
    let began = tokio::time::Instant::now();
    let target = store.last_committed().await.unwrap().unwrap().position;
    assert!(target >= quiet.last_position);
    let reached = checkpoint_reaching(&mut live, target).await;
    eprintln!(
        "live: checkpoint {reached} reached the head {target} after {:?}",
        began.elapsed()
    );
    // A consumer that starts later catches up, and its checkpoint reaches the head too.
    let mut late = store.subscribe(start, filter);
    let caught = collect_until(&mut late, |g| !g.is_empty()).await;
    assert_eq!(caught[0].id, e.id);
    checkpoint_reaching(&mut late, target).await;
}

/// Writers append to this test's category and to another one while a consumer reads,
/// checkpoints and resumes from its checkpoint (an event's position or a checkpoint's) again
/// and again: it must end up with every event exactly once, in log order.
pub(crate) async fn resubscribing_from_checkpoints_never_skips_or_repeats(
    store: Arc<dyn EventStore>,
) {
    let (cat, other) = (category(), category());
    let start = start_position(&*store).await;
    const WRITERS: u64 = 4;
    const EACH: u64 = 25;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, cat, other) = (store.clone(), cat.clone(), other.clone());
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let e = event(w * 1000 + i);
                ids.push(e.id);
                let mine = stream(&cat, w);
                store
                    .append(&mine, ExpectedVersion::Any, vec![e])
                    .await
                    .unwrap();
                // Unrelated events in between, so that checkpoints fall between ours.
                let theirs = stream(&other, w);
                let noise = vec![event(i), event(i + 1)];
                store
                    .append(&theirs, ExpectedVersion::Any, noise)
                    .await
                    .unwrap();
            }
            ids
        }));
    }
    let filter = EventFilter::categories([cat.as_str()]);
    let total = (WRITERS * EACH) as usize;
    let mut delivered: Vec<RecordedEvent> = Vec::new();
    let mut checkpoint = start;
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    while delivered.len() < total {
        // Resubscribe from the checkpoint every few items, as a restarting consumer would.
        let mut sub = store.subscribe(checkpoint, filter.clone());
        for _ in 0..5 {
            let item = tokio::time::timeout_at(deadline, sub.next())
                .await
                .expect("stalled")
                .unwrap()
                .unwrap();
            match item {
                SubscriptionItem::Event(e) => {
                    assert!(e.position > checkpoint);
                    checkpoint = e.position;
                    delivered.push(*e);
                }
                SubscriptionItem::Checkpoint(p) => checkpoint = checkpoint.max(p),
            }
            if delivered.len() == total {
                break;
            }
        }
    }
    let mut written = HashSet::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    assert_strictly_increasing(&delivered);
    let got: HashSet<Uuid> = delivered.iter().map(|e| e.id).collect();
    assert_eq!(got, written, "an event was skipped");
}

/// Appends `events` as one command would after a failure: again and again until it is
/// through, counting a duplicate (an attempt that went through unseen) as through.
async fn append_until_through(
    store: &dyn EventStore,
    s: &StreamName,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE * 3;
    loop {
        match store.append(s, expected, events.clone()).await {
            Ok(_) => return,
            Err(StoreError::Unavailable(why) | StoreError::Backend(why))
                if tokio::time::Instant::now() < deadline =>
            {
                eprintln!("append not through yet: {why}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("append failed for good: {e}"),
        }
    }
}

/// The server goes away (restarted, or every connection to it cut) while a subscriber is
/// live and a writer appends: the subscriber resumes without a gap or a repeat, and a write
/// retried across the outage is stored once.
pub(crate) async fn reconnects_after_the_server_drops_it<F, R>(
    store: Arc<dyn EventStore>,
    restart: F,
) where
    F: FnOnce() -> R,
    R: Future<Output = bool>,
{
    let cat = category();
    let start = start_position(&*store).await;
    let s = stream(&cat, "r");
    let mut sub = store.subscribe(start, EventFilter::categories([cat.as_str()]));
    let before: Vec<NewEvent> = (0..3).map(event).collect();
    store
        .append(&s, ExpectedVersion::NoStream, before.clone())
        .await
        .unwrap();
    collect_until(&mut sub, |g| g.len() >= 3).await;
    if !restart().await {
        return;
    }
    let after: Vec<NewEvent> = (3..6).map(event).collect();
    append_until_through(&*store, &s, ExpectedVersion::Exact(2), after.clone()).await;
    // The same write once more, as a caller that never heard the answer would send it.
    let again = store
        .append(&s, ExpectedVersion::Exact(2), after.clone())
        .await
        .unwrap();
    assert!(again.duplicate);
    let resumed = collect_until(&mut sub, |g| g.len() >= 3).await;
    assert_eq!(
        resumed.iter().map(|e| e.id).collect::<Vec<_>>(),
        after.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    let stored = store.read_stream(&s, 0, 100).await.unwrap();
    assert_eq!(stored.len(), 6, "nothing stored twice");
    // Nothing more arrives: no repeat of what was delivered before the outage.
    let extra = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match sub.next().await {
                Some(Ok(SubscriptionItem::Event(e))) => return Some(e),
                Some(Ok(SubscriptionItem::Checkpoint(_))) => continue,
                _ => return None,
            }
        }
    })
    .await;
    assert!(matches!(extra, Err(_) | Ok(None)), "repeated: {extra:?}");
}
