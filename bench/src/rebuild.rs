//! Row 4: projection catch-up. A log of generated domain events is appended once; then
//!
//! * ours: a `Projector` running the catalog, orders and analytics projections (as `purser
//!   serve` runs them: concurrently, up to 500 events per transaction, checkpoint in the same
//!   transaction), timed from start until every checkpoint has reached the head of the log;
//! * raw: three hand-written loops, one per read model, each reading its categories from
//!   `es.events` in pages of 500 and writing the same rows with the same statements (see
//!   `raw_models`), one transaction per page; what a projection writes once per batch
//!   (stock moves, order fact rows, payment facts, inventory movements) the loop writes once
//!   per page.
//!
//! Both start from empty read models; afterwards every table's checksum is compared.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use purser_domain::AnyEvent;
use purser_event_store::{
    EventStore, ExpectedVersion, NewEvent, PgEventStore, Position, StreamName,
};
use purser_projections::analytics::AnalyticsProjection;
use purser_projections::catalog::CatalogProjection;
use purser_projections::orders::OrdersProjection;
use purser_projections::{Checkpoints, Projection, Projector};
use sqlx::{PgPool, Row as _};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::BenchDb;
use crate::raw_models::Model;
use crate::report::{Row, Target};
use crate::synth::{self, OrderGen};
use crate::{Sizes, progress};

/// Events per transaction, both sides (the projector's default `batch_max`).
const BATCH: i64 = 500;
const WRITERS: usize = 8;

pub(crate) fn projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(CatalogProjection),
        Arc::new(OrdersProjection),
        Arc::new(AnalyticsProjection),
    ]
}

pub(crate) async fn run(
    db: &BenchDb,
    sizes: &Sizes,
    verbose: bool,
) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let pool = db.pool(16).await?;
    let store = PgEventStore::new(pool.clone());
    let events = fixture_log(db, sizes, verbose).await?;
    let head = store
        .last_committed()
        .await?
        .context("the log is empty")?
        .position;
    let projections = projections();
    let tables: Vec<&'static str> = projections
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .collect();

    let ours_secs = run_ours(&pool, &store, projections, head).await?;
    progress(
        verbose,
        format!("rebuild: ours {:.0} events/s", events as f64 / ours_secs),
    );
    let ours_sums = checksums(&pool, &tables).await?;

    let raw_secs = run_raw(&pool, &tables).await?;
    progress(
        verbose,
        format!("rebuild: raw {:.0} events/s", events as f64 / raw_secs),
    );
    let raw_sums = checksums(&pool, &tables).await?;
    let differing: Vec<&str> = tables
        .iter()
        .filter(|t| ours_sums.get(**t) != raw_sums.get(**t))
        .copied()
        .collect();
    let rows: i64 = ours_sums.values().map(|(n, _)| n).sum();
    pool.close().await;

    let row = Row::new(
        4,
        format!(
            "projection catch-up, catalog + orders + analytics, {} events",
            crate::report::number(events as f64)
        ),
        events as f64 / ours_secs,
        "events/s",
    )
    .vs(events as f64 / raw_secs)
    .target(Target::RatioAtLeast(0.5));
    let check = if differing.is_empty() {
        format!(
            "row 4: both sides wrote identical read models ({} tables, {rows} rows, checksums equal)",
            tables.len()
        )
    } else {
        format!(
            "row 4: the raw baseline's rows DIFFER from the projections' in {}",
            differing.join(", ")
        )
    };
    Ok((
        vec![row],
        vec![
            format!(
                "row 4: log of {events} generated events ({} products, orders of 1–4 lines with reservations, payments, shipping); both sides 500 events per transaction, three read models concurrently",
                sizes.log_products
            ),
            check,
        ],
    ))
}

/// Writes the generated log; returns how many events it holds.
async fn fixture_log(db: &BenchDb, sizes: &Sizes, verbose: bool) -> anyhow::Result<usize> {
    let started = Instant::now();
    // The log is a fixture: written through the same append path, but committed without
    // waiting for each WAL flush (neither side's clock runs yet).
    let fixture = db.fixture_pool(WRITERS as u32 + 1).await?;
    let events = write_log(
        &PgEventStore::new(fixture.clone()),
        sizes.log_products,
        sizes.log_events,
    )
    .await?;
    fixture.close().await;
    progress(
        verbose,
        format!(
            "rebuild: log of {events} events appended in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(events)
}

/// Ours: a projector runs the projections from empty until every checkpoint reaches `head`;
/// returns the seconds it took.
async fn run_ours(
    pool: &PgPool,
    store: &PgEventStore,
    projections: Vec<Arc<dyn Projection>>,
    head: Position,
) -> anyhow::Result<f64> {
    let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
    let checkpoints = Checkpoints::new(pool.clone());
    let projector = Projector::new(
        Arc::new(store.clone()),
        pool.clone(),
        projections,
        checkpoints.clone(),
    );
    let stop = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn({
        let (projector, stop) = (projector.clone(), stop.clone());
        async move { projector.run(stop).await }
    });
    loop {
        if checkpoints
            .wait_for(&names, head, Duration::from_secs(1))
            .await?
        {
            break;
        }
        if let Some(failed) = checkpoints
            .all()
            .await?
            .into_iter()
            .find(|c| c.last_error.is_some())
        {
            stop.cancel();
            bail!(
                "projection {} failed during the rebuild: {}",
                failed.name,
                failed.last_error.unwrap_or_default()
            );
        }
    }
    let ours_secs = started.elapsed().as_secs_f64();
    stop.cancel();
    running.await?;
    Ok(ours_secs)
}

/// Raw: the hand-written loops, one per read model, from empty tables again; returns the
/// seconds they took.
async fn run_raw(pool: &PgPool, tables: &[&'static str]) -> anyhow::Result<f64> {
    sqlx::query(&format!("truncate table {}", tables.join(", ")))
        .execute(pool)
        .await?;
    let started = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for model in Model::ALL {
        let pool = pool.clone();
        loops.spawn(async move { raw_loop(&pool, model).await });
    }
    while let Some(r) = loops.join_next().await {
        r??;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn checksums(
    pool: &PgPool,
    tables: &[&'static str],
) -> anyhow::Result<HashMap<&'static str, (i64, String)>> {
    let mut out = HashMap::new();
    for t in tables {
        out.insert(*t, purser_projections::table_checksum(pool, t).await?);
    }
    Ok(out)
}

/// One read model, by hand: pages of its categories in log order, one transaction each.
async fn raw_loop(pool: &PgPool, model: Model) -> anyhow::Result<()> {
    let categories: Vec<String> = model.categories().iter().map(|c| c.to_string()).collect();
    let mut after: i64 = 0;
    loop {
        let rows = sqlx::query(
            "select global_position, event_id, category, event_type, schema_version, data
             from es.events
             where global_position > $1 and category = any($2)
             order by global_position
             limit $3",
        )
        .bind(after)
        .bind(&categories)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.get("global_position");
        // The same transaction settings as the projector's batches (asynchronous commit; a
        // catch-up page plans its statements afresh), so that only the runtime differs.
        let mut tx = pool
            .begin_with(purser_projections::batch_begin(rows.len()))
            .await?;
        let mut page = crate::raw_models::Page::default();
        for r in rows {
            let id: Uuid = r.get("event_id");
            let category: String = r.get("category");
            let event_type: String = r.get("event_type");
            let version: i32 = r.get("schema_version");
            let data: serde_json::Value = r.get("data");
            let event = AnyEvent::decode(&category, &event_type, version as u16, data)
                .map_err(|e| anyhow::anyhow!("cannot decode {id}: {e}"))?;
            model
                .apply(&mut tx, &mut page, id, &event_type, &event)
                .await?;
        }
        page.finish(&mut tx).await?;
        tx.commit().await?;
    }
}

/// Appends the catalog, then orders from `WRITERS` concurrent writers until about `target`
/// events are in the log. Returns how many there are.
pub(crate) async fn write_log(
    store: &PgEventStore,
    products: usize,
    target: usize,
) -> anyhow::Result<usize> {
    let catalog = synth::catalog(products);
    let mut written = 0;
    for a in synth::catalog_appends(&catalog) {
        written += a.events.len();
        store.append(&a.stream, a.expected, a.events).await?;
    }
    let count = Arc::new(AtomicUsize::new(written));
    let mut writers = tokio::task::JoinSet::new();
    for shard in 0..WRITERS {
        let (store, catalog, count) = (store.clone(), catalog.clone(), count.clone());
        writers.spawn(async move {
            let mut g = OrderGen::new(catalog, shard as u64 + 1);
            let mut stock: HashMap<String, Vec<NewEvent>> = HashMap::new();
            let mut orders = 0u64;
            while count.load(Ordering::Relaxed) < target {
                let flow = g.next_order();
                let n = flow.events();
                store
                    .append(&flow.order.stream, flow.order.expected, flow.order.events)
                    .await?;
                store
                    .append(
                        &flow.payment.stream,
                        flow.payment.expected,
                        flow.payment.events,
                    )
                    .await?;
                let mut extra = 0;
                for (sku, events) in flow.inventory {
                    stock
                        .entry(sku.inventory_stream())
                        .or_default()
                        .extend(events);
                }
                orders += 1;
                if orders.is_multiple_of(20) {
                    let (sku, e) = g.movement();
                    stock.entry(sku.inventory_stream()).or_default().push(e);
                    extra += 1;
                }
                // Stock events go out in chunks per SKU; each order's reservation and its
                // settlement stay together, so any interleaving of chunks is consistent.
                let full: Vec<String> = stock
                    .iter()
                    .filter(|(_, v)| v.len() >= 100)
                    .map(|(k, _)| k.clone())
                    .collect();
                for s in full {
                    let events = stock.remove(&s).expect("present");
                    append_any(&store, &s, events).await?;
                }
                count.fetch_add(n + extra, Ordering::Relaxed);
            }
            for (s, events) in stock {
                append_any(&store, &s, events).await?;
            }
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(r) = writers.join_next().await {
        r??;
    }
    Ok(count.load(Ordering::Relaxed))
}

async fn append_any(
    store: &PgEventStore,
    stream: &str,
    events: Vec<NewEvent>,
) -> anyhow::Result<()> {
    let stream = StreamName::new(stream.to_owned())?;
    store.append(&stream, ExpectedVersion::Any, events).await?;
    Ok(())
}
