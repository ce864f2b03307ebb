//! The command bus's state cache stays within its bounds in entries and in bytes, evicts the
//! least recently used streams first, counts its hits and misses, and an evicted stream decides
//! exactly as before: its state is read back from the store. Real Postgres event store.

use std::sync::Arc;

use chrono::{Duration, Utc};
use purser_command_api::state_cache::CacheLimits;
use purser_command_api::{CommandBus, CommandContext};
use purser_domain::inventory::{Inventory, InventoryCommand, InventoryEvent};
use purser_domain::{OrderId, Quantity, ReservationId, Sku};
use purser_event_store::{EventStore, PgEventStore};
use purser_testkit::TestDb;
use uuid::Uuid;

fn ctx() -> CommandContext {
    CommandContext::new(format!("test-{}", Uuid::new_v4()))
}

fn sku(n: usize) -> Sku {
    Sku::parse(&format!("CACHE-{n}")).unwrap()
}

fn receive(sku: &Sku) -> InventoryCommand {
    InventoryCommand::Receive {
        sku: sku.clone(),
        qty: Quantity::new(10).unwrap(),
        now: Utc::now(),
    }
}

fn reserve(sku: &Sku, id: ReservationId) -> InventoryCommand {
    InventoryCommand::Reserve {
        sku: sku.clone(),
        reservation_id: id,
        order_id: OrderId::new(),
        qty: Quantity::new(3).unwrap(),
        expires_at: Utc::now() + Duration::minutes(10),
        now: Utc::now(),
    }
}

async fn store() -> (TestDb, Arc<dyn EventStore>) {
    let db = TestDb::new().await;
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(db.pool().await));
    (db, store)
}

#[tokio::test]
async fn the_cache_keeps_its_entry_bound_and_evicted_streams_decide_from_the_store() {
    let (_db, store) = store().await;
    let limits = CacheLimits {
        max_bytes: 1 << 20,
        max_entries: 8,
    };
    let bus = CommandBus::with_cache(store.clone(), limits);
    let reservations: Vec<ReservationId> = (0..40).map(|_| ReservationId::new()).collect();
    for (n, r) in reservations.iter().enumerate() {
        bus.execute::<Inventory>(&sku(n), &ctx(), receive(&sku(n)))
            .await
            .unwrap();
        bus.execute::<Inventory>(&sku(n), &ctx(), reserve(&sku(n), *r))
            .await
            .unwrap();
        assert!(bus.cache_stats().entries <= 8);
    }
    let stats = bus.cache_stats();
    assert_eq!(stats.entries, 8);
    assert_eq!(
        stats.evictions, 32,
        "one eviction per stream beyond the bound"
    );
    // Each stream's second command found its state cached; each first one did not.
    assert!(stats.hits >= 40, "{stats:?}");
    assert!(stats.misses >= 40, "{stats:?}");

    // The first streams were evicted long ago: repeating their reservation is still the
    // no-op the stored stream calls for, and a new one still sees 7 units left.
    for (n, r) in reservations.iter().enumerate().take(4) {
        let again = bus
            .execute::<Inventory>(&sku(n), &ctx(), reserve(&sku(n), *r))
            .await
            .unwrap();
        assert!(again.events.is_empty(), "stream {n}: {:?}", again.events);
        assert_eq!(again.state.available(), 7);
        let fresh = CommandBus::new(store.clone());
        let (state, version, _) = fresh.load::<Inventory>(&sku(n)).await.unwrap();
        assert_eq!((state, version), (again.state, again.version));
    }
}

#[tokio::test]
async fn the_cache_keeps_its_byte_bound_and_the_recently_used_stream_stays() {
    let (_db, store) = store().await;
    let limits = CacheLimits {
        max_bytes: 16 * 1024,
        max_entries: 10_000,
    };
    let bus = CommandBus::with_cache(store, limits);
    let hot = sku(0);
    bus.execute::<Inventory>(&hot, &ctx(), receive(&hot))
        .await
        .unwrap();
    for n in 1..60 {
        bus.execute::<Inventory>(&sku(n), &ctx(), receive(&sku(n)))
            .await
            .unwrap();
        // The hot stream is used between every other: it is never the least recently used.
        let hits = bus.cache_stats().hits;
        let r = bus
            .execute::<Inventory>(&hot, &ctx(), reserve(&hot, ReservationId::new()))
            .await
            .unwrap();
        assert!(matches!(
            r.events.as_slice(),
            [InventoryEvent::StockReserved { .. } | InventoryEvent::ReservationRejected { .. }]
        ));
        assert_eq!(
            bus.cache_stats().hits,
            hits + 1,
            "the hot stream was evicted"
        );
        let stats = bus.cache_stats();
        assert!(stats.bytes <= limits.max_bytes, "{stats:?}");
    }
    let stats = bus.cache_stats();
    assert!(stats.evictions > 0 && stats.entries < 60, "{stats:?}");
    assert!(stats.hit_ratio() > 0.0 && stats.hit_ratio() < 1.0);
}
