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

/// What a server restart does to the store: every connection to its database is cut (the
/// shared Postgres server of the test run cannot itself be restarted).
async fn drop_connections(db: &TestDb) -> bool {
    let admin = sqlx::PgPool::connect(&purser_testkit::base_url())
        .await
        .expect("connect to the server");
    let name = db
        .connect_options()
        .get_database()
        .expect("a database")
        .to_owned();
    let cut: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1",
    )
    .bind(&name)
    .fetch_all(&admin)
    .await
    .expect("terminate the connections");
    assert!(!cut.is_empty(), "the store had no connection to cut");
    true
}

contract_suite!(
    make,
    drop_connections,
    contract::Traits {
        refuses_ids_of_other_streams: true,
        atomic_multi_stream: true,
    }
);

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

/// The live tail is read once per process into a shared window of the newest events (a few
/// thousand). Subscribers inside it are served from memory; one that falls behind it (a slow
/// consumer) or starts behind it reads its own pages until it reaches it again. Every one of
/// them must still see every event exactly once, in log order, whatever its filter.
#[tokio::test]
async fn subscribers_behind_and_inside_the_shared_tail_window_see_every_event_once_in_order() {
    let db = TestDb::new().await;
    let store = PgEventStore::new(db.pool().await);
    let (cat, other) = (category(), category());
    let want = |c: &str| EventFilter::categories([c]);
    // All three subscribe before anything is appended, so they start inside the window.
    let mut eager = store.subscribe(Position::START, want(&cat));
    let mut lazy = store.subscribe(Position::START, want(&cat));
    let mut everything = store.subscribe(Position::START, EventFilter::all());

    // 9,000 events (more than twice the window), interleaved with another category that the
    // filtered subscribers must skip; the eager subscriber keeps up meanwhile, the lazy one is
    // not read at all, so its channel fills and the window moves past it.
    const BATCHES: u64 = 45;
    let mut ids = Vec::new();
    let mut all_ids = Vec::new();
    let eager_task = tokio::spawn(async move {
        let got = collect_until(&mut eager, |g| g.len() >= (BATCHES * 100) as usize).await;
        (got, eager)
    });
    for b in 0..BATCHES {
        let mine: Vec<NewEvent> = (0..100).map(|i| event(b * 100 + i)).collect();
        let theirs: Vec<NewEvent> = (0..100).map(|i| event(b * 100 + i)).collect();
        ids.extend(mine.iter().map(|e| e.id));
        all_ids.extend(mine.iter().map(|e| e.id));
        all_ids.extend(theirs.iter().map(|e| e.id));
        store
            .append(&stream(&cat, b), ExpectedVersion::NoStream, mine)
            .await
            .unwrap();
        store
            .append(&stream(&other, b), ExpectedVersion::NoStream, theirs)
            .await
            .unwrap();
    }
    let (eager_got, _eager) = eager_task.await.unwrap();
    let lazy_got = collect_until(&mut lazy, |g| g.len() >= ids.len()).await;
    let everything_got = collect_until(&mut everything, |g| g.len() >= all_ids.len()).await;
    // Started after the appends, far behind the window.
    let mut late = store.subscribe(Position::START, want(&cat));
    let late_got = collect_until(&mut late, |g| g.len() >= ids.len()).await;

    let id_list = |got: &[purser_event_store::RecordedEvent]| -> Vec<Uuid> {
        got.iter().map(|e| e.id).collect()
    };
    assert_eq!(id_list(&eager_got), ids, "eager subscriber");
    assert_eq!(
        id_list(&lazy_got),
        ids,
        "subscriber that fell behind the window"
    );
    assert_eq!(
        id_list(&late_got),
        ids,
        "subscriber that started behind the window"
    );
    assert_eq!(id_list(&everything_got), all_ids, "unfiltered subscriber");

    // And nothing more comes for any of them (no event delivered twice): one more event each
    // way is the next thing every subscriber yields.
    let (last_mine, last_theirs) = (event(1_000_000), event(1_000_001));
    let (mine_id, theirs_id) = (last_mine.id, last_theirs.id);
    store
        .append(
            &stream(&other, "last"),
            ExpectedVersion::NoStream,
            vec![last_theirs],
        )
        .await
        .unwrap();
    store
        .append(
            &stream(&cat, "last"),
            ExpectedVersion::NoStream,
            vec![last_mine],
        )
        .await
        .unwrap();
    for (name, sub) in [("lazy", &mut lazy), ("late", &mut late)] {
        let next = collect_until(sub, |g| !g.is_empty()).await;
        assert_eq!(
            next[0].id, mine_id,
            "{name}: the next event after the catch-up"
        );
    }
    let next = collect_until(&mut everything, |g| g.len() >= 2).await;
    assert_eq!(id_list(&next), [theirs_id, mine_id]);
}
