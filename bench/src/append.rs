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

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent};
use postgres_es::PostgresEventRepository;
use purser_event_store::{
    EventStore, ExpectedVersion, Metadata, NewEvent, PgEventStore, StreamName,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::BenchDb;
use crate::report::{Row, Target};
use crate::{Sizes, progress};

/// One event row as the raw-SQL baseline inserts it: id, version, type, schema version, data, hash.
type RawRow<'a> = (Uuid, i64, &'a str, i32, &'a Value, Vec<u8>);

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

/// The aggregate cqrs-es needs a type for; only `TYPE` matters to `persist`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct BenchOrder;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BenchEvent(Value);

impl DomainEvent for BenchEvent {
    fn event_type(&self) -> String {
        "BenchEvent".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

impl Aggregate for BenchOrder {
    const TYPE: &'static str = "order";
    type Command = ();
    type Event = BenchEvent;
    type Error = Infallible;
    type Services = ();

    async fn handle(
        &mut self,
        _command: (),
        _services: &(),
        _sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Infallible> {
        Ok(())
    }

    fn apply(&mut self, _event: BenchEvent) {}
}

struct Payloads {
    events: Vec<(String, u16, Value)>,
    metadata: Value,
    metadata_typed: Metadata,
}

/// The shared state of one measurement.
struct Workload {
    side: Side,
    per_command: usize,
    store: Option<PgEventStore>,
    pool: PgPool,
    cqrs: Option<PostgresEventRepository>,
    payloads: Arc<Payloads>,
}

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
        // (events, seconds) per side, summed over rounds.
        let mut totals: Vec<(Side, u64, f64)> = sides.iter().map(|s| (*s, 0, 0.0)).collect();
        let mut targets = vec![];
        for side in &sides {
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
        let rate = |s: Side| totals.iter().find(|t| t.0 == s).map(|t| t.1 as f64 / t.2);
        let ours = rate(Side::Ours).expect("ours is always measured");
        let label = if per_command == 1 {
            "append, 1 event per command".to_owned()
        } else {
            format!("append, {per_command}-event batches")
        };
        let clients = sizes.append_clients;
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
        for target in targets {
            target.pool.close().await;
        }
    }
    notes.push(format!(
        "rows 1–3: {} clients, {} rounds of {:.1} s per side (each after a short warm-up), sides in turn on fresh streams, so a slow moment of the machine falls on every side alike; cqrs-es measured at `PersistedEventRepository::persist`, its fastest path",
        sizes.append_clients, sizes.append_rounds, sizes.append_secs
    ));
    Ok((rows, notes))
}

impl Workload {
    /// One side's pool and client for one workload, every connection open.
    async fn open(
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

/// One round of one side: (events appended in the measured window, window seconds).
async fn measure(target: &Arc<Workload>, sizes: &Sizes) -> anyhow::Result<(u64, f64)> {
    let clients = sizes.append_clients;
    let warmup = Duration::from_secs_f64((sizes.append_secs * 0.2).min(0.5));
    let start = Instant::now();
    let measured_from = start + warmup;
    let end = measured_from + crate::secs(sizes.append_secs);
    let counted = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (target, counted) = (target.clone(), counted.clone());
        tasks.spawn(async move {
            let mut streams: Vec<(Uuid, StreamName, Option<u64>)> = (0..STREAMS_PER_CLIENT)
                .map(|_| {
                    let id = Uuid::now_v7();
                    (
                        id,
                        StreamName::new(format!("order-{id}")).expect("valid"),
                        None,
                    )
                })
                .collect();
            let mut n = client * 7919;
            let mut cmd = 0usize;
            loop {
                let now = Instant::now();
                if now >= end {
                    return Ok::<(), anyhow::Error>(());
                }
                let slot = cmd % STREAMS_PER_CLIENT;
                cmd += 1;
                let (id, stream, version) = &mut streams[slot];
                append_once(&target, *id, stream, *version, &mut n).await?;
                let next = version.map_or(target.per_command as u64 - 1, |v| {
                    v + target.per_command as u64
                });
                *version = Some(next);
                let done = Instant::now();
                if done >= measured_from && done < end {
                    counted.fetch_add(target.per_command as u64, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let window = end.duration_since(measured_from).as_secs_f64();
    Ok((counted.load(Ordering::Relaxed), window))
}

/// One command: `per_command` events to one stream whose last version is `version`.
async fn append_once(
    t: &Workload,
    id: Uuid,
    stream: &StreamName,
    version: Option<u64>,
    n: &mut usize,
) -> anyhow::Result<()> {
    let payloads: &Payloads = &t.payloads;
    let mut pick = || {
        *n = (*n + 1) % payloads.events.len();
        &payloads.events[*n]
    };
    let first = version.map_or(0, |v| v + 1);
    match t.side {
        Side::Ours => {
            let events: Vec<NewEvent> = (0..t.per_command)
                .map(|_| {
                    let (ty, ver, data) = pick();
                    NewEvent {
                        id: Uuid::now_v7(),
                        event_type: ty.clone(),
                        schema_version: *ver,
                        data: data.clone(),
                        metadata: t.payloads.metadata_typed.clone(),
                    }
                })
                .collect();
            let expected = match version {
                None => ExpectedVersion::NoStream,
                Some(v) => ExpectedVersion::Exact(v),
            };
            t.store
                .as_ref()
                .expect("store")
                .append(stream, expected, events)
                .await?;
        }
        Side::Raw => {
            let rows: Vec<RawRow<'_>> = (0..t.per_command)
                .map(|i| {
                    let (ty, ver, data) = pick();
                    let v = (first + i as u64) as i64;
                    let mut h = Sha256::new();
                    h.update(stream.as_str());
                    h.update(v.to_le_bytes());
                    h.update(ty.as_bytes());
                    h.update(data.to_string().as_bytes());
                    (
                        Uuid::now_v7(),
                        v,
                        ty.as_str(),
                        i32::from(*ver),
                        data,
                        h.finalize().to_vec(),
                    )
                })
                .collect();
            if t.per_command == 1 {
                let (id, v, ty, ver, data, hash) = &rows[0];
                sqlx::query(
                    "insert into bench.raw_events
                        (event_id, stream_name, stream_version, event_type, schema_version, data,
                         metadata, recorded_at, hash)
                     values ($1, $2, $3, $4, $5, $6, $7, now(), $8)",
                )
                .bind(id)
                .bind(stream.as_str())
                .bind(v)
                .bind(ty)
                .bind(ver)
                .bind(data)
                .bind(&t.payloads.metadata)
                .bind(hash)
                .execute(&t.pool)
                .await?;
            } else {
                let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
                let versions: Vec<i64> = rows.iter().map(|r| r.1).collect();
                let types: Vec<&str> = rows.iter().map(|r| r.2).collect();
                let schema: Vec<i32> = rows.iter().map(|r| r.3).collect();
                let data: Vec<&Value> = rows.iter().map(|r| r.4).collect();
                let metadata: Vec<&Value> = rows.iter().map(|_| &t.payloads.metadata).collect();
                let hashes: Vec<Vec<u8>> = rows.iter().map(|r| r.5.clone()).collect();
                sqlx::query(
                    "insert into bench.raw_events
                        (event_id, stream_name, stream_version, event_type, schema_version, data,
                         metadata, recorded_at, hash)
                     select t.id, $2, t.v, t.ty, t.sv, t.d, t.m, now(), t.h
                     from unnest($1::uuid[], $3::bigint[], $4::text[], $5::int[], $6::jsonb[],
                                 $7::jsonb[], $8::bytea[]) as t(id, v, ty, sv, d, m, h)",
                )
                .bind(&ids)
                .bind(stream.as_str())
                .bind(&versions)
                .bind(&types)
                .bind(&schema)
                .bind(&data)
                .bind(&metadata)
                .bind(&hashes)
                .execute(&t.pool)
                .await?;
            }
        }
        Side::Cqrs => {
            let events: Vec<SerializedEvent> = (0..t.per_command)
                .map(|i| {
                    let (ty, ver, data) = pick();
                    SerializedEvent::new(
                        id.to_string(),
                        // cqrs-es numbers events from 1.
                        (first + i as u64 + 1) as usize,
                        BenchOrder::TYPE.to_owned(),
                        ty.clone(),
                        ver.to_string(),
                        data.clone(),
                        t.payloads.metadata.clone(),
                    )
                })
                .collect();
            t.cqrs
                .as_ref()
                .expect("repository")
                .persist::<BenchOrder>(&events, None)
                .await
                .map_err(|e| anyhow::anyhow!("cqrs-es persist: {e}"))?;
        }
    }
    Ok(())
}
