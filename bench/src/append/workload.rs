//! What one measurement appends with: the payloads, and one side's pool and client.

use std::sync::Arc;

use postgres_es::PostgresEventRepository;
use purser_event_store::{Metadata, PgEventStore};
use serde_json::Value;
use sqlx::PgPool;

use super::Side;
use crate::Sizes;
use crate::db::BenchDb;

/// A pool of encoded domain events to take payloads from, and the metadata every event
/// carries (as JSON for the baselines, typed for ours).
pub(super) struct Payloads {
    pub(super) events: Vec<(String, u16, Value)>,
    pub(super) metadata: Value,
    pub(super) metadata_typed: Metadata,
}

/// The shared state of one measurement.
pub(super) struct Workload {
    pub(super) side: Side,
    pub(super) per_command: usize,
    pub(super) store: Option<PgEventStore>,
    pub(super) pool: PgPool,
    pub(super) cqrs: Option<PostgresEventRepository>,
    pub(super) payloads: Arc<Payloads>,
}

impl Workload {
    /// One side's pool and client for one workload, every connection open.
    pub(super) async fn open(
        db: &BenchDb,
        side: Side,
        per_command: usize,
        sizes: &Sizes,
        payloads: Arc<Payloads>,
    ) -> anyhow::Result<Workload> {
        let clients = sizes.append_clients;
        let pool = db.pool(clients as u32 + 2).await?;
        let mut warm = vec![];
        for _ in 0..clients {
            warm.push(pool.acquire().await?);
        }
        drop(warm);
        Ok(Workload {
            side,
            per_command,
            store: (side == Side::Ours).then(|| PgEventStore::new(pool.clone())),
            cqrs: (side == Side::Cqrs).then(|| {
                PostgresEventRepository::new(pool.clone())
                    .with_tables("bench.cqrs_events", "bench.cqrs_snapshots")
            }),
            pool,
            payloads,
        })
    }
}
