//! Row 5: projection lag at a fixed offered load.
//!
//! The catalog, orders and analytics projectors run in this process, as in `purser serve`
//! (so appends wake them in-process). Stock movements (deliveries and recounts, one event per
//! append) are offered open-loop at a fixed rate, whatever the latency. For each, the clock
//! starts when `append` has returned (the transaction has committed) and stops when the
//! catalog's checkpoint, which commits in the same transaction as the catalog rows, is seen
//! at or past the event's position by a reader on another connection: then the stock row is
//! visible. One watcher reads the checkpoint on every projector commit (and every
//! millisecond besides), so measuring adds one tiny query per commit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use purser_event_store::{EventStore, ExpectedVersion, PgEventStore, Position, StreamName};
use purser_projections::{Checkpoints, Projector};
use tokio_util::sync::CancellationToken;

use crate::db::BenchDb;
use crate::report::{Row, Target};
use crate::stats::Samples;
use crate::synth::{self, OrderGen};
use crate::{Sizes, progress};

/// Appended events not yet seen visible: (position, time committed, after the warm-up).
type Pending = Arc<Mutex<Vec<(Position, Instant, bool)>>>;

pub(crate) async fn run(
    db: &BenchDb,
    sizes: &Sizes,
    verbose: bool,
) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let pool = db.pool(16).await?;
    let store = PgEventStore::new(pool.clone());
    let catalog = synth::catalog(200);
    for a in synth::catalog_appends(&catalog) {
        store.append(&a.stream, a.expected, a.events).await?;
    }
    let checkpoints = Checkpoints::new(pool.clone());
    let projector = Projector::new(
        Arc::new(store.clone()),
        pool.clone(),
        crate::rebuild::projections(),
        checkpoints.clone(),
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (projector, stop) = (projector.clone(), stop.clone());
        async move { projector.run(stop).await }
    });
    let head = store.last_committed().await?.context("empty log")?.position;
    let names = ["catalog", "orders", "analytics"];
    if !checkpoints
        .wait_for(&names, head, Duration::from_secs(60))
        .await?
    {
        anyhow::bail!("the projections did not catch up with the catalog");
    }

    let rate = sizes.lag_rate.max(1);
    let warmup = Duration::from_millis(500);
    let pending: Pending = Arc::new(Mutex::new(vec![]));
    let samples = Arc::new(Mutex::new(Samples::new()));
    let done = CancellationToken::new();
    let watcher = tokio::spawn(watch(
        checkpoints.clone(),
        pending.clone(),
        samples.clone(),
        done.clone(),
    ));
    let offer = Offer {
        rate,
        warmup,
        total: warmup + crate::secs(sizes.lag_secs),
    };
    let (sent, offered_secs) = offer.run(&store, catalog, &pending).await?;
    done.cancel();
    match tokio::time::timeout(Duration::from_secs(60), watcher).await {
        Ok(r) => r??,
        Err(_) => anyhow::bail!("events did not become visible within a minute"),
    }
    stop.cancel();
    running.await?;
    pool.close().await;

    let s = samples.lock().expect("lock").clone();
    progress(
        verbose,
        format!(
            "lag: {} events measured, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            s.len(),
            s.percentile_ms(50.0),
            s.percentile_ms(99.0),
            s.max_ms()
        ),
    );
    let label = format!("projection lag at {rate} events/s");
    let rows = vec![
        Row::new(5, format!("{label}, p50"), s.percentile_ms(50.0), "ms"),
        Row::new(5, format!("{label}, p99"), s.percentile_ms(99.0), "ms")
            .target(Target::Below(50.0)),
        Row::new(5, format!("{label}, max"), s.max_ms(), "ms"),
    ];
    let note = format!(
        "row 5: {sent} stock movements offered at {rate}/s for {offered_secs:.1} s ({} measured after a {} ms warm-up), projectors in-process, visibility = catalog checkpoint (same transaction as the stock row) read on another connection",
        s.len(),
        warmup.as_millis()
    );
    Ok((rows, vec![note]))
}

/// Reads the catalog's checkpoint on every projector commit (and every millisecond besides);
/// an event is visible once the checkpoint is at or past it. Ends when `done` is cancelled
/// and every appended event has been seen.
async fn watch(
    checkpoints: Checkpoints,
    pending: Pending,
    samples: Arc<Mutex<Samples>>,
    done: CancellationToken,
) -> anyhow::Result<()> {
    let mut ticks = checkpoints.subscribe();
    loop {
        ticks.borrow_and_update();
        let at = checkpoints.positions(&["catalog"]).await?;
        let seen = Instant::now();
        let reached = at.get("catalog").copied().unwrap_or_default();
        {
            let mut p = pending.lock().expect("lock");
            let mut s = samples.lock().expect("lock");
            p.retain(|(pos, t, measured)| {
                if *pos <= reached {
                    if *measured {
                        s.push(seen.duration_since(*t));
                    }
                    false
                } else {
                    true
                }
            });
            if done.is_cancelled() && p.is_empty() {
                return Ok(());
            }
        }
        tokio::select! {
            _ = ticks.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
}

/// The offered load: one stock movement every 1/`rate` s for `total`, the first `warmup`
/// of it not measured.
struct Offer {
    rate: u32,
    warmup: Duration,
    total: Duration,
}

impl Offer {
    /// Offers the load, each append in a task of its own; returns how many were sent and
    /// over how many seconds, once every append has returned.
    async fn run(
        &self,
        store: &PgEventStore,
        catalog: Arc<Vec<synth::ProductSpec>>,
        pending: &Pending,
    ) -> anyhow::Result<(u64, f64)> {
        let mut g = OrderGen::new(catalog, 99);
        let interval = Duration::from_secs_f64(1.0 / f64::from(self.rate));
        let start = Instant::now();
        let measured_from = start + self.warmup;
        let mut appends = tokio::task::JoinSet::new();
        let mut sent = 0u64;
        loop {
            let due = start + interval * sent as u32;
            if due >= start + self.total {
                break;
            }
            crate::sleep_until(due).await;
            let (sku, event) = g.movement();
            let (store, pending) = (store.clone(), pending.clone());
            appends.spawn(async move {
                let stream = StreamName::new(sku.inventory_stream())?;
                let out = store
                    .append(&stream, ExpectedVersion::Any, vec![event])
                    .await?;
                let committed = Instant::now();
                pending.lock().expect("lock").push((
                    out.last_position,
                    committed,
                    committed >= measured_from,
                ));
                Ok::<(), anyhow::Error>(())
            });
            sent += 1;
            // Reap finished appends so the set stays small.
            while let Some(r) = futures::FutureExt::now_or_never(appends.join_next()).flatten() {
                r??;
            }
        }
        let offered_secs = start.elapsed().as_secs_f64();
        while let Some(r) = appends.join_next().await {
            r??;
        }
        Ok((sent, offered_secs))
    }
}
