//! Talking to the server as a client: GraphQL over HTTP, and the catalog and carts the rows
//! start from, made through the same mutations any client uses.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use purser_api_core::auth::Tokens;
use purser_domain::CustomerId;
use purser_domain::customer::Role;
use purser_event_store::{EventStore, PgEventStore, Position};
use rand::Rng;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::process::Server;

#[derive(Clone)]
pub(super) struct Api {
    http: reqwest::Client,
    url: String,
    metrics_url: String,
    admin: String,
}

impl Api {
    /// A client of `server`'s GraphQL endpoint, with an admin token signed by `secret` for a
    /// session the bench opens itself in the server's database (the bench admin has no
    /// account, so the token's roles stand).
    pub(super) async fn new(server: &Server, secret: &str, pool: &PgPool) -> anyhow::Result<Api> {
        let tokens = Tokens::new(secret.as_bytes(), Duration::from_secs(3600));
        let (session, admin) = (uuid::Uuid::new_v4(), CustomerId::new());
        sqlx::query(
            "insert into purser.sessions (id, customer_id, refresh_hash, expires_at)
             values ($1, $2, '\\x00', now() + interval '1 day')",
        )
        .bind(session)
        .bind(admin.as_uuid())
        .execute(pool)
        .await
        .context("opening the bench admin's session")?;
        Ok(Api {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(1024)
                .build()?,
            url: format!("http://{}/graphql", server.addr),
            metrics_url: format!("http://{}/metrics", server.addr),
            admin: tokens.issue(
                session,
                admin,
                "bench-admin@example.com",
                &BTreeSet::from([Role::Admin]),
            ),
        })
    }

    /// The server's Prometheus metrics, as text.
    pub(super) async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(&self.metrics_url)
            .send()
            .await?
            .text()
            .await?)
    }

    /// Posts a GraphQL request; GraphQL errors are errors.
    pub(super) async fn post(
        &self,
        admin: bool,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
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

pub(super) fn user_errors(v: &Value) -> anyhow::Result<()> {
    match v["userErrors"].as_array() {
        Some(e) if !e.is_empty() => bail!("user errors: {v}"),
        _ => Ok(()),
    }
}

/// Creates the catalog through the admin mutations; returns the physical SKUs.
pub(super) async fn seed_catalog(api: &Api, n: usize) -> anyhow::Result<Vec<String>> {
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
pub(super) async fn prepare_carts(
    api: &Api,
    skus: &[String],
    n: usize,
) -> anyhow::Result<Vec<String>> {
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
pub(super) async fn settle(pool: &PgPool) -> anyhow::Result<()> {
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
