//! The command bus decides a command's first attempt on its cached aggregate state without
//! reading the stream. These tests run two buses (two processes' worth of caches) on one real
//! Postgres event store and check that a stale cache never decides anything the stream as
//! stored would not: every outcome equals the one a fresh load gives.

use std::sync::Arc;

use chrono::{Duration, Utc};
use purser_command_api::{CommandBus, CommandContext, CommandError};
use purser_domain::inventory::{
    Inventory, InventoryCommand, InventoryError, InventoryEvent, ReleaseReason,
};
use purser_domain::{OrderId, Quantity, ReservationId, Sku};
use purser_event_store::{EventStore, PgEventStore, StreamName, read_stream_to_end};
use purser_testkit::TestDb;
use uuid::Uuid;

struct Two {
    _db: TestDb,
    store: Arc<dyn EventStore>,
    a: CommandBus,
    b: CommandBus,
    sku: Sku,
    stream: StreamName,
}

async fn two_buses() -> Two {
    let db = TestDb::new().await;
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(db.pool().await));
    let sku = Sku::parse("CACHE-1").unwrap();
    let stream = StreamName::new(format!("inventory-{}", sku.as_str())).unwrap();
    Two {
        a: CommandBus::new(store.clone()),
        b: CommandBus::new(store.clone()),
        _db: db,
        store,
        sku,
        stream,
    }
}

fn ctx() -> CommandContext {
    CommandContext::new(format!("test-{}", Uuid::new_v4()))
}

fn receive(sku: &Sku, qty: u32) -> InventoryCommand {
    InventoryCommand::Receive {
        sku: sku.clone(),
        qty: Quantity::new(i64::from(qty)).unwrap(),
        now: Utc::now(),
    }
}

fn reserve(sku: &Sku, id: ReservationId, qty: u32) -> InventoryCommand {
    InventoryCommand::Reserve {
        sku: sku.clone(),
        reservation_id: id,
        order_id: OrderId::new(),
        qty: Quantity::new(i64::from(qty)).unwrap(),
        expires_at: Utc::now() + Duration::minutes(15),
        now: Utc::now(),
    }
}

fn confirm(reservation_id: ReservationId) -> InventoryCommand {
    InventoryCommand::Confirm {
        reservation_id,
        now: Utc::now(),
    }
}

fn release(reservation_id: ReservationId) -> InventoryCommand {
    InventoryCommand::Release {
        reservation_id,
        reason: ReleaseReason::PaymentFailed,
        now: Utc::now(),
    }
}

async fn stored_types(t: &Two) -> Vec<String> {
    read_stream_to_end(&*t.store, &t.stream, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[tokio::test]
async fn a_refusal_decided_on_a_stale_cache_is_decided_again_on_the_stored_stream() {
    let t = two_buses().await;
    let r = ReservationId::new();
    // A knows the stream without the reservation; B then makes it.
    t.a.execute::<Inventory>(&t.sku, &ctx(), receive(&t.sku, 5))
        .await
        .unwrap();
    t.b.execute::<Inventory>(&t.sku, &ctx(), reserve(&t.sku, r, 2))
        .await
        .unwrap();
    // On A's cache the reservation does not exist (ReservationNotFound); on the stream it does.
    let confirmed =
        t.a.execute::<Inventory>(&t.sku, &ctx(), confirm(r))
            .await
            .expect("the confirmation is decided on the stream as stored, not on A's stale cache");
    assert!(matches!(
        confirmed.events.as_slice(),
        [InventoryEvent::ReservationConfirmed { .. }]
    ));
    assert_eq!(confirmed.version, Some(2));
    assert_eq!(
        stored_types(&t).await,
        ["StockReceived", "StockReserved", "ReservationConfirmed"]
    );
}

#[tokio::test]
async fn work_decided_on_a_stale_cache_becomes_the_no_op_the_stored_stream_calls_for() {
    let t = two_buses().await;
    let r = ReservationId::new();
    t.a.execute::<Inventory>(&t.sku, &ctx(), receive(&t.sku, 5))
        .await
        .unwrap();
    t.a.execute::<Inventory>(&t.sku, &ctx(), reserve(&t.sku, r, 2))
        .await
        .unwrap();
    // B releases the reservation. On A's cache it is still active, so releasing it there is
    // real work; on the stream it is already done, a no-op. The stream must win.
    t.b.execute::<Inventory>(&t.sku, &ctx(), release(r))
        .await
        .unwrap();
    let again =
        t.a.execute::<Inventory>(&t.sku, &ctx(), release(r))
            .await
            .unwrap();
    assert!(
        again.events.is_empty(),
        "already released: nothing to append"
    );
    assert_eq!(again.version, Some(2));
    assert_eq!(
        stored_types(&t).await,
        ["StockReceived", "StockReserved", "ReservationReleased"]
    );
    // And a refusal the stored stream agrees with is still reported as a refusal.
    let refused = t.a.execute::<Inventory>(&t.sku, &ctx(), confirm(r)).await;
    assert!(matches!(
        refused,
        Err(CommandError::Domain(InventoryError::ReservationNotActive(
            _
        )))
    ));
}

#[tokio::test]
async fn events_decided_on_a_stale_cache_are_refused_by_the_store_and_decided_again() {
    let t = two_buses().await;
    t.a.execute::<Inventory>(&t.sku, &ctx(), receive(&t.sku, 3))
        .await
        .unwrap();
    // B takes all three units; A's cache still shows three available.
    t.b.execute::<Inventory>(&t.sku, &ctx(), reserve(&t.sku, ReservationId::new(), 3))
        .await
        .unwrap();
    let second =
        t.a.execute::<Inventory>(&t.sku, &ctx(), reserve(&t.sku, ReservationId::new(), 2))
            .await
            .unwrap();
    assert!(
        matches!(
            second.events.as_slice(),
            [InventoryEvent::ReservationRejected { available: 0, .. }]
        ),
        "decided on the stored stream (nothing left), got {:?}",
        second.events
    );
    assert_eq!(
        stored_types(&t).await,
        ["StockReceived", "StockReserved", "ReservationRejected"]
    );
}
