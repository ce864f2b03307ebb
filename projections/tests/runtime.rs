//! The projector runtime against a real Postgres: exactly-once application across takeovers,
//! rebuilds equal to the live model, and waiting for a position.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use purser_domain::inventory::InventoryEvent;
use purser_domain::product::{ProductEvent, ProductKind};
use purser_domain::{Currency, Event, Money, Quantity, Sku};
use purser_event_store::{
    EventStore, ExpectedVersion, Metadata, NewEvent, PgEventStore, Position, StreamName,
};
use purser_projections::catalog::CatalogProjection;
use purser_projections::{Checkpoints, Projection, Projector, ProjectorOptions, table_checksum};
use purser_testkit::TestDb;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn new_event(e: &impl Event) -> NewEvent {
    let (t, v, data) = e.encode();
    NewEvent {
        id: Uuid::now_v7(),
        event_type: t.into(),
        schema_version: v,
        data,
        metadata: Metadata::default(),
    }
}

async fn create_product(store: &dyn EventStore, sku: &str) {
    let sku = Sku::parse(sku).unwrap();
    let e = ProductEvent::ProductCreated {
        sku: sku.clone(),
        name: format!("Product {sku}"),
        description: "A thing".into(),
        brand: "Acme".into(),
        category: "Tools".into(),
        kind: ProductKind::Physical,
        price: Money::new(1999, Currency::USD),
        at: Utc::now(),
    };
    store
        .append(
            &StreamName::new(sku.product_stream()).unwrap(),
            ExpectedVersion::NoStream,
            vec![new_event(&e)],
        )
        .await
        .unwrap();
}

async fn receive(store: &dyn EventStore, sku: &str, qty: i64) -> Position {
    let sku = Sku::parse(sku).unwrap();
    let e = InventoryEvent::StockReceived {
        sku: sku.clone(),
        qty: Quantity::new(qty).unwrap(),
        at: Utc::now(),
    };
    append_stock(store, &sku, &e).await
}

/// Appends one event to the SKU's inventory stream; returns its position.
async fn append_stock(store: &dyn EventStore, sku: &Sku, e: &InventoryEvent) -> Position {
    store
        .append(
            &StreamName::new(sku.inventory_stream()).unwrap(),
            ExpectedVersion::Any,
            vec![new_event(e)],
        )
        .await
        .unwrap()
        .last_position
}

fn projector(store: Arc<dyn EventStore>, pool: PgPool) -> Projector {
    let projections: Vec<Arc<dyn Projection>> = vec![Arc::new(CatalogProjection)];
    Projector::new(store, pool.clone(), projections, Checkpoints::new(pool)).with_options(
        ProjectorOptions {
            batch_max: 50,
            claim_retry: Duration::from_millis(100),
            status_interval: Duration::from_millis(200),
        },
    )
}

async fn on_hand(pool: &PgPool, sku: &str) -> i64 {
    sqlx::query_scalar("select on_hand from catalog.stock where sku = $1")
        .bind(sku)
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_projector_takes_over_without_skipping_or_repeating() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
    create_product(&*store, "TAKE-1").await;
    let checkpoints = Checkpoints::new(pool.clone());

    let first = projector(store.clone(), pool.clone());
    let second = projector(store.clone(), pool.clone());
    let stop_first = CancellationToken::new();
    let stop_second = CancellationToken::new();
    let mut t1 = Some(tokio::spawn({
        let (p, s) = (first.clone(), stop_first.clone());
        async move { p.run(s).await }
    }));
    let t2 = tokio::spawn({
        let (p, s) = (second.clone(), stop_second.clone());
        async move { p.run(s).await }
    });

    // Stock arrives in small receipts while the owner changes hands halfway.
    let mut expected = 0;
    let mut last = Position::START;
    for i in 1..=40 {
        last = receive(&*store, "TAKE-1", i).await;
        expected += i;
        if i == 20 {
            assert!(
                checkpoints
                    .wait_for(&["catalog"], last, Duration::from_secs(20))
                    .await
                    .unwrap()
            );
            stop_first.cancel();
            t1.take().unwrap().await.unwrap();
        }
    }
    assert!(
        checkpoints
            .wait_for(&["catalog"], last, Duration::from_secs(20))
            .await
            .unwrap()
    );
    assert_eq!(
        on_hand(&pool, "TAKE-1").await,
        expected,
        "every receipt applied exactly once"
    );
    let owners: Vec<Option<String>> =
        sqlx::query_scalar("select owner from purser.projection_checkpoints")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(owners.len(), 1);
    stop_second.cancel();
    t2.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_zero_equals_the_live_model() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
    for i in 0..5 {
        create_product(&*store, &format!("RB-{i}")).await;
        for q in 1..=3 {
            receive(&*store, &format!("RB-{i}"), q * 10).await;
        }
    }
    let p = projector(store.clone(), pool.clone());
    let stop = CancellationToken::new();
    let live = tokio::spawn({
        let (p, s) = (p.clone(), stop.clone());
        async move { p.run(s).await }
    });
    let head = store.last_committed().await.unwrap().unwrap().position;
    assert!(
        Checkpoints::new(pool.clone())
            .wait_for(&["catalog"], head, Duration::from_secs(20))
            .await
            .unwrap()
    );
    let before = (
        table_checksum(&pool, "catalog.products").await.unwrap(),
        table_checksum(&pool, "catalog.stock").await.unwrap(),
    );
    assert_eq!(before.0.0, 5);
    stop.cancel();
    live.await.unwrap();

    let outcome = p.rebuild("catalog").await.unwrap();
    assert_eq!(
        outcome,
        purser_projections::RebuildOutcome::Rebuilt { events: 20 }
    );
    let after = (
        table_checksum(&pool, "catalog.products").await.unwrap(),
        table_checksum(&pool, "catalog.stock").await.unwrap(),
    );
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_under_a_running_projector_rebuilds_in_place() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
    create_product(&*store, "LIVE-1").await;
    let last = receive(&*store, "LIVE-1", 7).await;
    let p = projector(store.clone(), pool.clone());
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (p, s) = (p.clone(), stop.clone());
        async move { p.run(s).await }
    });
    let checkpoints = Checkpoints::new(pool.clone());
    assert!(
        checkpoints
            .wait_for(&["catalog"], last, Duration::from_secs(20))
            .await
            .unwrap()
    );
    // Another process (here: another Projector) asks for a rebuild; the running one does it.
    let outcome = projector(store.clone(), pool.clone())
        .rebuild("catalog")
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        purser_projections::RebuildOutcome::HandedOver { .. }
    ));
    let last = receive(&*store, "LIVE-1", 5).await;
    assert!(
        checkpoints
            .wait_for(&["catalog"], last, Duration::from_secs(20))
            .await
            .unwrap()
    );
    assert_eq!(on_hand(&pool, "LIVE-1").await, 12);
    stop.cancel();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_position_times_out_cleanly_when_nothing_runs() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
    let last = receive(&*store, "NOBODY-1", 1).await;
    let reached = Checkpoints::new(pool)
        .wait_for(&["catalog"], last, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(!reached);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_is_retried_event_by_event_and_the_error_names_the_event() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
    create_product(&*store, "OK-1").await;
    receive(&*store, "OK-1", 10).await;
    // A reservation of stock that was never received: the catalog's stock row for it would
    // break `stock_consistent` (reserved <= on_hand), so the projection cannot apply it. The
    // catalog writes a batch's stock moves in one statement, so the first failure is the
    // batch's; the retry goes event by event and names this one.
    let sku = Sku::parse("BAD-1").unwrap();
    let bad = InventoryEvent::StockReserved {
        sku: sku.clone(),
        reservation_id: purser_domain::ReservationId::derived(&["bad"]),
        order_id: purser_domain::OrderId::derived(&["bad"]),
        qty: Quantity::new(5).unwrap(),
        expires_at: Utc::now(),
        at: Utc::now(),
    };
    let bad_at = append_stock(&*store, &sku, &bad).await;
    receive(&*store, "OK-1", 5).await;

    let p = projector(store.clone(), pool.clone());
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (p, s) = (p.clone(), stop.clone());
        async move { p.run(s).await }
    });
    let checkpoints = Checkpoints::new(pool.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let row = loop {
        let row = checkpoints
            .all()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.name == "catalog");
        if let Some(row) = row.as_ref().filter(|c| {
            c.last_error
                .as_deref()
                .is_some_and(|e| e.contains("StockReserved"))
        }) {
            break row.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no error naming the event was recorded: {row:?}"
        );
        // Errors are recorded in the checkpoint row, with nothing to wait on: poll it.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    running.await.unwrap();

    let error = row.last_error.unwrap();
    assert!(
        error.contains(&format!("catalog failed at {bad_at}")) && error.contains("inventory-BAD-1"),
        "{error}"
    );
    // Everything before the bad event is applied, nothing at or after it.
    assert!(row.position < bad_at, "{:?} vs {bad_at}", row.position);
    assert_eq!(on_hand(&pool, "OK-1").await, 10);
    assert_eq!(on_hand(&pool, "BAD-1").await, 0);
}
