//! Realistic event histories for read-model tests: products with stock, carts, customers and
//! orders that go through checkout to an outcome, appended as real domain events through the
//! Postgres event store.
//!
//! Shared by the projection tests and the query-api tests, so every layer is tested against
//! the same histories. Behind the `scenario` feature, which brings in the domain, the event
//! store and the projections.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use purser_domain::events::AnyEvent;
use purser_event_store::{
    EventStore, ExpectedVersion, Metadata, NewEvent, PgEventStore, Position, StreamName,
};
use purser_projections::{Checkpoints, Projector};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod order;
mod product;
mod shoppers;
mod spec;
mod values;

pub use product::NewProduct;
pub use spec::{OrderSpec, Outcome};
pub use values::{Line, customer_of, digital, email, physical, qty, sku, t, terms, usd};

pub struct Scenario {
    pub store: Arc<dyn EventStore>,
    pool: PgPool,
    /// The furthest position appended so far.
    last: Mutex<Position>,
}

impl Scenario {
    pub fn new(pool: PgPool) -> Scenario {
        Scenario {
            store: Arc::new(PgEventStore::new(pool.clone())),
            pool,
            last: Mutex::new(Position::START),
        }
    }

    /// The furthest position appended so far.
    pub fn last(&self) -> Position {
        *self.last.lock().unwrap()
    }

    /// Appends events to a stream, whatever its version. Returns the last position.
    pub async fn append(
        &self,
        stream: impl Into<String>,
        events: impl IntoIterator<Item = AnyEvent>,
    ) -> Position {
        let events: Vec<NewEvent> = events
            .into_iter()
            .map(|e| {
                let (event_type, schema_version, data) = e.encode();
                NewEvent {
                    id: Uuid::now_v7(),
                    event_type: event_type.into(),
                    schema_version,
                    data,
                    metadata: Metadata::default(),
                }
            })
            .collect();
        let at = self
            .store
            .append(
                &StreamName::new(stream.into()).unwrap(),
                ExpectedVersion::Any,
                events,
            )
            .await
            .expect("append")
            .last_position;
        let mut last = self.last.lock().unwrap();
        *last = (*last).max(at);
        at
    }

    /// The head of the log.
    pub async fn head(&self) -> Position {
        self.store
            .head()
            .await
            .unwrap()
            .map(|h| h.position)
            .unwrap_or(Position::START)
    }
}

/// Runs every projection live until each has applied everything this scenario appended.
///
/// A projector catches up only to the log's visible head, and the head is held back while any
/// transaction of the Postgres cluster is open (parallel tests share it), so "the head now" may
/// be short of the last append. Running live and awaiting the checkpoints reaching the
/// scenario's last position is exact.
pub async fn catch_up_all(s: &Scenario) {
    let checkpoints = Checkpoints::new(s.pool.clone());
    let projector = Projector::new(
        s.store.clone(),
        s.pool.clone(),
        purser_projections::all(),
        checkpoints.clone(),
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (projector, stop) = (projector.clone(), stop.clone());
        async move { projector.run(stop).await }
    });
    let reached = checkpoints
        .wait_for(&projector.names(), s.last(), Duration::from_secs(60))
        .await
        .expect("read checkpoints");
    stop.cancel();
    running.await.expect("the projector stops cleanly");
    assert!(reached, "the read models did not catch up within 60 s");
}
