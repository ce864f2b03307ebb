//! The contract suite on Postgres, plus the Postgres-specific race the design is built around:
//! a transaction that takes a lower global position but commits after a higher one.

mod contract;

use std::sync::Arc;
use std::time::Duration;

use contract::{category, collect_until, event, stream};
use futures::StreamExt;
use purser_event_store::{
    EventFilter, EventStore, ExpectedVersion, NewEvent, PgEventStore, PgStoreOptions, Position,
    SubscriptionItem,
};
use purser_testkit::TestDb;
use uuid::Uuid;

async fn make() -> Option<(Arc<dyn EventStore>, TestDb)> {
    let db = TestDb::new().await;
    let store = PgEventStore::new(db.pool().await);
    Some((Arc::new(store), db))
}

contract_suite!(make);

/// Appends through the SQL function inside a caller-held transaction, so the test controls
/// when it commits.
async fn append_in_tx(tx: &mut sqlx::PgConnection, stream: &str, e: &NewEvent) {
    sqlx::query("select * from es.append_events($1, -1, $2, $3, $4, $5, $6)")
        .bind(stream)
        .bind(vec![e.id])
        .bind(vec![e.event_type.clone()])
        .bind(vec![i32::from(e.schema_version)])
        .bind(vec![e.data.clone()])
        .bind(vec![serde_json::to_value(&e.metadata).unwrap()])
        .execute(tx)
        .await
        .unwrap();
}

/// The gap race. T1 appends event A (taking the lower position) and stays open; T2 appends
/// Y (a higher position) and commits; then T1 commits; then Z is appended. Returns what a
/// subscriber delivered, and whether it delivered anything while T1 was still open.
async fn gap_scenario(opts: PgStoreOptions) -> (Vec<Uuid>, [Uuid; 3], bool) {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = PgEventStore::with_options(pool.clone(), opts);
    let cat = category();
    let mut sub = store.subscribe(Position::START, EventFilter::categories([cat.as_str()]));

    let (a, y, z) = (event(1), event(2), event(3));
    let mut t1 = pool.begin().await.unwrap();
    append_in_tx(&mut t1, stream(&cat, "a").as_str(), &a).await;
    store
        .append(&stream(&cat, "y"), ExpectedVersion::Any, vec![y.clone()])
        .await
        .unwrap();

    // A lower position is held by an open transaction while a higher one is committed.
    let positions: Vec<i64> = sqlx::query_scalar(
        "select global_position from es.events where event_id = any($1) order by global_position",
    )
    .bind(vec![a.id, y.id])
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(positions.len(), 1, "only Y is committed so far");

    // While T1 is open, a correct subscriber must not deliver Y. Give it a generous window
    // in which a broken one would.
    let early = tokio::time::timeout(Duration::from_millis(700), sub.next())
        .await
        .is_ok();

    t1.commit().await.unwrap();
    let a_pos: i64 =
        sqlx::query_scalar("select global_position from es.events where event_id = $1")
            .bind(a.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    let y_pos: i64 =
        sqlx::query_scalar("select global_position from es.events where event_id = $1")
            .bind(y.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        a_pos < y_pos,
        "A took the lower position yet committed last"
    );

    store
        .append(&stream(&cat, "z"), ExpectedVersion::Any, vec![z.clone()])
        .await
        .unwrap();
    // Whatever was delivered early counts too.
    let mut delivered: Vec<Uuid> = Vec::new();
    if early {
        // The item read above was consumed; a broken subscriber delivered Y there.
        delivered.push(y.id);
    }
    let rest = collect_until(&mut sub, |g| g.iter().any(|e| e.id == z.id)).await;
    delivered.extend(rest.iter().map(|e| e.id));
    (delivered, [a.id, y.id, z.id], early)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_race_delivers_every_event_once_in_order() {
    let opts = PgStoreOptions {
        idle_poll: Duration::from_millis(50),
        ..Default::default()
    };
    let (delivered, [a, y, z], early) = gap_scenario(opts).await;
    assert!(
        !early,
        "Y was delivered while the transaction holding a lower position was open"
    );
    assert_eq!(delivered, vec![a, y, z]);
}

/// The teeth of the test above: with the visibility horizon switched off, the same scenario
/// delivers Y early and loses A for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_race_without_the_horizon_loses_an_event() {
    let opts = PgStoreOptions {
        idle_poll: Duration::from_millis(50),
        unsafe_ignore_visibility_horizon: true,
        ..Default::default()
    };
    let (delivered, [a, _y, _z], early) = gap_scenario(opts).await;
    assert!(
        early,
        "without the horizon Y is delivered while A is uncommitted"
    );
    assert!(!delivered.contains(&a), "without the horizon A is skipped");
}

/// Many writers hold their transactions open for random moments while a consumer reads,
/// checkpoints and resumes from its checkpoint again and again: it must end up with every
/// event exactly once, in a consistent order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_commits_and_resubscribes_never_skip_or_repeat() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = PgEventStore::with_options(
        pool.clone(),
        PgStoreOptions {
            idle_poll: Duration::from_millis(50),
            batch_size: 16,
            ..Default::default()
        },
    );
    let cat = category();
    const WRITERS: u64 = 6;
    const EACH: u64 = 25;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (pool, cat) = (pool.clone(), cat.clone());
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let e = event(w * 1000 + i);
                ids.push(e.id);
                let mut tx = pool.begin().await.unwrap();
                append_in_tx(&mut tx, stream(&cat, w).as_str(), &e).await;
                // Hold the transaction open for a varying moment so commits interleave.
                let hold = (w * 7 + i * 13) % 15;
                tokio::time::sleep(Duration::from_millis(hold)).await;
                tx.commit().await.unwrap();
            }
            ids
        }));
    }
    let filter = EventFilter::categories([cat.as_str()]);
    let total = (WRITERS * EACH) as usize;
    let mut delivered = Vec::new();
    let mut checkpoint = Position::START;
    let deadline = tokio::time::Instant::now() + contract::PATIENCE;
    while delivered.len() < total {
        // Resubscribe from the checkpoint every few events, as a restarting consumer would.
        let mut sub = store.subscribe(checkpoint, filter.clone());
        for _ in 0..7 {
            let item = tokio::time::timeout_at(deadline, sub.next())
                .await
                .expect("stalled")
                .unwrap()
                .unwrap();
            match item {
                SubscriptionItem::Event(e) => {
                    assert!(e.position > checkpoint);
                    checkpoint = e.position;
                    delivered.push(e.id);
                }
                SubscriptionItem::Checkpoint(p) => checkpoint = checkpoint.max(p),
            }
            if delivered.len() == total {
                break;
            }
        }
    }
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = delivered.iter().collect();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "an event was delivered twice"
    );
    assert_eq!(unique, written.iter().collect(), "an event was skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_chain_links_each_stream() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = PgEventStore::new(pool.clone());
    let s = stream(&category(), "h");
    store
        .append(&s, ExpectedVersion::NoStream, vec![event(1), event(2)])
        .await
        .unwrap();
    store
        .append(&s, ExpectedVersion::Exact(1), vec![event(3)])
        .await
        .unwrap();
    // Recomputing every hash from the stored content and the previous hash reproduces it.
    let broken: i64 = sqlx::query_scalar(
        "select count(*) from es.events e
         left join es.events p on p.stream_name = e.stream_name and p.stream_version = e.stream_version - 1
         where e.stream_name = $1
           and e.hash <> es.event_hash(p.hash, e.event_id, e.stream_name, e.stream_version, e.event_type,
                                       e.schema_version, e.data, e.metadata, e.recorded_at)",
    )
    .bind(s.as_str())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(broken, 0);
}
