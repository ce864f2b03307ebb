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

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use purser_api_core::auth::Tokens;
use purser_domain::CustomerId;
use purser_domain::customer::Role;
use purser_event_store::{EventStore, PgEventStore, Position};
use rand::Rng;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

use crate::db::BenchDb;
use crate::report::{Row, Target};
use crate::stats::Samples;
use crate::{Sizes, progress};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Which {
    pub(crate) checkout: bool,
    pub(crate) queries: bool,
}

/// A fixed license signing key, so the server writes no key file.
const SIGNING_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct Server {
    child: tokio::process::Child,
    addr: SocketAddr,
    pid: u32,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(exe: &Path, database_url: &str, jwt_secret: &str) -> anyhow::Result<Server> {
        let mail = crate::mail::start_sink().await?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("PURSER_HTTP_ADDR", "127.0.0.1:0")
            .env("PURSER_JWT_SECRET", jwt_secret)
            .env("PURSER_LICENSE_SIGNING_KEY", SIGNING_KEY)
            .env("PURSER_SMTP_HOST", mail.ip().to_string())
            .env("PURSER_SMTP_PORT", mail.port().to_string())
            .env("PURSER_LOG", "warn,purser::app=info")
            .env("PURSER_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} serve", exe.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = vec![];
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let fields = if v.get("fields").is_some() {
                        &v["fields"]
                    } else {
                        &v
                    };
                    if fields["message"] == "purser is serving"
                        && let Some(a) = fields["addr"].as_str()
                    {
                        return Ok(a.parse::<SocketAddr>()?);
                    }
                }
                seen.push(line);
            }
            Err::<SocketAddr, anyhow::Error>(anyhow!(
                "the server exited before serving:\n{}",
                seen.join("\n")
            ))
        })
        .await
        .map_err(|_| anyhow!("the server did not start serving within a minute"))??;
        // Keep reading its log (so it never blocks on a full pipe); keep its errors.
        let errors = Arc::new(Mutex::new(vec![]));
        tokio::spawn({
            let errors = errors.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("\"ERROR\"") {
                        let mut e = errors.lock().expect("lock");
                        if e.len() < 20 {
                            e.push(line);
                        }
                    }
                }
            }
        });
        Ok(Server {
            child,
            addr,
            pid,
            errors,
        })
    }

    /// Peak resident set size so far, in MB (10^6 bytes).
    fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("cannot read the server's /proc status")?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .context("no VmHWM in the server's /proc status")?;
        Ok(kb * 1024.0 / 1e6)
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    url: String,
    admin: String,
}

impl Api {
    /// Posts a GraphQL request; GraphQL errors are errors.
    async fn post(&self, admin: bool, query: &str, variables: Value) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }));
        if admin {
            req = req.bearer_auth(&self.admin);
        }
        let response = req.send().await?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("HTTP {status} without a JSON body"))?;
        if let Some(errors) = body.get("errors") {
            bail!("GraphQL errors: {errors}");
        }
        Ok(body["data"].clone())
    }
}

fn user_errors(v: &Value) -> anyhow::Result<()> {
    match v["userErrors"].as_array() {
        Some(e) if !e.is_empty() => bail!("user errors: {v}"),
        _ => Ok(()),
    }
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
    let tokens = Tokens::new(secret.as_bytes(), Duration::from_secs(3600));
    let api = Api {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()?,
        url: format!("http://{}/graphql", server.addr),
        admin: tokens.issue(
            CustomerId::new(),
            "bench-admin@example.com",
            &BTreeSet::from([Role::Admin]),
        ),
    };
    let pool = db.pool(16).await?;
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
        let mut best: Option<Step> = None;
        // The highest offered rate the server kept up with: its latency is what a shop running
        // below saturation sees (the best step's latency includes the queue of an overload).
        let mut sustained: Option<Step> = None;
        let mut steps = vec![];
        for rate in &sizes.checkout_rates {
            let n = ((*rate as f64) * sizes.checkout_step_secs).round().max(1.0) as usize;
            let carts = prepare_carts(&api, &physical, n).await?;
            settle(&pool).await?;
            let step = checkout_step(&api, &pool, carts, *rate).await?;
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
        rows.push(
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
        );
        rows.push(Row::new(
            6,
            format!(
                "checkout → CONFIRMED latency p50 at {}/s offered",
                best.offered
            ),
            best.samples.percentile_ms(50.0),
            "ms",
        ));
        rows.push(Row::new(
            6,
            format!(
                "checkout → CONFIRMED latency p99 at {}/s offered",
                best.offered
            ),
            best.samples.percentile_ms(99.0),
            "ms",
        ));
        if let Some(sustained) = &sustained {
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
        notes.push(format!(
            "row 6 steps ({:.0} s each, guest carts of 1–3 physical lines, simulated gateway): {}",
            sizes.checkout_step_secs,
            steps.join("; ")
        ));
        // Where the time went, from the server's own histograms: the process-manager steps
        // and commands that took the most time in total.
        let metrics = api
            .http
            .get(format!("http://{}/metrics", server.addr))
            .send()
            .await?
            .text()
            .await?;
        notes.push(format!(
            "row 6 time by process-manager action (total s / count = mean ms): {}",
            time_by(&metrics, "purser_pm_action_duration_seconds", "action", 8)
        ));
        notes.push(format!(
            "row 6 time by command: {}",
            time_by(&metrics, "purser_command_duration_seconds", "command", 8)
        ));
        notes.push(format!(
            "row 6 time in event-store appends by aggregate: {}",
            time_by(&metrics, "purser_append_duration_seconds", "aggregate", 8)
        ));
    }
    if which.queries {
        if orders.is_empty() {
            // Orders for the order query to read: a few checkouts, closed loop.
            let carts = prepare_carts(&api, &physical, 50).await?;
            let step = checkout_step(&api, &pool, carts, 50).await?;
            orders = step.confirmed_ids;
        }
        if orders.is_empty() {
            bail!("no order reached CONFIRMED, so row 7 has no order to read");
        }
        settle(&pool).await?;
        let (r, n) = queries(&api, &pool, &orders, sizes, verbose).await?;
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

/// Creates the catalog through the admin mutations; returns the physical SKUs.
async fn seed_catalog(api: &Api, n: usize) -> anyhow::Result<Vec<String>> {
    let results: Vec<anyhow::Result<Option<String>>> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let p = crate::synth::product(i);
                let mut input = json!({
                    "sku": p.sku.as_str(), "name": p.name, "description": p.description,
                    "brand": p.brand, "category": p.category,
                    "price": { "amount": p.price.minor, "currency": "USD" },
                });
                if p.digital.is_some() {
                    input["digital"] = json!({ "licenseSource": "SIGNED", "seats": 1, "validityDays": 365 });
                }
                let r = api
                    .post(
                        true,
                        "mutation($i: ProductCreateInput!) { productCreate(input: $i) { userErrors { code message } } }",
                        json!({ "i": input }),
                    )
                    .await?;
                user_errors(&r["productCreate"])?;
                if p.digital.is_some() {
                    return Ok(None);
                }
                let r = api
                    .post(
                        true,
                        "mutation($s: String!, $q: Int64!) { inventoryReceive(input: {sku: $s, quantity: $q}) { userErrors { code message } } }",
                        json!({ "s": p.sku.as_str(), "q": crate::synth::OPENING_STOCK }),
                    )
                    .await?;
                user_errors(&r["inventoryReceive"])?;
                Ok(Some(p.sku.as_str().to_owned()))
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut skus = vec![];
    for r in results {
        if let Some(s) = r? {
            skus.push(s);
        }
    }
    Ok(skus)
}

/// Guest carts with 1–3 lines each, made through the cart mutations.
async fn prepare_carts(api: &Api, skus: &[String], n: usize) -> anyhow::Result<Vec<String>> {
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(0..n)
        .map(|_| {
            let api = api.clone();
            let lines: Vec<Value> = {
                let mut rng = rand::rng();
                let k = rng.random_range(1..=3usize);
                let mut picked: Vec<&String> = vec![];
                while picked.len() < k.min(skus.len()) {
                    let s = &skus[rng.random_range(0..skus.len())];
                    if !picked.contains(&s) {
                        picked.push(s);
                    }
                }
                picked
                    .into_iter()
                    .map(|s| json!({ "sku": s, "quantity": rng.random_range(1..=2) }))
                    .collect()
            };
            async move {
                let r = api
                    .post(false, "mutation { cartCreate { cartId userErrors { code message } } }", json!({}))
                    .await?;
                user_errors(&r["cartCreate"])?;
                let id = r["cartCreate"]["cartId"]
                    .as_str()
                    .context("no cart id")?
                    .to_owned();
                let r = api
                    .post(
                        false,
                        "mutation($c: ID!, $l: [CartLineInput!]!) { cartLinesAdd(cartId: $c, lines: $l) { userErrors { code message } } }",
                        json!({ "c": id, "l": lines }),
                    )
                    .await?;
                user_errors(&r["cartLinesAdd"])?;
                Ok(id)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Waits until every projection of the server has caught up with the log as it is now.
async fn settle(pool: &PgPool) -> anyhow::Result<()> {
    let store = PgEventStore::new(pool.clone());
    let Some(head) = store.last_committed().await? else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "select name, commit_position, prepare_position from purser.projection_checkpoints",
        )
        .fetch_all(pool)
        .await?;
        if !rows.is_empty()
            && rows
                .iter()
                .all(|(_, c, p)| Position::from_db(*c, *p) >= head.position)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server's projections did not catch up within two minutes: {rows:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Clone)]
struct Step {
    offered: u32,
    sent: usize,
    confirmed: usize,
    failed: usize,
    unfinished: usize,
    achieved: f64,
    samples: Samples,
    confirmed_ids: Vec<Uuid>,
}

impl Step {
    fn describe(&self) -> String {
        format!(
            "offered {}/s: {} sent, {} confirmed at {:.0}/s, p50 {:.0} ms, p99 {:.0} ms{}{}",
            self.offered,
            self.sent,
            self.confirmed,
            self.achieved,
            self.samples.percentile_ms(50.0),
            self.samples.percentile_ms(99.0),
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

const CHECKOUT: &str = "mutation($i: CartCheckoutInput!) { cartCheckout(input: $i) { orderId userErrors { code message } } }";

fn order_uuid(global_id: &str) -> anyhow::Result<Uuid> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(global_id)?;
    let text = String::from_utf8(raw)?;
    let key = text
        .strip_prefix("Order:")
        .with_context(|| format!("not an order id: {text}"))?;
    Ok(Uuid::parse_str(key)?)
}

/// Sends one checkout; records its order as pending (with the time the request started) or
/// counts it as failed.
async fn offer(
    api: Api,
    pending: Arc<Mutex<HashMap<Uuid, Instant>>>,
    failed: Arc<Mutex<usize>>,
    cart: String,
) {
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
            pending.lock().expect("lock").insert(id, t0);
        }
        Err(e) => {
            let mut f = failed.lock().expect("lock");
            if *f == 0 {
                eprintln!("[bench] a checkout failed: {e:#}");
            }
            *f += 1;
        }
    }
}

/// Offers one checkout per cart at `rate` per second; waits for each to be CONFIRMED.
async fn checkout_step(
    api: &Api,
    pool: &PgPool,
    carts: Vec<String>,
    rate: u32,
) -> anyhow::Result<Step> {
    let pending: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let failed = Arc::new(Mutex::new(0usize));
    let sent = carts.len();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now();
    // The checkouts are offered from a task of their own, so that the read model is watched
    // from the first request on: an order's latency is from its request to the first look
    // that sees it confirmed.
    let offering = {
        let (api, pending, failed) = (api.clone(), pending.clone(), failed.clone());
        async move {
            let mut senders = tokio::task::JoinSet::new();
            for (k, cart) in carts.into_iter().enumerate() {
                crate::sleep_until(start + interval * k as u32).await;
                let (api, pending, failed) = (api.clone(), pending.clone(), failed.clone());
                senders.spawn(offer(api, pending, failed, cart));
            }
            while let Some(r) = senders.join_next().await {
                r?;
            }
            anyhow::Ok(())
        }
    };
    let sending = tokio::spawn(offering);
    // Watch until every order has an outcome, or time runs out.
    let mut deadline = None;
    let mut samples = Samples::new();
    let mut confirmed_ids = vec![];
    let mut last_confirmed = start;
    loop {
        let ids: Vec<Uuid> = pending.lock().expect("lock").keys().copied().collect();
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
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "select order_id, status from sales.orders
             where order_id = any($1) and status not in ('PENDING', 'PAYMENT_PROCESSING', 'PAID')",
        )
        .bind(&ids)
        .fetch_all(pool)
        .await?;
        let seen = Instant::now();
        {
            let mut p = pending.lock().expect("lock");
            for (id, status) in rows {
                let Some(t0) = p.remove(&id) else { continue };
                if matches!(
                    status.as_str(),
                    "CONFIRMED" | "PROCESSING" | "SHIPPED" | "DELIVERED" | "FULFILLED"
                ) {
                    samples.push(seen.duration_since(t0));
                    confirmed_ids.push(id);
                    last_confirmed = seen;
                } else {
                    *failed.lock().expect("lock") += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sending.await??;
    let unfinished = pending.lock().expect("lock").len();
    let confirmed = samples.len();
    let window = last_confirmed.duration_since(start).as_secs_f64();
    let failed = *failed.lock().expect("lock");
    Ok(Step {
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
        samples,
        confirmed_ids,
    })
}

const SEARCH_GQL: &str = "query($q: String) { products(first: 20, query: $q) {
    totalCount
    nodes { sku name brand category price { amount currency formatted } stock { onHand reserved available } availableForSale }
    pageInfo { hasNextPage endCursor }
    facets { brands { value count } categories { value count } priceRanges { min max count } } } }";

const ORDER_GQL: &str = "query($id: ID!) { order(id: $id) {
    id status total { amount currency formatted } placedAt
    lines { lineNo sku name quantity unitPrice { amount } lineTotal { amount } }
    timeline { seq status event at detail } } }";

const SEARCH_WORDS: &[&str] = &[
    "laptop",
    "wireless headphones",
    "acme",
    "studio monitor",
    "keyboard",
    "pro",
    "usb-c hub",
    "phone max",
];

/// The columns the catalog queries select (`purser_api_core::product::PRODUCT_COLUMNS`).
const PRODUCT_COLUMNS: &str = "p.sku, p.name, p.description, p.brand, p.category, p.kind, \
     p.license_source, p.price_minor, p.currency, p.discontinued, p.created_at, p.updated_at, \
     coalesce(s.on_hand, 0) as on_hand, coalesce(s.reserved, 0) as reserved";

/// The columns of an order (`purser_query_api::orders::ORDER_COLUMNS`).
const ORDER_COLUMNS: &str = "order_id, customer_id, email, status, currency, total_minor, \
     item_count, line_count, cart_id, payment_id, payment_reference, captured_minor, paid_at, \
     failure_reason, failure_message, cancel_reason, cancelled_by, cancelled_at, refunded_minor, \
     tracking_number, carrier, estimated_delivery, shipped_at, delivered_at, fulfilled_at, \
     has_digital, has_physical, shipping_address, placed_at, updated_at";

/// The price facet's bucket bounds (`purser_query_api::catalog::PRICE_BOUNDS`).
const PRICE_BOUNDS: [i64; 6] = [2_500, 5_000, 10_000, 25_000, 50_000, 100_000];

#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct ProductRow {
    sku: String,
    name: String,
    description: String,
    brand: String,
    category: String,
    kind: String,
    license_source: Option<String>,
    price_minor: i64,
    currency: String,
    discontinued: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    on_hand: i64,
    reserved: i64,
}

#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct OrderRow {
    order_id: Uuid,
    customer_id: Uuid,
    email: String,
    status: String,
    currency: String,
    total_minor: i64,
    item_count: i32,
    line_count: i32,
    cart_id: Option<Uuid>,
    payment_id: Option<Uuid>,
    payment_reference: Option<String>,
    captured_minor: Option<i64>,
    paid_at: Option<DateTime<Utc>>,
    failure_reason: Option<String>,
    failure_message: Option<String>,
    cancel_reason: Option<String>,
    cancelled_by: Option<String>,
    cancelled_at: Option<DateTime<Utc>>,
    refunded_minor: i64,
    tracking_number: Option<String>,
    carrier: Option<String>,
    estimated_delivery: Option<DateTime<Utc>>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    fulfilled_at: Option<DateTime<Utc>>,
    has_digital: bool,
    has_physical: bool,
    shipping_address: Option<Value>,
    placed_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct LineRow {
    order_id: Uuid,
    line_no: i32,
    sku: String,
    name: String,
    kind: String,
    qty: i32,
    unit_price_minor: i64,
    line_total_minor: i64,
    currency: String,
    license_id: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct StepRow {
    order_id: Uuid,
    seq: i32,
    status: String,
    event: String,
    at: DateTime<Utc>,
    detail: Value,
}

/// `from catalog.products p left join catalog.stock s using (sku) where …` as the search
/// builds it for a text query and no filters, with its parameters numbered from `first`.
fn search_where(first: usize) -> String {
    format!(
        " from catalog.products p left join catalog.stock s using (sku) where true \
         and (p.search @@ websearch_to_tsquery('english', ${}) or ${} <% p.name or ${} <% p.brand)",
        first,
        first + 1,
        first + 2
    )
}

/// The search page as the resolvers run it: the page, then count and facets together.
async fn raw_search(pool: &PgPool, q: &str) -> anyhow::Result<usize> {
    let page_sql = format!(
        "select {PRODUCT_COLUMNS}{} order by ts_rank_cd(p.search, websearch_to_tsquery('english', $4)) \
         + word_similarity($5, p.name) desc, p.sku limit $6",
        search_where(1)
    );
    let page: Vec<ProductRow> = sqlx::query_as(&page_sql)
        .bind(q)
        .bind(q)
        .bind(q)
        .bind(q)
        .bind(q)
        .bind(21i64)
        .fetch_all(pool)
        .await?;
    let count_sql = format!("select count(*){}", search_where(1));
    let facets_sql = format!(
        "select 'brand' as facet, p.brand as value, null::int as bucket, count(*) as n{} \
         and p.brand <> '' group by p.brand union all \
         select 'category', p.category, null::int, count(*){} \
         and p.category <> '' group by p.category union all \
         select 'price', null, width_bucket(p.price_minor, $7::bigint[]), count(*){} group by 3",
        search_where(1),
        search_where(4),
        search_where(8)
    );
    let (count, facets) = futures::try_join!(
        sqlx::query_scalar::<_, i64>(&count_sql)
            .bind(q)
            .bind(q)
            .bind(q)
            .fetch_one(pool),
        sqlx::query_as::<_, (String, Option<String>, Option<i32>, i64)>(&facets_sql)
            .bind(q)
            .bind(q)
            .bind(q)
            .bind(q)
            .bind(q)
            .bind(q)
            .bind(PRICE_BOUNDS.to_vec())
            .bind(q)
            .bind(q)
            .bind(q)
            .fetch_all(pool),
    )?;
    Ok(page.len() + count as usize + facets.len())
}

/// The order query as the resolvers run it: the order, then its lines (with their products)
/// and its timeline together.
async fn raw_order(pool: &PgPool, id: Uuid) -> anyhow::Result<usize> {
    let order: Option<OrderRow> = sqlx::query_as(&format!(
        "select {ORDER_COLUMNS} from sales.orders where order_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let order = order.context("order not found")?;
    let ids = vec![order.order_id];
    let (lines, steps) = futures::try_join!(
        async {
            let lines: Vec<LineRow> = sqlx::query_as(
                "select order_id, line_no, sku, name, kind, qty, unit_price_minor, line_total_minor,
                        currency, license_id
                 from sales.order_lines where order_id = any($1)
                 order by order_id, line_no",
            )
            .bind(&ids)
            .fetch_all(pool)
            .await?;
            let skus: Vec<String> = lines
                .iter()
                .map(|l| l.sku.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let products: Vec<ProductRow> = sqlx::query_as(&format!(
                "select {PRODUCT_COLUMNS} from catalog.products p
                 left join catalog.stock s using (sku) where p.sku = any($1)"
            ))
            .bind(&skus)
            .fetch_all(pool)
            .await?;
            Ok::<_, sqlx::Error>(lines.len() + products.len())
        },
        sqlx::query_as::<_, StepRow>(
            "select order_id, seq, status, event, at, detail
             from sales.order_timeline where order_id = any($1)
             order by order_id, seq",
        )
        .bind(&ids)
        .fetch_all(pool),
    )?;
    Ok(lines + steps.len())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Query {
    Search,
    Order,
}

/// Closed loop: `clients` tasks, each sending the next request as soon as the last returns.
async fn closed_loop(
    api: &Api,
    pool: &PgPool,
    orders: &Arc<Vec<Uuid>>,
    which: Query,
    graphql: bool,
    sizes: &Sizes,
) -> anyhow::Result<(f64, Samples)> {
    let warmup = Duration::from_millis(300).min(crate::secs(sizes.query_secs / 2.0));
    let start = Instant::now();
    let from = start + warmup;
    let end = from + crate::secs(sizes.query_secs);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..sizes.query_clients {
        let (api, pool, orders) = (api.clone(), pool.clone(), orders.clone());
        tasks.spawn(async move {
            let mut samples = Samples::new();
            let mut n = c * 31;
            while Instant::now() < end {
                n += 1;
                let t0 = Instant::now();
                match (which, graphql) {
                    (Query::Search, true) => {
                        let r = api
                            .post(
                                false,
                                SEARCH_GQL,
                                json!({ "q": SEARCH_WORDS[n % SEARCH_WORDS.len()] }),
                            )
                            .await?;
                        anyhow::ensure!(
                            r["products"]["nodes"].is_array(),
                            "bad search answer: {r}"
                        );
                    }
                    (Query::Search, false) => {
                        raw_search(&pool, SEARCH_WORDS[n % SEARCH_WORDS.len()]).await?;
                    }
                    (Query::Order, true) => {
                        let id = orders[n % orders.len()];
                        let gid = base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .encode(format!("Order:{id}"));
                        let r = api.post(true, ORDER_GQL, json!({ "id": gid })).await?;
                        anyhow::ensure!(
                            r["order"]["timeline"]
                                .as_array()
                                .is_some_and(|t| !t.is_empty()),
                            "bad order answer: {r}"
                        );
                    }
                    (Query::Order, false) => {
                        raw_order(&pool, orders[n % orders.len()]).await?;
                    }
                }
                let done = Instant::now();
                if t0 >= from && done <= end {
                    samples.push(done - t0);
                }
            }
            Ok::<Samples, anyhow::Error>(samples)
        });
    }
    let mut all = Samples::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    let rate = all.len() as f64 / (end - from).as_secs_f64();
    Ok((rate, all))
}

async fn queries(
    api: &Api,
    pool: &PgPool,
    orders: &[Uuid],
    sizes: &Sizes,
    verbose: bool,
) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let orders = Arc::new(orders.to_vec());
    let mut rows = vec![];
    let mut notes = vec![];
    for (which, label) in [
        (
            Query::Search,
            "GraphQL catalog search page (20 products, count, facets)",
        ),
        (Query::Order, "GraphQL order with lines and timeline"),
    ] {
        // Raw first, then GraphQL, then raw again: the raw figure is the better of the two,
        // so a slow start cannot flatter the ratio.
        let (raw_rate_a, raw_a) = closed_loop(api, pool, &orders, which, false, sizes).await?;
        let (gql_rate, gql) = closed_loop(api, pool, &orders, which, true, sizes).await?;
        let (raw_rate_b, raw_b) = closed_loop(api, pool, &orders, which, false, sizes).await?;
        let (raw_rate, raw) = if raw_b.percentile_ms(99.0) < raw_a.percentile_ms(99.0) {
            (raw_rate_b, raw_b)
        } else {
            (raw_rate_a, raw_a)
        };
        progress(
            verbose,
            format!(
                "{label}: GraphQL {gql_rate:.0}/s p50 {:.2} p99 {:.2} ms; SQL {raw_rate:.0}/s p50 {:.2} p99 {:.2} ms",
                gql.percentile_ms(50.0),
                gql.percentile_ms(99.0),
                raw.percentile_ms(50.0),
                raw.percentile_ms(99.0)
            ),
        );
        rows.push(
            Row::new(
                7,
                format!("{label}, p99, {} clients, vs same SQL", sizes.query_clients),
                gql.percentile_ms(99.0),
                "ms",
            )
            .vs(raw.percentile_ms(99.0))
            .target(Target::RatioAtMost(2.0)),
        );
        rows.push(
            Row::new(
                7,
                format!(
                    "{label}, throughput, {} clients, vs same SQL",
                    sizes.query_clients
                ),
                gql_rate,
                "requests/s",
            )
            .vs(raw_rate),
        );
        notes.push(format!(
            "row 7 {label}: p50 {:.2} ms over GraphQL vs {:.2} ms as SQL",
            gql.percentile_ms(50.0),
            raw.percentile_ms(50.0)
        ));
    }
    Ok((rows, notes))
}

/// The `top` values of `label` that took the most time in the Prometheus histogram `metric`,
/// as `value total s / count = mean ms`, summed over the histogram's other labels.
fn time_by(metrics: &str, metric: &str, label: &str, top: usize) -> String {
    let mut by: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    let label = format!("{label}=\"");
    for (suffix, slot) in [("_sum", 0), ("_count", 1)] {
        let name = format!("{metric}{suffix}{{");
        for line in metrics.lines().filter(|l| l.starts_with(&name)) {
            let Some((labels, value)) = line[name.len()..].split_once("} ") else {
                continue;
            };
            let Some(key) = labels
                .split(',')
                .find_map(|l| l.strip_prefix(label.as_str()))
                .map(|v| v.trim_end_matches('"').to_owned())
            else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let entry = by.entry(key).or_default();
            if slot == 0 {
                entry.0 += value;
            } else {
                entry.1 += value;
            }
        }
    }
    let mut all: Vec<(String, (f64, f64))> = by.into_iter().collect();
    all.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    let shown: Vec<String> = all
        .iter()
        .take(top)
        .map(|(k, (sum, count))| {
            format!(
                "{k} {sum:.1} s / {count:.0} = {:.1} ms",
                if *count > 0.0 {
                    sum / count * 1000.0
                } else {
                    0.0
                }
            )
        })
        .collect();
    if shown.is_empty() {
        "none recorded".into()
    } else {
        shown.join(", ")
    }
}
