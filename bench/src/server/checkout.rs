//! Row 6: checkouts offered open loop at stepped rates, each timed until the read model shows
//! its order CONFIRMED.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::api::{Api, prepare_carts, settle, user_errors};
use super::dbwork::DbWork;
use crate::report::{Row, Target};
use crate::stats::Samples;
use crate::{Sizes, progress};

/// Row 6: steps the offered rate up until the server falls behind; returns the rows, the
/// notes (the steps and where the server spent its time) and orders the steps confirmed.
pub(super) async fn run(
    api: &Api,
    pool: &PgPool,
    physical: &[String],
    sizes: &Sizes,
    verbose: bool,
) -> anyhow::Result<(Vec<Row>, Vec<String>, Vec<Uuid>)> {
    let mut orders = vec![];
    let mut best: Option<Step> = None;
    // The highest offered rate the server kept up with: its latency is what a shop running
    // below saturation sees (the best step's latency includes the queue of an overload).
    let mut sustained: Option<Step> = None;
    let mut steps = vec![];
    for rate in &sizes.checkout_rates {
        let n = ((*rate as f64) * sizes.checkout_step_secs).round().max(1.0) as usize;
        let carts = prepare_carts(api, physical, n).await?;
        settle(pool).await?;
        let step = checkout_step(api, pool, carts, *rate).await?;
        progress(verbose, format!("checkout: {}", step.describe()));
        orders.extend(step.confirmed_ids.iter().take(500));
        let saturated = step.achieved < 0.85 * f64::from(*rate) || step.unfinished > 0;
        if best.as_ref().is_none_or(|b| step.achieved > b.achieved) {
            best = Some(step.clone());
        }
        steps.push(step.describe());
        if saturated {
            break;
        }
        sustained = Some(step);
    }
    let best = best.context("no checkout step ran")?;
    let rows = checkout_rows(&best, sustained.as_ref());
    let mut notes = vec![format!(
        "row 6 steps ({:.0} s each, guest carts of 1–3 physical lines, simulated gateway): {}",
        sizes.checkout_step_secs,
        steps.join("; ")
    )];
    notes.extend(super::metrics::time_notes(api).await?);
    Ok((rows, notes, orders))
}

/// Row 6's figures: the best step's throughput and latency, and the latency at the highest
/// rate sustained.
fn checkout_rows(best: &Step, sustained: Option<&Step>) -> Vec<Row> {
    let mut rows = vec![
        Row::new(
            6,
            format!(
                "checkout mutation → CONFIRMED in read model, best step (offered {}/s)",
                best.offered
            ),
            best.achieved,
            "orders/s",
        )
        .target(Target::AtLeast(500.0)),
    ];
    for p in [50.0, 99.0] {
        rows.push(Row::new(
            6,
            format!(
                "checkout → CONFIRMED latency p{p:.0} at {}/s offered",
                best.offered
            ),
            best.samples.percentile_ms(p),
            "ms",
        ));
    }
    rows.push(Row::new(
        6,
        format!(
            "database commits per confirmed order at {}/s offered",
            best.offered
        ),
        best.commits_per_order,
        "commits",
    ));
    if let Some(statements) = best.statements_per_order {
        rows.push(Row::new(
            6,
            format!(
                "statements per confirmed order at {}/s offered",
                best.offered
            ),
            statements,
            "statements",
        ));
    }
    if let Some(sustained) = sustained {
        for p in [50.0, 99.0] {
            rows.push(Row::new(
                6,
                format!(
                    "checkout → CONFIRMED latency p{p:.0} at {}/s offered, the highest rate sustained",
                    sustained.offered
                ),
                sustained.samples.percentile_ms(p),
                "ms",
            ));
        }
    }
    rows
}

#[derive(Clone)]
pub(super) struct Step {
    offered: u32,
    sent: usize,
    confirmed: usize,
    failed: usize,
    unfinished: usize,
    achieved: f64,
    samples: Samples,
    pub(super) confirmed_ids: Vec<Uuid>,
    /// Commits (and statements, with pg_stat_statements) per confirmed order.
    commits_per_order: f64,
    statements_per_order: Option<f64>,
}

impl Step {
    fn describe(&self) -> String {
        format!(
            "offered {}/s: {} sent, {} confirmed at {:.0}/s, p50 {:.0} ms, p99 {:.0} ms, {:.1} commits{} per order{}{}",
            self.offered,
            self.sent,
            self.confirmed,
            self.achieved,
            self.samples.percentile_ms(50.0),
            self.samples.percentile_ms(99.0),
            self.commits_per_order,
            self.statements_per_order
                .map_or(String::new(), |s| format!(" and {s:.0} statements")),
            if self.failed > 0 {
                format!(", {} failed", self.failed)
            } else {
                String::new()
            },
            if self.unfinished > 0 {
                format!(", {} not confirmed in time", self.unfinished)
            } else {
                String::new()
            }
        )
    }
}

pub(super) const CHECKOUT: &str = "mutation($i: CartCheckoutInput!) { cartCheckout(input: $i) { orderId userErrors { code message } } }";

fn order_uuid(global_id: &str) -> anyhow::Result<Uuid> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(global_id)?;
    let text = String::from_utf8(raw)?;
    let key = text
        .strip_prefix("Order:")
        .with_context(|| format!("not an order id: {text}"))?;
    Ok(Uuid::parse_str(key)?)
}

/// The orders a step has placed and not yet seen settle (with the time each request
/// started), and the checkouts that failed; shared by the senders and the watcher.
#[derive(Clone, Default)]
struct Outstanding {
    pending: Arc<Mutex<HashMap<Uuid, Instant>>>,
    failed: Arc<Mutex<usize>>,
}

impl Outstanding {
    fn fail(&self) -> usize {
        let mut f = self.failed.lock().expect("lock");
        *f += 1;
        *f
    }
}

/// Sends one checkout; records its order as pending (with the time the request started) or
/// counts it as failed.
async fn offer(api: Api, outstanding: Outstanding, cart: String) {
    let t0 = Instant::now();
    let vars = json!({ "i": {
        "cartId": cart,
        "idempotencyKey": Uuid::new_v4().to_string(),
        "email": format!("bench-{}@example.com", Uuid::new_v4().simple()),
        "paymentMethod": "4242 4242 4242 4242",
        "shippingAddress": { "name": "Ann Buyer", "line1": "1 Main St", "city": "Springfield",
                             "postalCode": "12345", "country": "US" },
    }});
    let placed = async {
        let r = api.post(false, CHECKOUT, vars).await?;
        user_errors(&r["cartCheckout"])?;
        order_uuid(
            r["cartCheckout"]["orderId"]
                .as_str()
                .context("no order id")?,
        )
    }
    .await;
    match placed {
        Ok(id) => {
            outstanding.pending.lock().expect("lock").insert(id, t0);
        }
        Err(e) => {
            if outstanding.fail() == 1 {
                eprintln!("[bench] a checkout failed: {e:#}");
            }
        }
    }
}

/// Offers one checkout per cart at `rate` per second; waits for each to be CONFIRMED.
pub(super) async fn checkout_step(
    api: &Api,
    pool: &PgPool,
    carts: Vec<String>,
    rate: u32,
) -> anyhow::Result<Step> {
    let before = DbWork::read(pool).await?;
    let outstanding = Outstanding::default();
    let sent = carts.len();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now();
    // The checkouts are offered from a task of their own, so that the read model is watched
    // from the first request on: an order's latency is from its request to the first look
    // that sees it confirmed.
    let sending = tokio::spawn(offer_all(
        api.clone(),
        outstanding.clone(),
        carts,
        start,
        interval,
    ));
    let watched = watch(pool, &outstanding, &sending, start).await?;
    sending.await??;
    let unfinished = outstanding.pending.lock().expect("lock").len();
    let confirmed = watched.samples.len();
    let window = watched.last_confirmed.duration_since(start).as_secs_f64();
    let failed = *outstanding.failed.lock().expect("lock");
    // Everything the step caused, the process managers' work after the last confirmation
    // included, has happened once the log is settled.
    settle(pool).await?;
    let after = DbWork::read(pool).await?;
    let (commits_per_order, statements_per_order) =
        before.per_order(&after, watched.looks, confirmed);
    Ok(Step {
        commits_per_order,
        statements_per_order,
        offered: rate,
        sent,
        confirmed,
        failed,
        unfinished,
        achieved: if window > 0.0 {
            confirmed as f64 / window
        } else {
            0.0
        },
        samples: watched.samples,
        confirmed_ids: watched.confirmed_ids,
    })
}

/// Sends the k-th cart's checkout at `start + k · interval`, each from a task of its own.
async fn offer_all(
    api: Api,
    outstanding: Outstanding,
    carts: Vec<String>,
    start: Instant,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut senders = tokio::task::JoinSet::new();
    for (k, cart) in carts.into_iter().enumerate() {
        crate::sleep_until(start + interval * k as u32).await;
        senders.spawn(offer(api.clone(), outstanding.clone(), cart));
    }
    while let Some(r) = senders.join_next().await {
        r?;
    }
    Ok(())
}

/// What the watcher saw: the latency of every confirmed order, which ones, and when the
/// last was seen.
struct Watched {
    samples: Samples,
    confirmed_ids: Vec<Uuid>,
    last_confirmed: Instant,
    /// Read-model queries the watcher sent (each one statement and one commit).
    looks: i64,
}

/// Watches the read model until every order placed has an outcome, or 30 s after the last
/// checkout was sent.
async fn watch(
    pool: &PgPool,
    outstanding: &Outstanding,
    sending: &tokio::task::JoinHandle<anyhow::Result<()>>,
    start: Instant,
) -> anyhow::Result<Watched> {
    let mut deadline = None;
    let mut watched = Watched {
        samples: Samples::new(),
        confirmed_ids: vec![],
        last_confirmed: start,
        looks: 0,
    };
    loop {
        let ids: Vec<Uuid> = outstanding
            .pending
            .lock()
            .expect("lock")
            .keys()
            .copied()
            .collect();
        if sending.is_finished() {
            let deadline =
                *deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
            if ids.is_empty() || Instant::now() > deadline {
                break;
            }
        }
        if ids.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        look(pool, outstanding, &ids, &mut watched).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(watched)
}

/// One look at the read model: the pending orders that have moved past payment are
/// confirmed (timed from their request) or failed.
async fn look(
    pool: &PgPool,
    outstanding: &Outstanding,
    ids: &[Uuid],
    watched: &mut Watched,
) -> anyhow::Result<()> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "select order_id, status from sales.orders
         where order_id = any($1) and status not in ('PENDING', 'PAYMENT_PROCESSING', 'PAID')",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    watched.looks += 1;
    let seen = Instant::now();
    let mut p = outstanding.pending.lock().expect("lock");
    for (id, status) in rows {
        let Some(t0) = p.remove(&id) else { continue };
        if matches!(
            status.as_str(),
            "CONFIRMED" | "PROCESSING" | "SHIPPED" | "DELIVERED" | "FULFILLED"
        ) {
            watched.samples.push(seen.duration_since(t0));
            watched.confirmed_ids.push(id);
            watched.last_confirmed = seen;
        } else {
            *outstanding.failed.lock().expect("lock") += 1;
        }
    }
    Ok(())
}
