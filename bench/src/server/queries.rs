//! Row 7: the search page and the order, over GraphQL and as the same SQL, closed loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::api::Api;
use super::raw_queries::{raw_order, raw_search};
use crate::report::{Row, Target};
use crate::stats::Samples;
use crate::{Sizes, progress};

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

/// Row 7: for each query, the p99 latency and throughput over GraphQL against the same SQL.
pub(super) async fn run(
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
