//! Rows 6–8, against the real server: `purser serve` started as a child process on a fresh
//! database (port 0, its address read from its log), driven over HTTP like any client.
//!
//! A child process rather than `purser::app::start` in this process: row 8 is then the
//! server's own peak RSS (`VmHWM` of its `/proc/<pid>/status`), not the load generator's or
//! the earlier rows' memory, and the server runs exactly as operators run it.
//!
//! * Row 6: guest carts (1–3 lines) are prepared, the system is let settle, then
//!   `cartCheckout` mutations are offered open-loop at a fixed rate; each order's latency runs
//!   from sending the mutation until `sales.orders` shows it CONFIRMED (a watcher polls the
//!   read model every 2 ms). The rate steps up until the server falls behind.
//! * Row 7: a catalog search page (20 products with stock, total count and facets) and an
//!   order with its lines and timeline, each by 8 concurrent clients, over GraphQL and as the
//!   same SQL statements run directly (same order of statements, same concurrency inside a
//!   request).
//! * Row 8: the server's peak RSS, read after 6 and 7.

mod api;
mod checkout;
mod dbwork;
mod metrics;
mod process;
mod queries;
mod raw_queries;
pub(crate) mod soak;

use std::path::Path;

use anyhow::bail;
use uuid::Uuid;

use crate::db::BenchDb;
use crate::report::{Row, Target};
use crate::{Sizes, progress};
use api::{Api, prepare_carts, seed_catalog, settle};
use process::Server;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Which {
    pub(crate) checkout: bool,
    pub(crate) queries: bool,
}

pub(crate) async fn run(
    db: &BenchDb,
    exe: &Path,
    sizes: &Sizes,
    which: Which,
    verbose: bool,
) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let secret = format!("bench-{}", Uuid::new_v4().simple());
    let server = Server::start(exe, &db.url(), &secret).await?;
    progress(
        verbose,
        format!(
            "server: purser serve (pid {}) on {}",
            server.pid, server.addr
        ),
    );
    let outcome = drive(db, &server, &secret, sizes, which, verbose).await;
    let errors = server.errors.lock().expect("lock").clone();
    server.stop().await;
    let (rows, mut notes) = outcome?;
    if !errors.is_empty() {
        notes.push(format!(
            "the server logged {} error(s); first: {}",
            errors.len(),
            errors[0]
        ));
    }
    Ok((rows, notes))
}

async fn drive(
    db: &BenchDb,
    server: &Server,
    secret: &str,
    sizes: &Sizes,
    which: Which,
    verbose: bool,
) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let pool = db.pool(16).await?;
    let api = Api::new(server, secret, &pool).await?;
    let physical = seed_catalog(&api, sizes.server_products).await?;
    settle(&pool).await?;
    progress(
        verbose,
        format!("server: {} products seeded", sizes.server_products),
    );

    let mut rows = vec![];
    let mut notes = vec![];
    let mut orders: Vec<Uuid> = vec![];
    if which.checkout {
        let (r, n, confirmed) = checkout::run(&api, &pool, &physical, sizes, verbose).await?;
        rows.extend(r);
        notes.extend(n);
        orders = confirmed;
    }
    if which.queries {
        if orders.is_empty() {
            // Orders for the order query to read: a few checkouts, closed loop.
            let carts = prepare_carts(&api, &physical, 50).await?;
            orders = checkout::checkout_step(&api, &pool, carts, 50)
                .await?
                .confirmed_ids;
        }
        if orders.is_empty() {
            bail!("no order reached CONFIRMED, so row 7 has no order to read");
        }
        settle(&pool).await?;
        let (r, n) = queries::run(&api, &pool, &orders, sizes, verbose).await?;
        rows.extend(r);
        notes.extend(n);
    }
    let rss = server.peak_rss_mb()?;
    rows.push(
        Row::new(
            8,
            "peak RSS of the `purser serve` child process during 6 and 7",
            rss,
            "MB",
        )
        .target(Target::Below(150.0)),
    );
    pool.close().await;
    Ok((rows, notes))
}
