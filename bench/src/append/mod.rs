//! Rows 1–3: append throughput.
//!
//! Every side runs the same workload: `clients` tasks, each owning 32 streams it appends to in
//! turn with the right expected version (a command knows the version it decided on), one
//! event or 100 events per command, payloads taken from a pool of encoded domain events.
//!
//! * ours: `PgEventStore::append` (one round trip to `es.append_events`: version check, hash
//!   chain, insert, plus the coalesced wake-up it sends after commit);
//! * raw: plain `INSERT`s into `bench.raw_events`, a `LIKE es.events INCLUDING ALL` copy (same
//!   columns, defaults, identity, generated category, constraints and indexes), with a SHA-256
//!   the client computes, autocommitted: single-row `VALUES` for one event, `INSERT … SELECT
//!   FROM unnest(…)` for 100;
//! * cqrs-es: `postgres_es::PostgresEventRepository::persist`, the call its framework commits
//!   through (its own schema, `db/init.sql` of postgres-es, in `bench.cqrs_events`). This is
//!   its fastest path: `CqrsFramework::execute` would also load the aggregate first.
//!
//! The sides take turns (rotated each round) on fresh streams, each on a pool of its own.

mod clients;
mod cqrs;
mod sides;
mod workload;

use std::sync::Arc;

use purser_event_store::Metadata;
use uuid::Uuid;

use crate::db::BenchDb;
use crate::report::{Row, Target};
use crate::{Sizes, progress};
use clients::measure;
use workload::{Payloads, Workload};

const STREAMS_PER_CLIENT: usize = 32;
const BATCH: usize = 100;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Which {
    pub(crate) raw: bool,
    pub(crate) cqrs: bool,
    pub(crate) single: bool,
    pub(crate) batch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Raw,
    Cqrs,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Ours => "ours",
            Side::Raw => "raw SQL",
            Side::Cqrs => "cqrs-es",
        }
    }
}

const SETUP: &str = r#"
create schema bench;
create table bench.raw_events (like es.events including all);
create table bench.cqrs_events (
    aggregate_type text                         not null,
    aggregate_id   text                         not null,
    sequence       bigint check (sequence >= 0) not null,
    event_type     text                         not null,
    event_version  text                         not null,
    payload        json                         not null,
    metadata       json                         not null,
    primary key (aggregate_type, aggregate_id, sequence)
);
create table bench.cqrs_snapshots (
    aggregate_type   text                                 not null,
    aggregate_id     text                                 not null,
    last_sequence    bigint check (last_sequence >= 0)    not null,
    current_snapshot bigint check (current_snapshot >= 0) not null,
    payload          json                                 not null,
    primary key (aggregate_type, aggregate_id, last_sequence)
);
"#;

pub(crate) async fn run(
    db: &BenchDb,
    sizes: &Sizes,
    which: Which,
    verbose: bool,
) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    {
        let pool = db.pool(1).await?;
        sqlx::raw_sql(SETUP).execute(&pool).await?;
        pool.close().await;
    }
    let metadata_typed = Metadata {
        correlation_id: Some(Uuid::now_v7()),
        actor: Some("system:bench".into()),
        ..Metadata::default()
    };
    let payloads = Arc::new(Payloads {
        events: crate::synth::sample_payloads(1_000),
        metadata: serde_json::to_value(&metadata_typed)?,
        metadata_typed,
    });
    let mut sides = vec![Side::Ours];
    if which.raw {
        sides.push(Side::Raw);
    }
    if which.cqrs {
        sides.push(Side::Cqrs);
    }
    let mut workloads = vec![];
    if which.single {
        workloads.push(1);
    }
    if which.batch {
        workloads.push(BATCH);
    }
    let mut rows = vec![];
    let mut notes = vec![];
    for per_command in workloads {
        let totals = rounds(db, sizes, &sides, per_command, &payloads, verbose).await?;
        rows.extend(workload_rows(&totals, per_command, sizes.append_clients));
    }
    notes.push(format!(
        "rows 1–3: {} clients, {} rounds of {:.1} s per side (each after a short warm-up), sides in turn on fresh streams, so a slow moment of the machine falls on every side alike; cqrs-es measured at `PersistedEventRepository::persist`, its fastest path",
        sizes.append_clients, sizes.append_rounds, sizes.append_secs
    ));
    Ok((rows, notes))
}

/// Every round of one workload, the sides taking turns (rotated each round); returns
/// (side, events, seconds) per side, summed over the rounds.
async fn rounds(
    db: &BenchDb,
    sizes: &Sizes,
    sides: &[Side],
    per_command: usize,
    payloads: &Arc<Payloads>,
    verbose: bool,
) -> anyhow::Result<Vec<(Side, u64, f64)>> {
    let mut totals: Vec<(Side, u64, f64)> = sides.iter().map(|s| (*s, 0, 0.0)).collect();
    let mut targets = vec![];
    for side in sides {
        targets.push(Arc::new(
            Workload::open(db, *side, per_command, sizes, payloads.clone()).await?,
        ));
    }
    for round in 0..sizes.append_rounds {
        let mut order = targets.clone();
        order.rotate_left(round % sides.len());
        for target in order {
            let side = target.side;
            let (events, secs) = measure(&target, sizes).await?;
            progress(
                verbose,
                format!(
                    "append {per_command}/command, {}: {:.0} events/s",
                    side.label(),
                    events as f64 / secs
                ),
            );
            let t = totals.iter_mut().find(|t| t.0 == side).expect("side");
            t.1 += events;
            t.2 += secs;
        }
    }
    for target in targets {
        target.pool.close().await;
    }
    Ok(totals)
}

/// Rows 1 or 2 (ours against raw SQL) and 3 (against cqrs-es) for one workload.
fn workload_rows(totals: &[(Side, u64, f64)], per_command: usize, clients: usize) -> Vec<Row> {
    let rate = |s: Side| totals.iter().find(|t| t.0 == s).map(|t| t.1 as f64 / t.2);
    let ours = rate(Side::Ours).expect("ours is always measured");
    let label = if per_command == 1 {
        "append, 1 event per command".to_owned()
    } else {
        format!("append, {per_command}-event batches")
    };
    let mut rows = vec![];
    if let Some(raw) = rate(Side::Raw) {
        let row = if per_command == 1 { 1 } else { 2 };
        rows.push(
            Row::new(
                row,
                format!("{label}, {clients} clients, vs raw INSERT"),
                ours,
                "events/s",
            )
            .vs(raw)
            .target(Target::RatioAtLeast(0.85)),
        );
    }
    if let Some(cqrs) = rate(Side::Cqrs) {
        rows.push(
            Row::new(
                3,
                format!("{label}, {clients} clients, vs cqrs-es/postgres-es"),
                ours,
                "events/s",
            )
            .vs(cqrs)
            .target(Target::RatioAbove(1.0)),
        );
    }
    rows
}
