//! Demo history: customers, carts and a few thousand orders spread over past weeks, in every
//! outcome (delivered, shipped, fulfilled, payment failed, out of stock, refunded, cancelled
//! by an admin), so every read model and analytics view has something to show.
//!
//! Every order goes through the real aggregates (the same commands the checkout process
//! manager and an admin would send, with the same deterministic ids), dated in the past. The
//! checkout process manager's state for each order is folded with the same pure function the
//! runner uses, and the runner (and the notification queue) are then marked as caught up, so
//! nobody acts on history twice or emails thousands of demo addresses; later admin actions on
//! a seeded order (a cancel, say) compensate exactly as for a live one. While it writes, the
//! seed holds those projections' claims, so a server started meanwhile cannot act on it.

mod customers;
mod fulfilment;
mod order;
mod plan;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use purser_command_api::licensing::LicenseSigner;
use purser_command_api::{CommandBus, CommandContext, Executed};
use purser_domain::checkout::{self, CheckoutState};
use purser_domain::events::AnyEvent;
use purser_domain::inventory::{Inventory, InventoryCommand};
use purser_domain::license::{LicensePool, LicensePoolCommand};
use purser_domain::product::{LicenseSource, ProductKind};
use purser_domain::{Aggregate, OrderId, Quantity};
use purser_event_store::{EventFilter, Position};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::services::Services;
use plan::{Catalog, catalog, plan};

/// How much history to make.
#[derive(Debug, Clone, Copy)]
pub struct HistoryOptions {
    pub customers: usize,
    pub orders: usize,
    /// How far back the history goes.
    pub days: i64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HistoryReport {
    pub customers: usize,
    pub orders: usize,
    pub abandoned_carts: usize,
    pub skipped: Option<String>,
}

/// Projections that must not act on seeded history.
const QUIET: &[&str] = &["checkout_process", "notification_queue"];

/// Runs one command on aggregate `A`'s instance `id` and keeps its events (for folding the
/// process manager's state).
async fn run<A>(
    bus: &CommandBus,
    id: &A::Id,
    cmd: A::Command,
    out: &mut Vec<AnyEvent>,
) -> anyhow::Result<Executed<A>>
where
    A: Aggregate,
    A::State: Send + Sync + 'static,
    A::Command: Clone,
    A::Event: Into<AnyEvent>,
{
    let done = bus
        .execute::<A>(id, &CommandContext::system("seed"), cmd)
        .await
        .map_err(|e| anyhow!("seeding {}: {e}", A::stream(id)))?;
    out.extend(done.events.iter().cloned().map(Into::into));
    Ok(done)
}

/// Whether any order exists already.
async fn history_exists(services: &Services) -> anyhow::Result<bool> {
    let found = services
        .store
        .read_all(Position::START, 1, &EventFilter::categories(["order"]))
        .await?;
    Ok(!found.is_empty())
}

pub(super) async fn seed_history(
    services: &Services,
    catalog_size: usize,
    opts: HistoryOptions,
) -> anyhow::Result<HistoryReport> {
    if opts.orders == 0 {
        return Ok(HistoryReport {
            skipped: Some("no history asked for".into()),
            ..Default::default()
        });
    }
    if history_exists(services).await? {
        return Ok(HistoryReport {
            skipped: Some("orders exist already".into()),
            ..Default::default()
        });
    }
    let mut claims = Vec::new();
    for name in QUIET {
        match purser_projections::claim(&services.pool, name).await? {
            Some(c) => claims.push((name, c)),
            None => {
                return Err(anyhow!(
                    "a running server holds the {name} projection; stop it before loading demo history (scripts/up.sh seeds first)"
                ));
            }
        }
    }
    let signer = crate::services::load_license_signer(&services.config)?;
    let report = write_history(services, catalog_size, opts, signer.as_ref()).await?;
    let head = services
        .store
        .last_committed()
        .await?
        .map(|h| h.position)
        .unwrap_or(Position::START);
    for (name, mut claim) in claims {
        purser_projections::fast_forward(&mut claim, name, head).await?;
        claim.release(name).await;
    }
    Ok(report)
}

async fn write_history(
    services: &Services,
    catalog_size: usize,
    opts: HistoryOptions,
    signer: Option<&LicenseSigner>,
) -> anyhow::Result<HistoryReport> {
    let bus = &services.bus;
    let now = Utc::now();
    let start = now - Duration::days(opts.days);
    let cat = catalog(catalog_size);
    let mut sink = Vec::new();
    stock_up(bus, &cat, start, &mut sink).await?;
    let registered =
        customers::register_customers(&services.accounts, opts, start, &mut sink).await?;

    let cat = &cat;
    let registered = &registered;
    let results: Vec<anyhow::Result<(OrderId, Vec<AnyEvent>, bool)>> =
        futures::stream::iter(0..opts.orders)
            .map(|i| async move {
                let mut rng = StdRng::seed_from_u64(0x5eed_0000 + i as u64);
                let plan = plan(&mut rng, cat, start, now);
                let customer = i * 31 % opts.customers.max(1);
                let buyer = order::Buyer {
                    number: customer,
                    registered: registered.contains(&customer),
                };
                order::seed_order(bus, signer, i, plan, buyer, now).await
            })
            .buffer_unordered(8)
            .collect()
            .await;

    let mut report = HistoryReport {
        customers: opts.customers,
        ..Default::default()
    };
    let mut seeded = Vec::with_capacity(results.len());
    for r in results {
        let (order_id, events, abandoned) = r?;
        report.orders += 1;
        report.abandoned_carts += usize::from(abandoned);
        seeded.push((order_id, events));
    }
    record_checkout_states(services, seeded).await?;
    Ok(report)
}

/// Stock and license keys on hand since the start of the history.
async fn stock_up(
    bus: &CommandBus,
    cat: &Catalog,
    start: DateTime<Utc>,
    sink: &mut Vec<AnyEvent>,
) -> anyhow::Result<()> {
    for (sku, _, _, stocked) in &cat.physical {
        if *stocked {
            let cmd = InventoryCommand::Receive {
                sku: sku.clone(),
                qty: Quantity::new(800).expect("valid"),
                now: start,
            };
            run::<Inventory>(bus, sku, cmd, sink).await?;
        }
    }
    for (sku, _, _, kind) in &cat.digital {
        if matches!(
            kind,
            ProductKind::Digital {
                license: LicenseSource::Pool,
                ..
            }
        ) {
            let keys = (0..400)
                .map(|n| format!("DEMO-{}-{n:05}", sku.as_str()))
                .collect();
            let cmd = LicensePoolCommand::LoadKeys {
                sku: sku.clone(),
                keys,
                now: start,
            };
            run::<LicensePool>(bus, sku, cmd, sink).await?;
        }
    }
    Ok(())
}

/// The checkout process manager's state for every seeded order, folded by the same pure
/// function the runner uses.
async fn record_checkout_states(
    services: &Services,
    seeded: Vec<(OrderId, Vec<AnyEvent>)>,
) -> anyhow::Result<()> {
    let mut tx = services.pool.begin().await?;
    for (order_id, events) in seeded {
        let state = events
            .iter()
            .filter(|e| checkout::order_of(e) == Some(order_id))
            .fold(CheckoutState::default(), checkout::evolve);
        sqlx::query(
            "insert into purser.process_state (process, key, state, updated_at) values ('checkout', $1, $2, now())
             on conflict (process, key) do update set state = excluded.state",
        )
        .bind(order_id.to_string())
        .bind(serde_json::to_value(&state).context("checkout state serialises")?)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
