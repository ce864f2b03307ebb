//! `purser replay`: rebuild every read model from position zero into a scratch database and
//! compare it, table by table, with the live one.
//!
//! The replay runs the same projection code as the live projectors, reading the log through
//! the event-store port (so it works on either store), and writes into a database of its own:
//! the live read models keep serving while it runs. A table is equal when its row count and
//! its checksum (md5 over the sorted md5 of every row) agree; for a table that differs the
//! report names the first row (in text order) present on one side only.
//!
//! Both sides must describe the same prefix of the log. The replay catches up with everything
//! committed, waits for the live projections to reach the same position, and compares each
//! projection's tables in one snapshot together with its checkpoint. When writers keep
//! appending, a projection may never line up; the report then says so instead of comparing.

use std::fmt;
use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt;
use purser_event_store::Position;
use purser_projections::{Checkpoints, table_checksum};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Executor, PgConnection};

use crate::scratch::{Scratch, projector_over};
use crate::services::{self, Services};

/// Where the replayed read models go.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// An existing, empty database to replay into; by default a scratch database is created
    /// next to the live one and dropped afterwards.
    pub into: Option<PgConnectOptions>,
    /// Keep the scratch database for inspection.
    pub keep: bool,
    /// How long to wait for the live projections to reach the replay's position.
    pub live_wait: Duration,
}

/// One read-model table, live and replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct TableComparison {
    pub projection: String,
    pub table: String,
    pub live_rows: i64,
    pub live_checksum: String,
    pub replayed_rows: i64,
    pub replayed_checksum: String,
    /// For a table that differs: the first row (in text order) that only one side has.
    pub first_difference: Option<String>,
}

impl TableComparison {
    pub fn equal(&self) -> bool {
        self.live_rows == self.replayed_rows && self.live_checksum == self.replayed_checksum
    }
}

/// A projection whose live and replayed checkpoints never lined up.
#[derive(Debug, Clone, PartialEq)]
pub struct NotCompared {
    pub projection: String,
    pub live: Option<Position>,
    pub replayed: Position,
}

#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// The database the read models were replayed into (as shown to operators).
    pub database: String,
    /// Per projection: events applied in the replay, and the position it reached.
    pub projections: Vec<(String, i64, Position)>,
    pub tables: Vec<TableComparison>,
    pub not_compared: Vec<NotCompared>,
}

impl ReplayReport {
    pub fn differing(&self) -> usize {
        self.tables.iter().filter(|t| !t.equal()).count()
    }

    /// Every table was compared and is equal.
    pub fn is_equal(&self) -> bool {
        self.differing() == 0 && self.not_compared.is_empty()
    }

    /// `purser replay`'s exit code: 0 all equal, 1 a table differs, 2 nothing differs but
    /// some projection could not be lined up with the live side.
    pub fn exit_code(&self) -> u8 {
        match (self.differing(), self.not_compared.is_empty()) {
            (0, true) => 0,
            (0, false) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "replayed from position zero into {}", self.database)?;
        for (name, applied, at) in &self.projections {
            writeln!(f, "  {name}: {applied} events applied, up to {at}")?;
        }
        let w = self
            .tables
            .iter()
            .map(|t| t.table.len())
            .max()
            .unwrap_or(0)
            .max("TABLE".len());
        writeln!(
            f,
            "{:<w$} {:>10} {:>10}  {:<32}  {:<32}  RESULT",
            "TABLE", "LIVE ROWS", "REPLAYED", "LIVE CHECKSUM", "REPLAYED CHECKSUM"
        )?;
        for t in &self.tables {
            writeln!(
                f,
                "{:<w$} {:>10} {:>10}  {:<32}  {:<32}  {}",
                t.table,
                t.live_rows,
                t.replayed_rows,
                t.live_checksum,
                t.replayed_checksum,
                if t.equal() { "equal" } else { "DIFFERS" }
            )?;
            if let Some(row) = &t.first_difference {
                writeln!(f, "    first difference: {row}")?;
            }
        }
        for n in &self.not_compared {
            writeln!(
                f,
                "{}: not compared: the live read model is at {}, the replay at {} (writers kept appending, or no projector runs; run again on a quiet system)",
                n.projection,
                n.live
                    .map_or_else(|| "no checkpoint".to_owned(), |p| p.to_string()),
                n.replayed
            )?;
        }
        if self.is_equal() {
            writeln!(
                f,
                "OK: all {} tables equal a replay from position zero",
                self.tables.len()
            )
        } else {
            writeln!(
                f,
                "MISMATCH: {} table(s) differ, {} projection(s) not compared",
                self.differing(),
                self.not_compared.len()
            )
        }
    }
}

/// Replays every read-model projection from position zero into another database and
/// compares each of its tables with the live one.
pub async fn replay(services: &Services, opts: &ReplayOptions) -> anyhow::Result<ReplayReport> {
    let live_opts = services.config.pg_options();
    let (target, scratch) = match &opts.into {
        Some(into) => (into.clone(), None),
        None => {
            let scratch = Scratch::create(&live_opts, &services.pool, "replay").await?;
            (scratch.options(), Some(scratch))
        }
    };
    let result = replay_into(services, &target, opts).await;
    if let Some(scratch) = scratch {
        if opts.keep {
            tracing::info!(database = %scratch.name, "kept the replay database");
        } else if let Err(e) = scratch.drop_now().await {
            tracing::warn!(error = %e, "could not drop the replay database");
        }
    }
    result
}

async fn replay_into(
    services: &Services,
    target: &PgConnectOptions,
    opts: &ReplayOptions,
) -> anyhow::Result<ReplayReport> {
    let (pool, projector) = projector_over(
        services,
        target,
        services::projections(),
        "the replay database",
    )
    .await?;
    if Checkpoints::new(pool.clone())
        .all()
        .await?
        .iter()
        .any(|c| c.events_applied > 0)
    {
        anyhow::bail!("the replay database already holds read models; give an empty one");
    }
    let mut report = ReplayReport {
        database: target.get_database().unwrap_or("?").to_owned(),
        ..Default::default()
    };
    for p in services::projections() {
        let name = p.name();
        // Live writers may move the log between the replay's catch-up and the comparison;
        // a few rounds line both sides up on a log that is not being written to fast.
        let mut round = 0;
        let outcome = loop {
            round += 1;
            let applied = projector
                .catch_up(name)
                .await?
                .context("another process holds the replay database's projection")?;
            let replayed = checkpoint_opt(&pool, name)
                .await?
                .with_context(|| format!("the replay of {name} wrote no checkpoint"))?;
            services
                .checkpoints
                .wait_for(&[name], replayed, opts.live_wait)
                .await?;
            if let Some(tables) =
                compare_projection(&services.pool, &pool, name, p.tables(), replayed).await?
            {
                report
                    .projections
                    .push((name.to_owned(), applied, replayed));
                break Ok(tables);
            }
            let live = checkpoint_opt(&services.pool, name).await?;
            // A live side that is behind (no projector running) will not catch up by waiting.
            if round == 5 || live.is_none_or(|l| l < replayed) {
                break Err(NotCompared {
                    projection: name.to_owned(),
                    live,
                    replayed,
                });
            }
        };
        match outcome {
            Ok(tables) => report.tables.extend(tables),
            Err(n) => report.not_compared.push(n),
        }
    }
    pool.close().await;
    Ok(report)
}

/// A projection's checkpoint in one database (None before it has one).
async fn checkpoint_opt(
    conn: impl sqlx::PgExecutor<'_>,
    name: &str,
) -> anyhow::Result<Option<Position>> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "select commit_position, prepare_position from purser.projection_checkpoints where name = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(c, p)| Position::from_db(c, p)))
}

/// Compares a projection's tables, reading the live side in one snapshot together with its
/// checkpoint. None when the live checkpoint is not at `at`.
async fn compare_projection(
    live: &PgPool,
    replayed: &PgPool,
    name: &str,
    tables: &[&str],
    at: Position,
) -> anyhow::Result<Option<Vec<TableComparison>>> {
    let mut snap = live.begin().await?;
    snap.execute("set transaction isolation level repeatable read, read only")
        .await?;
    if checkpoint_opt(&mut *snap, name).await? != Some(at) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(tables.len());
    for table in tables {
        let (live_rows, live_checksum) = table_checksum(&mut *snap, table).await?;
        let (replayed_rows, replayed_checksum) = table_checksum(replayed, table).await?;
        let mut t = TableComparison {
            projection: name.to_owned(),
            table: (*table).to_owned(),
            live_rows,
            live_checksum,
            replayed_rows,
            replayed_checksum,
            first_difference: None,
        };
        if !t.equal() {
            t.first_difference = first_difference(&mut snap, replayed, table).await?;
        }
        out.push(t);
    }
    snap.commit().await?;
    Ok(Some(out))
}

/// Walks both sides in the same order (each row as text, byte order) and returns the first
/// row only one side has, labelled with the side.
async fn first_difference(
    live: &mut PgConnection,
    replayed: &PgPool,
    table: &str,
) -> anyhow::Result<Option<String>> {
    let sql = format!("select t::text collate \"C\" as row from {table} t order by 1");
    let mut r = replayed.acquire().await?;
    let mut a = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *live);
    let mut b = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *r);
    let (mut x, mut y) = (a.try_next().await?, b.try_next().await?);
    loop {
        match (x, y) {
            (None, None) => return Ok(None),
            (Some(l), None) => return Ok(Some(format!("live only: {l}"))),
            (None, Some(rr)) => return Ok(Some(format!("replay only: {rr}"))),
            (Some(l), Some(rr)) => match l.as_bytes().cmp(rr.as_bytes()) {
                std::cmp::Ordering::Equal => {
                    x = a.try_next().await?;
                    y = b.try_next().await?;
                }
                std::cmp::Ordering::Less => return Ok(Some(format!("live only: {l}"))),
                std::cmp::Ordering::Greater => return Ok(Some(format!("replay only: {rr}"))),
            },
        }
    }
}
