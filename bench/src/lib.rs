//! `purser bench`: the figures users choose an event-sourced backend for, each measured next
//! to a baseline in the same run, on the same database server, so the ratio holds anywhere.
//!
//! | row | ours | baseline |
//! |---|---|---|
//! | 1 | `PgEventStore::append`, one event per command, 8 clients | single-row `INSERT`s into a copy of `es.events` (same columns, indexes, constraints) |
//! | 2 | the same with 100-event appends | 100-row `INSERT … SELECT FROM unnest(…)` |
//! | 3 | rows 1–2, ours | cqrs-es + postgres-es (`PersistedEventRepository::persist`) |
//! | 4 | catalog, orders and analytics projectors rebuilding from a generated log | a hand-written loop issuing the same statements, 500 events per transaction |
//! | 5 | lag from append to read model at 1,000 events/s | — |
//! | 6 | checkout mutation → CONFIRMED in the read model, rate stepped to saturation | — |
//! | 7 | GraphQL catalog search page and order with timeline | the same SQL run directly |
//! | 8 | peak RSS of the `purser serve` child process during 6 and 7 | — |
//!
//! Every database the bench uses is created fresh on the server of `DATABASE_URL` and dropped
//! at the end (also on failure or Ctrl-C). Nothing is asserted: a benchmark reports.

mod append;
mod db;
mod lag;
mod mail;
mod raw_models;
mod rebuild;
mod report;
mod server;
mod stats;
mod synth;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub use report::{Report, Row, Target};

/// What to run and how big.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server to create the bench databases on (any database on it; `postgres` is used
    /// to create and drop them).
    pub database_url: String,
    pub sizes: Sizes,
    /// Also write the rows to this file as JSON.
    pub json: Option<PathBuf>,
    /// Only these rows (1 to 8); empty means all.
    pub only: Vec<u8>,
    /// The `purser` binary that rows 6–8 start as `purser serve`. Without it those rows are
    /// skipped (and say so).
    pub server_exe: Option<PathBuf>,
    /// Print progress to stderr.
    pub verbose: bool,
}

impl Options {
    /// What `purser bench [--full] [--json FILE] [--only ROW…]` runs: this executable is the
    /// server of rows 6–8.
    pub fn from_cli(
        database_url: &str,
        full: bool,
        json: Option<PathBuf>,
        only: Vec<u8>,
    ) -> Options {
        Options {
            database_url: database_url.to_owned(),
            sizes: if full { Sizes::full() } else { Sizes::quick() },
            json,
            only,
            server_exe: std::env::current_exe().ok(),
            verbose: true,
        }
    }
}

/// How big each workload is.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub label: &'static str,
    /// Concurrent clients of rows 1–3.
    pub append_clients: usize,
    /// Measured seconds per side per round in rows 1–3 (after a short warm-up).
    pub append_secs: f64,
    /// Rounds of rows 1–3; the sides take turns within a round.
    pub append_rounds: usize,
    /// Products in the generated catalog of row 4.
    pub log_products: usize,
    /// Events in the generated log of row 4.
    pub log_events: usize,
    /// Row 5: offered events per second and measured seconds.
    pub lag_rate: u32,
    pub lag_secs: f64,
    /// Row 6: offered checkouts per second, step by step, and seconds per step.
    pub checkout_rates: Vec<u32>,
    pub checkout_step_secs: f64,
    /// Products in the server's catalog (rows 6–7).
    pub server_products: usize,
    /// Row 7: concurrent clients and measured seconds per side per query.
    pub query_clients: usize,
    pub query_secs: f64,
}

impl Sizes {
    /// The default: under a minute on 2 cores.
    pub fn quick() -> Sizes {
        Sizes {
            label: "quick",
            append_clients: 8,
            append_secs: 0.5,
            append_rounds: 3,
            log_products: 300,
            log_events: 20_000,
            lag_rate: 1_000,
            lag_secs: 4.0,
            checkout_rates: vec![25, 50, 100, 250, 500, 750],
            checkout_step_secs: 2.0,
            server_products: 200,
            query_clients: 8,
            query_secs: 1.5,
        }
    }

    /// `--full`: the big sizes (a 1M-event log), under five minutes on 2 cores.
    pub fn full() -> Sizes {
        Sizes {
            label: "full",
            append_clients: 8,
            append_secs: 1.0,
            append_rounds: 6,
            log_products: 1_000,
            log_events: 1_000_000,
            lag_rate: 1_000,
            lag_secs: 10.0,
            checkout_rates: vec![25, 50, 100, 200, 300, 400, 500, 600, 800, 1000],
            checkout_step_secs: 4.0,
            server_products: 300,
            query_clients: 8,
            query_secs: 4.0,
        }
    }

    /// Just enough to prove the harness works (tests).
    pub fn tiny() -> Sizes {
        Sizes {
            label: "tiny",
            append_clients: 2,
            append_secs: 0.2,
            append_rounds: 1,
            log_products: 20,
            log_events: 1_500,
            lag_rate: 200,
            lag_secs: 0.5,
            checkout_rates: vec![20],
            checkout_step_secs: 0.5,
            server_products: 10,
            query_clients: 2,
            query_secs: 0.2,
        }
    }
}

/// `purser bench --soak MINUTES`: the steady mixed load of `server/soak.rs` against a
/// `purser serve` child process (this executable) on a fresh database; prints a line per
/// minute and the summary.
pub async fn soak(database_url: &str, minutes: u32) -> anyhow::Result<()> {
    if minutes == 0 {
        bail!("--soak takes a number of minutes, at least 1");
    }
    let exe =
        std::env::current_exe().context("cannot find this executable to run as the server")?;
    let dbs = db::Databases::connect(database_url).await?;
    let outcome = async {
        let db = dbs.create("soak").await?;
        tokio::select! {
            r = server::soak::run(&db, &exe, minutes, true) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    }
    .await;
    dbs.drop_all().await;
    println!("{}", outcome?);
    Ok(())
}

/// Runs the bench, prints the table (and writes the JSON), and returns the rows.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    for r in &opts.only {
        if !(1..=8).contains(r) {
            bail!("--only takes row numbers 1 to 8, not {r}");
        }
    }
    let started = Instant::now();
    let dbs = db::Databases::connect(&opts.database_url).await?;
    let outcome = tokio::select! {
        r = run_rows(&opts, &dbs) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    dbs.drop_all().await;
    let mut report = outcome?;
    report.elapsed = started.elapsed();
    println!("{}", report.table());
    if let Some(path) = &opts.json {
        std::fs::write(path, report.json()?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("rows written to {}", path.display());
    }
    Ok(report)
}

fn wants(opts: &Options, rows: &[u8]) -> bool {
    opts.only.is_empty() || rows.iter().any(|r| opts.only.contains(r))
}

pub(crate) fn progress(opts_verbose: bool, msg: impl AsRef<str>) {
    if opts_verbose {
        eprintln!("[bench] {}", msg.as_ref());
    }
}

async fn run_rows(opts: &Options, dbs: &db::Databases) -> anyhow::Result<Report> {
    let sizes = &opts.sizes;
    let v = opts.verbose;
    let mut report = Report::new(sizes.label, dbs.server_version().await?);

    if wants(opts, &[1, 2, 3]) {
        let db = dbs.create("append").await?;
        let which = append::Which {
            raw: wants(opts, &[1, 2]),
            cqrs: wants(opts, &[3]),
            single: wants(opts, &[1, 3]),
            batch: wants(opts, &[2, 3]),
        };
        let rows = append::run(&db, sizes, which, v).await?;
        report.extend(rows);
        dbs.drop(db).await;
    }

    if wants(opts, &[4]) {
        let db = dbs.create("rebuild").await?;
        report.extend(rebuild::run(&db, sizes, v).await?);
        dbs.drop(db).await;
    }

    if wants(opts, &[5]) {
        let db = dbs.create("lag").await?;
        report.extend(lag::run(&db, sizes, v).await?);
        dbs.drop(db).await;
    }

    if wants(opts, &[6, 7, 8]) {
        match &opts.server_exe {
            Some(exe) => {
                let db = dbs.create("server").await?;
                let which = server::Which {
                    checkout: wants(opts, &[6, 8]),
                    queries: wants(opts, &[7, 8]),
                };
                report.extend(server::run(&db, exe, sizes, which, v).await?);
                dbs.drop(db).await;
            }
            None => report.note("rows 6–8 skipped: no purser binary to run as the server"),
        }
    }
    Ok(report)
}

/// Sleeps until `at` unless it has passed.
pub(crate) async fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        tokio::time::sleep(at - now).await;
    }
}

pub(crate) fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}
