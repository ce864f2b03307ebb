//! What browsers on other origins see: CORS from `PURSER_CORS_ORIGINS` only.

mod support;

use purser::app::Role;
use support::{spawn_app, spawn_app_with};

async fn preflight(app: &support::TestApp, origin: &str) -> reqwest::Response {
    app.http
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type, authorization",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_gets_cors_headers_and_others_do_not() {
    let app = spawn_app_with(
        Role::All,
        &[(
            "PURSER_CORS_ORIGINS",
            "https://shop.example.com, http://localhost:3000",
        )],
    )
    .await;
    let r = preflight(&app, "https://shop.example.com").await;
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://shop.example.com");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let headers = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    assert!(
        h.get("access-control-allow-credentials").is_none(),
        "no credentials mode"
    );

    let r = preflight(&app, "https://evil.example.net").await;
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers()
    );

    // An actual request from the allowed origin carries the header too.
    let r = app
        .http
        .post(app.url("/graphql"))
        .header("Origin", "http://localhost:3000")
        .json(&serde_json::json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
}

#[tokio::test]
async fn without_configured_origins_there_are_no_cors_headers() {
    let app = spawn_app().await;
    let r = preflight(&app, "https://shop.example.com").await;
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers()
    );
}

/// A GET of `/graphql` with the given query-string parameters, as JSON.
async fn get(app: &support::TestApp, params: &[(&str, &str)]) -> serde_json::Value {
    app.http
        .get(app.url("/graphql"))
        .query(params)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_automatic_persisted_query_round_trip_works_over_get() {
    use sha2::{Digest, Sha256};
    let app = spawn_app().await;
    let query = "query Apq { __typename }";
    let hash = hex::encode(Sha256::digest(query.as_bytes()));
    let ext = serde_json::json!({"persistedQuery": {"version": 1, "sha256Hash": hash}}).to_string();

    // The hash alone: unknown yet.
    let r = get(&app, &[("extensions", &ext)]).await;
    assert_eq!(r["errors"][0]["message"], "PersistedQueryNotFound", "{r}");
    assert_eq!(
        r["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    // The document with its hash registers it and runs.
    let r = get(&app, &[("query", query), ("extensions", &ext)]).await;
    assert_eq!(r["data"]["__typename"], "Query", "{r}");
    // Now the hash alone runs it.
    let r = get(&app, &[("extensions", &ext)]).await;
    assert_eq!(r["data"]["__typename"], "Query", "{r}");
    // A document that does not match its hash is refused, and nothing is registered for it.
    let r = get(
        &app,
        &[
            ("query", "{ __schema { queryType { name } } }"),
            ("extensions", &ext),
        ],
    )
    .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "BAD_PERSISTED_QUERY",
        "{r}"
    );
    // A persisted mutation still cannot go as a GET: admission sees the document.
    let mutation = "mutation { cartCreate { userErrors { code } } }";
    let mhash = hex::encode(Sha256::digest(mutation.as_bytes()));
    let mext =
        serde_json::json!({"persistedQuery": {"version": 1, "sha256Hash": mhash}}).to_string();
    let status = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", mutation), ("extensions", mext.as_str())])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 405);
}

#[tokio::test]
async fn an_anonymous_catalog_get_revalidates_with_its_etag_until_a_product_changes() {
    let app = spawn_app().await;
    let shop = support::shop::Shop::new(&app).await;
    shop.product("ETAG-1", 500, 3).await;
    app.settle().await;
    let query = "{ products(first: 5) { edges { node { sku } } } }";
    let fetch = |tag: Option<String>, token: Option<String>| {
        let mut req = app.http.get(app.url("/graphql")).query(&[("query", query)]);
        if let Some(tag) = tag {
            req = req.header("If-None-Match", tag);
        }
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let first = fetch(None, None).await.unwrap();
    assert_eq!(first.status(), 200);
    let tag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        first.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public")
    );
    assert_eq!(first.headers()["vary"], "Authorization");
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(
        body["data"]["products"]["edges"][0]["node"]["sku"], "ETAG-1",
        "{body}"
    );

    let again = fetch(Some(tag.clone()), None).await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), tag);

    // A product changes: the same tag now gets the new answer and a new tag.
    shop.product("ETAG-2", 700, 1).await;
    app.settle().await;
    let changed = fetch(Some(tag.clone()), None).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), tag);

    // With credentials, or for anything but the catalog: never cacheable, never a 304.
    let token = app.admin_token().await;
    let authed = fetch(Some(tag.clone()), Some(token)).await.unwrap();
    assert_eq!(authed.status(), 200);
    assert!(authed.headers().get("etag").is_none());
    assert_eq!(authed.headers()["cache-control"], "private, no-store");
    let other = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", "{ __schema { queryType { name } } }")])
        .header("If-None-Match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(other.headers()["cache-control"], "private, no-store");
}
