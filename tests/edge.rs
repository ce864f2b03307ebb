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
