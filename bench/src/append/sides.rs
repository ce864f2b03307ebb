//! One command on each side: ours through `PgEventStore::append`, raw SQL `INSERT`s, and
//! cqrs-es' `persist`.

use cqrs_es::Aggregate;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use purser_event_store::{EventStore, ExpectedVersion, NewEvent, StreamName};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Side;
use super::cqrs::BenchOrder;
use super::workload::{Payloads, Workload};

/// One event row as the raw-SQL baseline inserts it: id, version, type, schema version, data, hash.
type RawRow<'a> = (Uuid, i64, &'a str, i32, &'a Value, Vec<u8>);

/// Takes payloads from the pool in turn, from where the client left off.
struct Picker<'a> {
    payloads: &'a Payloads,
    n: &'a mut usize,
}

impl<'a> Picker<'a> {
    fn next(&mut self) -> &'a (String, u16, Value) {
        *self.n = (*self.n + 1) % self.payloads.events.len();
        &self.payloads.events[*self.n]
    }
}

/// One command: `per_command` events to one stream whose last version is `version`.
pub(super) async fn append_once(
    t: &Workload,
    id: Uuid,
    stream: &StreamName,
    version: Option<u64>,
    n: &mut usize,
) -> anyhow::Result<()> {
    let mut pick = Picker {
        payloads: &t.payloads,
        n,
    };
    let first = version.map_or(0, |v| v + 1);
    match t.side {
        Side::Ours => append_ours(t, stream, version, &mut pick).await,
        Side::Raw => append_raw(t, stream, first, &mut pick).await,
        Side::Cqrs => append_cqrs(t, id, first, &mut pick).await,
    }
}

async fn append_ours(
    t: &Workload,
    stream: &StreamName,
    version: Option<u64>,
    pick: &mut Picker<'_>,
) -> anyhow::Result<()> {
    let events: Vec<NewEvent> = (0..t.per_command)
        .map(|_| {
            let (ty, ver, data) = pick.next();
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
    Ok(())
}

/// Raw SQL: the rows with a SHA-256 the client computes, in one single-row `INSERT` or one
/// `INSERT … SELECT FROM unnest(…)`.
async fn append_raw(
    t: &Workload,
    stream: &StreamName,
    first: u64,
    pick: &mut Picker<'_>,
) -> anyhow::Result<()> {
    let rows: Vec<RawRow<'_>> = (0..t.per_command)
        .map(|i| {
            let (ty, ver, data) = pick.next();
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
        insert_raw_row(t, stream, &rows[0]).await
    } else {
        insert_raw_rows(t, stream, &rows).await
    }
}

async fn insert_raw_row(t: &Workload, stream: &StreamName, row: &RawRow<'_>) -> anyhow::Result<()> {
    let (id, v, ty, ver, data, hash) = row;
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
    Ok(())
}

async fn insert_raw_rows(
    t: &Workload,
    stream: &StreamName,
    rows: &[RawRow<'_>],
) -> anyhow::Result<()> {
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
    Ok(())
}

async fn append_cqrs(
    t: &Workload,
    id: Uuid,
    first: u64,
    pick: &mut Picker<'_>,
) -> anyhow::Result<()> {
    let events: Vec<SerializedEvent> = (0..t.per_command)
        .map(|i| {
            let (ty, ver, data) = pick.next();
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
    Ok(())
}
