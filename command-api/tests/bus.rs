//! The command bus decides a command's first attempt on its cached aggregate state without
//! reading the stream. These tests run two buses (two processes' worth of caches) on one real
//! Postgres event store and check that a stale cache never decides anything the stream as
//! stored would not: every outcome equals the one a fresh load gives. And they check that an
//! event store outage is waited out without storing a command twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Duration, Utc};
use purser_command_api::{CommandBus, CommandContext, CommandError};
use purser_domain::inventory::{
    Inventory, InventoryCommand, InventoryError, InventoryEvent, ReleaseReason,
};
use purser_domain::{OrderId, Quantity, ReservationId, Sku};
use purser_event_store::{
    AppendOutcome, EventFilter, EventStore, ExpectedVersion, Head, NewEvent, PgEventStore,
    Position, RecordedEvent, StoreError, StreamName, SubscriptionStream, read_stream_to_end,
};
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

/// A store that goes away at the worst moments: after an append went through but before it
/// answered, and on reads, a set number of times each.
struct Outages {
    inner: Arc<dyn EventStore>,
    appends_lost: AtomicUsize,
    reads_failed: AtomicUsize,
}

fn take(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

fn gone() -> StoreError {
    StoreError::Unavailable("leader election in progress".into())
}

#[async_trait::async_trait]
impl EventStore for Outages {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let outcome = self.inner.append(stream, expected, events).await?;
        if take(&self.appends_lost) {
            return Err(gone());
        }
        Ok(outcome)
    }
    async fn read_stream(
        &self,
        stream: &StreamName,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if take(&self.reads_failed) {
            return Err(gone());
        }
        self.inner.read_stream(stream, from_version, max).await
    }
    async fn read_all(
        &self,
        after: Position,
        max: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, max, filter).await
    }
    fn subscribe(&self, after: Position, filter: EventFilter) -> SubscriptionStream {
        self.inner.subscribe(after, filter)
    }
    async fn head(&self) -> Result<Option<Head>, StoreError> {
        self.inner.head().await
    }
    async fn backlog(
        &self,
        after: Position,
        filter: &EventFilter,
        cap: u64,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        self.inner.backlog(after, filter, cap).await
    }
}

#[tokio::test]
async fn a_command_whose_append_went_through_unseen_is_stored_once() {
    let t = two_buses().await;
    let store = Arc::new(Outages {
        inner: t.store.clone(),
        appends_lost: AtomicUsize::new(1),
        reads_failed: AtomicUsize::new(1),
    });
    let bus = CommandBus::new(store.clone());
    // A command without an idempotency key: its event ids are fresh, but the same on every
    // attempt, so the store recognises the first attempt's append when the bus sends it again
    // after the outage (receiving stock is not idempotent in the domain: decided again on the
    // stored stream it would add the stock twice).
    let done = bus
        .execute::<Inventory>(&t.sku, &ctx(), receive(&t.sku, 5))
        .await
        .expect("the outage is waited out");
    assert!(done.events.is_empty(), "reported as already done");
    assert_eq!(stored_types(&t).await, ["StockReceived"]);
    assert_eq!(store.appends_lost.load(Ordering::SeqCst), 0);
    assert_eq!(store.reads_failed.load(Ordering::SeqCst), 0);
    // And the state is the stored one: five units, not ten.
    let (state, _, _) = bus.load::<Inventory>(&t.sku).await.unwrap();
    let (fresh, _, _) = t.a.load::<Inventory>(&t.sku).await.unwrap();
    assert_eq!(format!("{state:?}"), format!("{fresh:?}"));
}

#[tokio::test]
async fn an_outage_longer_than_the_bus_waits_is_reported() {
    let t = two_buses().await;
    let bus = CommandBus::new(Arc::new(Outages {
        inner: t.store.clone(),
        appends_lost: AtomicUsize::new(0),
        reads_failed: AtomicUsize::new(usize::MAX),
    }));
    let started = std::time::Instant::now();
    let failed = bus
        .execute::<Inventory>(&t.sku, &ctx(), receive(&t.sku, 5))
        .await;
    assert!(matches!(
        failed,
        Err(CommandError::Store(StoreError::Unavailable(_)))
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(stored_types(&t).await.is_empty());
}
