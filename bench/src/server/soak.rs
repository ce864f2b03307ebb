//! `purser bench --soak MINUTES`: does memory stay flat and latency steady under hours of
//! the same traffic? A `purser serve` child process on a fresh database gets a steady mixed
//! load for MINUTES: 4 clients browsing the catalog (a search page with facets, closed loop)
//! and 2 clients checking out one-line guest carts (create the cart, add the line, check out,
//! closed loop). Every 10 s the server's resident memory (`VmRSS`) is read; every minute one
//! line is printed: RSS, checkouts and browses per second, their p99, the state cache's size
//! and hit ratio (from the server's `/metrics`), errors. At the end: the RSS slope after
//! warm-up (least squares), the rise over the second half, the last minute's p99 against the
//! second's, the RSS after 30 s idle, and whether every order placed reached an outcome.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::api::{Api, seed_catalog, settle, user_errors};
use super::process::Server;
use crate::db::BenchDb;
use crate::progress;
use crate::stats::Samples;

const BROWSERS: usize = 4;
const BUYERS: usize = 2;
const PRODUCTS: usize = 200;

const SEARCH: &str = "query($q: String) { products(first: 20, query: $q) {
    totalCount nodes { sku name price { amount currency } stock { available } }
    facets { brands { value count } categories { value count } } } }";

const WORDS: &[&str] = &["laptop", "headphones", "acme", "monitor", "keyboard", "pro"];

/// What the load saw in one minute.
#[derive(Default)]
struct Minute {
    browse: Samples,
    checkout: Samples,
    errors: usize,
    first_error: Option<String>,
}

type Shared = Arc<Mutex<Minute>>;

pub(crate) async fn run(
    db: &BenchDb,
    exe: &std::path::Path,
    minutes: u32,
    verbose: bool,
) -> anyhow::Result<String> {
    let secret = format!("bench-{}", Uuid::new_v4().simple());
    let server = Server::start(exe, &db.url(), &secret).await?;
    progress(verbose, format!("soak: purser serve (pid {})", server.pid));
    let outcome = drive(db, &server, &secret, minutes, verbose).await;
    let errors = server.errors.lock().expect("lock").clone();
    server.stop().await;
    let mut report = outcome?;
    report.push_str(&format!("\nserver log errors: {}\n", errors.len()));
    if let Some(first) = errors.first() {
        report.push_str(&format!("first: {first}\n"));
    }
    Ok(report)
}

async fn drive(
    db: &BenchDb,
    server: &Server,
    secret: &str,
    minutes: u32,
    verbose: bool,
) -> anyhow::Result<String> {
    let pool = db.pool(4).await?;
    let api = Api::new(server, secret, &pool).await?;
    let skus = Arc::new(seed_catalog(&api, PRODUCTS).await?);
    settle(&pool).await?;
    progress(verbose, format!("soak: {PRODUCTS} products seeded"));

    let minute: Shared = Arc::default();
    let end = Instant::now() + Duration::from_secs(u64::from(minutes) * 60);
    let mut load = tokio::task::JoinSet::new();
    for c in 0..BROWSERS {
        load.spawn(browse(api.clone(), minute.clone(), end, c));
    }
    for c in 0..BUYERS {
        load.spawn(buy(api.clone(), skus.clone(), minute.clone(), end, c));
    }
    let mut rss: Vec<(f64, f64)> = vec![];
    let mut lines = vec![];
    let start = Instant::now();
    let header = "| minute | RSS MB | checkouts/s | checkout p99 ms | browses/s | browse p99 ms | cache entries | cache MB | cache hit ratio | errors |";
    println!("{header}\n|---|---|---|---|---|---|---|---|---|---|");
    for m in 1..=minutes {
        let minute_end = start + Duration::from_secs(u64::from(m) * 60);
        while Instant::now() < minute_end {
            rss.push((start.elapsed().as_secs_f64() / 60.0, rss_mb(server.pid)?));
            let next = (Instant::now() + Duration::from_secs(10)).min(minute_end);
            crate::sleep_until(next).await;
        }
        let seen = std::mem::take(&mut *minute.lock().expect("lock"));
        let cache = cache_figures(&api).await.unwrap_or_default();
        let line = MinuteLine {
            minute: m,
            rss: rss_mb(server.pid)?,
            checkouts: seen.checkout.len() as f64 / 60.0,
            checkout_p99: seen.checkout.percentile_ms(99.0),
            browses: seen.browse.len() as f64 / 60.0,
            browse_p99: seen.browse.percentile_ms(99.0),
            cache,
            errors: seen.errors,
        };
        println!("{}", line.row());
        if let Some(e) = seen.first_error {
            progress(verbose, format!("soak: minute {m}: first error: {e}"));
        }
        lines.push(line);
    }
    while let Some(r) = load.join_next().await {
        r?;
    }
    settle(&pool).await?;
    let unsettled = unsettled_orders(&pool).await?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let idle = rss_mb(server.pid)?;
    pool.close().await;
    Ok(summary(&lines, &rss, minutes, idle, unsettled))
}

#[derive(Default, Clone, Copy)]
struct Cache {
    entries: f64,
    bytes: f64,
    hit_ratio: f64,
}

struct MinuteLine {
    minute: u32,
    rss: f64,
    checkouts: f64,
    checkout_p99: f64,
    browses: f64,
    browse_p99: f64,
    cache: Cache,
    errors: usize,
}

impl MinuteLine {
    fn row(&self) -> String {
        format!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} | {:.0} | {:.1} | {:.3} | {} |",
            self.minute,
            self.rss,
            self.checkouts,
            self.checkout_p99,
            self.browses,
            self.browse_p99,
            self.cache.entries,
            self.cache.bytes / 1e6,
            self.cache.hit_ratio,
            self.errors
        )
    }
}

/// The summary the issue asks for: the slope after warm-up, the second half's rise, p99 drift.
fn summary(
    lines: &[MinuteLine],
    rss: &[(f64, f64)],
    minutes: u32,
    idle: f64,
    unsettled: i64,
) -> String {
    let warm_up = f64::from((minutes / 5).max(1));
    let after: Vec<(f64, f64)> = rss.iter().copied().filter(|(t, _)| *t >= warm_up).collect();
    let half = f64::from(minutes) / 2.0;
    let at_half = rss.iter().find(|(t, _)| *t >= half).map(|(_, r)| *r);
    let last = lines.last().map(|l| l.rss);
    let rise = match (at_half, last) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let drift = |f: fn(&MinuteLine) -> f64| match (lines.get(1), lines.last()) {
        (Some(second), Some(last)) if lines.len() > 2 => f(last) / f(second),
        _ => f64::NAN,
    };
    let errors: usize = lines.iter().map(|l| l.errors).sum();
    format!(
        "\nRSS slope after {warm_up:.0} min of warm-up: {:.2} MB/min\n\
         RSS rise over the second half: {rise:.1} MB (target: at most 5)\n\
         RSS after 30 s idle: {idle:.1} MB\n\
         checkout p99, last minute / second minute: {:.2} (target: at most 1.20)\n\
         browse p99, last minute / second minute: {:.2} (target: at most 1.20)\n\
         errors: {errors} requests, {unsettled} orders without an outcome after settling (target: 0)\n",
        slope(&after),
        drift(|l| l.checkout_p99),
        drift(|l| l.browse_p99),
    )
}

/// Least-squares slope of (minute, MB); NaN with fewer than two points.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), (a, b)| (x + a / n, y + b / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 { f64::NAN } else { num / den }
}

/// The server's resident memory now, in MB (10^6 bytes).
fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("cannot read the server's /proc status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no VmRSS in the server's /proc status")?;
    Ok(kb * 1024.0 / 1e6)
}

/// The state cache's figures from the server's `/metrics`.
async fn cache_figures(api: &Api) -> anyhow::Result<Cache> {
    let text = api.metrics().await?;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains("cache=\"aggregate_states\""))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Ok(Cache {
        entries: value("purser_cache_entries{"),
        bytes: value("purser_cache_bytes{"),
        hit_ratio: value("purser_cache_hit_ratio{"),
    })
}

/// Orders placed that have not reached CONFIRMED or a failure once the log has settled.
async fn unsettled_orders(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "select count(*) from sales.orders where status in ('PENDING', 'PAYMENT_PROCESSING', 'PAID')",
    )
    .fetch_one(pool)
    .await?)
}

fn record(minute: &Shared, t0: Instant, outcome: anyhow::Result<()>, browse: bool) {
    let mut m = minute.lock().expect("lock");
    match outcome {
        Ok(()) if browse => m.browse.push(t0.elapsed()),
        Ok(()) => m.checkout.push(t0.elapsed()),
        Err(e) => {
            m.errors += 1;
            m.first_error.get_or_insert_with(|| format!("{e:#}"));
        }
    }
}

async fn browse(api: Api, minute: Shared, end: Instant, client: usize) {
    let mut n = client * 7;
    while Instant::now() < end {
        n += 1;
        let t0 = Instant::now();
        let outcome = async {
            let r = api
                .post(false, SEARCH, json!({ "q": WORDS[n % WORDS.len()] }))
                .await?;
            anyhow::ensure!(r["products"]["nodes"].is_array(), "bad search answer: {r}");
            Ok(())
        }
        .await;
        record(&minute, t0, outcome, true);
    }
}

async fn buy(api: Api, skus: Arc<Vec<String>>, minute: Shared, end: Instant, client: usize) {
    let mut n = client * 13;
    while Instant::now() < end {
        n += 1;
        let sku = &skus[n % skus.len()];
        let Ok(cart) = one_line_cart(&api, sku).await else {
            record(
                &minute,
                Instant::now(),
                Err(anyhow::anyhow!("cart failed")),
                false,
            );
            continue;
        };
        let t0 = Instant::now();
        let outcome = checkout(&api, &cart).await;
        record(&minute, t0, outcome, false);
    }
}

async fn one_line_cart(api: &Api, sku: &str) -> anyhow::Result<String> {
    let r = api
        .post(
            false,
            "mutation { cartCreate { cartId userErrors { code message } } }",
            json!({}),
        )
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
            json!({ "c": id, "l": [{ "sku": sku, "quantity": 1 }] }),
        )
        .await?;
    user_errors(&r["cartLinesAdd"])?;
    Ok(id)
}

async fn checkout(api: &Api, cart: &str) -> anyhow::Result<()> {
    let vars = json!({ "i": {
        "cartId": cart,
        "idempotencyKey": Uuid::new_v4().to_string(),
        "email": format!("soak-{}@example.com", Uuid::new_v4().simple()),
        "paymentMethod": "4242 4242 4242 4242",
        "shippingAddress": { "name": "Ann Buyer", "line1": "1 Main St", "city": "Springfield",
                             "postalCode": "12345", "country": "US" },
    }});
    let r = api.post(false, super::checkout::CHECKOUT, vars).await?;
    user_errors(&r["cartCheckout"])?;
    anyhow::ensure!(r["cartCheckout"]["orderId"].is_string(), "no order id: {r}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn the_slope_is_least_squares() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|m| (f64::from(m), 40.0 + 0.5 * f64::from(m)))
            .collect();
        assert!((slope(&line) - 0.5).abs() < 1e-9);
        assert!(slope(&[(1.0, 2.0)]).is_nan());
    }
}
