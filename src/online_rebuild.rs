//! Zero-downtime rebuild of one projection (`purser projector --rebuild NAME --online`).
//!
//! A changed projection is rebuilt from position zero into a scratch database while the live
//! tables keep serving queries and the live projector keeps them current. The new rows are
//! then copied into staging tables next to the live ones, and one transaction switches:
//!
//! 1. it locks the projection's checkpoint row, so the live projector's next batch waits;
//! 2. replaces every row of the projection's tables with the staged rows (DELETE and INSERT,
//!    so readers keep their MVCC snapshot and never block or see an empty table);
//! 3. applies, with the new code, the events the live side had applied since the scratch
//!    copy was taken, so the switched model is exactly as fresh as the one it replaces;
//! 4. moves the checkpoint there and bumps its generation, so the live projector's pending
//!    batch fails its compare-and-set, is rolled back, and resumes from the new checkpoint.
//!
//! Until the commit every query sees the old version; after it, the new one. Nothing is
//! skipped or applied twice: the checkpoint and the rows move in the same transaction.

use std::sync::Arc;

use anyhow::Context;
use futures::TryStreamExt;
use purser_event_store::{EventStore, Position, RecordedEvent};
use purser_projections::{CheckpointRow, Checkpoints, Projection};
use sqlx::postgres::PgPool;
use sqlx::{Executor, PgConnection, Row};

use crate::scratch::{Scratch, projector_over};
use crate::services::Services;

/// The schema that holds staged rows during a switch.
const STAGING: &str = "purser_rebuild";

/// What an online rebuild did.
#[derive(Debug, Clone)]
pub struct OnlineRebuild {
    /// Events the new version applied while it was built aside.
    pub events_aside: i64,
    /// Events applied inside the switch to catch up with the live side.
    pub events_at_switch: i64,
    /// Where the projection's checkpoint stands after the switch.
    pub position: Position,
    /// Rows per table after the switch.
    pub rows: Vec<(String, i64)>,
}

/// Rebuilds `projection` (a new version of a live projection of the same name) without
/// downtime; see the module documentation.
pub async fn rebuild_online(
    services: &Services,
    projection: Arc<dyn Projection>,
) -> anyhow::Result<OnlineRebuild> {
    let scratch = Scratch::create(&services.config.pg_options(), &services.pool, "rebuild").await?;
    let result = build_and_switch(services, projection.clone(), &scratch).await;
    for table in projection.tables() {
        let _ = sqlx::query(&format!("drop table if exists {}", staged(table)))
            .execute(&services.pool)
            .await;
    }
    if let Err(e) = scratch.drop_now().await {
        tracing::warn!(error = %e, "could not drop the rebuild's scratch database");
    }
    result
}

async fn build_and_switch(
    services: &Services,
    projection: Arc<dyn Projection>,
    scratch: &Scratch,
) -> anyhow::Result<OnlineRebuild> {
    let name = projection.name();
    let (aside, projector) = projector_over(
        services,
        &scratch.options(),
        vec![projection.clone()],
        "the rebuild's scratch database",
    )
    .await?;
    let events_aside = projector
        .catch_up(name)
        .await?
        .context("the scratch projection is held by another process")?;
    let built = Checkpoints::new(aside.clone())
        .all()
        .await?
        .into_iter()
        .find(|c| c.name == name)
        .with_context(|| format!("the rebuild of {name} wrote no checkpoint"))?;
    let columns = stage(&aside, &services.pool, projection.tables()).await?;
    aside.close().await;

    // The switch. A deadlock with the live projector's batch is possible (it holds row locks
    // and waits for the checkpoint row we hold); Postgres aborts one side, and both sides
    // retry safely because each transaction is all or nothing.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match switch(services, &projection, &columns, &built).await {
            Ok((events_at_switch, position, rows)) => {
                services.checkpoints.bump();
                return Ok(OnlineRebuild {
                    events_aside,
                    events_at_switch,
                    position,
                    rows,
                });
            }
            Err(e) if attempt < 5 && is_retryable(&e) => {
                tracing::info!(projection = name, error = %e, "switch lost a lock race; retrying");
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_retryable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<sqlx::Error>()
            .and_then(|s| s.as_database_error())
            .and_then(|d| d.code())
            .is_some_and(|code| code == "40P01" || code == "40001")
    })
}

/// `catalog.products` → `purser_rebuild.catalog__products`.
fn staged(table: &str) -> String {
    format!("{STAGING}.{}", table.replace('.', "__"))
}

/// The columns a row can be written with (generated columns are computed, not copied).
async fn writable_columns(pool: &PgPool, table: &str) -> anyhow::Result<String> {
    let (schema, name) = table
        .split_once('.')
        .with_context(|| format!("{table} is not schema-qualified"))?;
    let cols: Vec<String> = sqlx::query_scalar(
        "select quote_ident(column_name) from information_schema.columns
         where table_schema = $1 and table_name = $2 and is_generated = 'NEVER'
         order by ordinal_position",
    )
    .bind(schema)
    .bind(name)
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(!cols.is_empty(), "{table} has no columns");
    Ok(cols.join(", "))
}

/// Copies the new version's rows into staging tables of the live database (binary COPY,
/// streamed: memory stays the size of a buffer). Returns each table's writable columns, in
/// the order of `tables`, for the switch.
async fn stage(aside: &PgPool, live: &PgPool, tables: &[&str]) -> anyhow::Result<Vec<String>> {
    live.execute(format!("create schema if not exists {STAGING}").as_str())
        .await?;
    let mut columns = Vec::with_capacity(tables.len());
    for table in tables {
        let cols = writable_columns(live, table).await?;
        let target = staged(table);
        live.execute(format!("drop table if exists {target}").as_str())
            .await?;
        live.execute(
            format!("create unlogged table {target} as select {cols} from {table} with no data")
                .as_str(),
        )
        .await?;
        let mut from = aside.acquire().await?;
        let mut out = from
            .copy_out_raw(&format!(
                "copy (select {cols} from {table}) to stdout with (format binary)"
            ))
            .await?;
        let mut into = live.acquire().await?;
        let mut copy = into
            .copy_in_raw(&format!(
                "copy {target} ({cols}) from stdin with (format binary)"
            ))
            .await?;
        while let Some(chunk) = out.try_next().await? {
            copy.send(chunk).await?;
        }
        copy.finish().await?;
        columns.push(cols);
    }
    Ok(columns)
}

/// The switching transaction. Returns the events applied inside it, the new checkpoint and
/// the rows per table.
async fn switch(
    services: &Services,
    projection: &Arc<dyn Projection>,
    columns: &[String],
    built: &CheckpointRow,
) -> anyhow::Result<(i64, Position, Vec<(String, i64)>)> {
    let name = projection.name();
    let tables = projection.tables();
    let mut tx = services.pool.begin().await?;
    sqlx::query(
        "insert into purser.projection_checkpoints (name) values ($1) on conflict do nothing",
    )
    .bind(name)
    .execute(&mut *tx)
    .await?;
    let live_at = sqlx::query(
        "select commit_position, prepare_position from purser.projection_checkpoints
         where name = $1 for update",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await
    .map(|r| Position::from_db(r.get(0), r.get(1)))?;

    // Children first when deleting, parents first when inserting (foreign keys).
    for table in tables.iter().rev() {
        tx.execute(format!("delete from {table}").as_str()).await?;
    }
    for (table, c) in tables.iter().zip(columns) {
        tx.execute(
            format!(
                "insert into {table} ({c}) overriding system value select {c} from {}",
                staged(table)
            )
            .as_str(),
        )
        .await?;
    }

    // Catch up, with the new code, with what the live side had applied beyond the copy.
    let (to, events_at_switch, last) = apply_between(
        &*services.store,
        projection,
        &mut tx,
        built.position,
        live_at,
    )
    .await?;
    let last_event_at = last.or(built.last_event_at);
    sqlx::query(
        "update purser.projection_checkpoints
         set commit_position = $2, prepare_position = $3, generation = generation + 1,
             events_applied = $4, last_event_at = $5, last_error = null, last_error_at = null,
             updated_at = now()
         where name = $1",
    )
    .bind(name)
    .bind(to.to_db().0)
    .bind(to.to_db().1)
    .bind(built.events_applied + events_at_switch)
    .bind(last_event_at)
    .execute(&mut *tx)
    .await?;
    let mut rows = Vec::with_capacity(tables.len());
    for table in tables {
        let n: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&mut *tx)
            .await?;
        rows.push(((*table).to_owned(), n));
    }
    tx.commit().await?;
    tracing::info!(projection = name, position = %to, "switched to the rebuilt projection");
    Ok((events_at_switch, to, rows))
}

/// Applies the projection's events after `from` up to and including `until` inside `tx`.
/// Returns the position reached (at least `from`), how many events were applied and the
/// recording time of the last.
async fn apply_between(
    store: &dyn EventStore,
    projection: &Arc<dyn Projection>,
    tx: &mut PgConnection,
    from: Position,
    until: Position,
) -> anyhow::Result<(Position, i64, Option<chrono::DateTime<chrono::Utc>>)> {
    let filter = projection.filter();
    let mut after = from;
    let mut applied = 0;
    let mut last = None;
    while after < until {
        let page = store.read_all(after, 500, &filter).await?;
        let Some(end) = page.last().map(|e| e.position) else {
            break;
        };
        let events: Vec<&RecordedEvent> = page
            .iter()
            .take_while(|e| e.position <= until)
            .filter(|e| filter.matches(&e.stream, &e.event_type))
            .collect();
        if let Some(e) = events.last() {
            projection.apply_batch(tx, &events).await?;
            applied += events.len() as i64;
            last = Some(e.recorded_at);
        }
        after = end;
    }
    Ok((from.max(until), applied, last))
}
