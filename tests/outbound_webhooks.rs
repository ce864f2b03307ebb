//! Outbound webhooks against a local HTTP receiver: a delivery verifies with the documented
//! signature check; a receiver that fails three times and then succeeds gets each event once
//! as seen by its de-duplication id (and an order's events in order); the delivery log shows
//! the attempts and a replay sends the same event again; a private address is refused.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use purser::app::Role;
use purser_integrations::webhooks::signature;
use serde_json::{Value, json};
use support::shop::Shop;
use support::spawn_app_with;

/// What the receiver saw: (event id, type, key) per accepted delivery, and every attempt.
#[derive(Default)]
struct Seen {
    attempts: usize,
    accepted: Vec<(String, String, String)>,
    bad_signatures: usize,
}

/// The receiver's state: what it saw, and the secret it checks signatures with.
type Shared = (Arc<Mutex<Seen>>, Arc<Mutex<String>>);

/// A receiver that refuses its first `fail_first` requests with a 503, checks every
/// signature with the documented recipe, and de-duplicates by `Purser-Event-Id`.
async fn receiver(secret: Arc<Mutex<String>>, fail_first: usize) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = (seen.clone(), secret);
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                move |axum::extract::State((seen, secret)): axum::extract::State<Shared>,
                      headers: HeaderMap,
                      body: axum::body::Bytes| async move {
                    let mut s = seen.lock().unwrap();
                    s.attempts += 1;
                    if s.attempts <= fail_first {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let header = headers[signature::HEADER].to_str().unwrap();
                    let now = chrono::Utc::now().timestamp();
                    if signature::verify(&secret.lock().unwrap(), header, &body, now, 300).is_err()
                    {
                        s.bad_signatures += 1;
                        return StatusCode::BAD_REQUEST;
                    }
                    let event: Value = serde_json::from_slice(&body).unwrap();
                    let id = headers["Purser-Event-Id"].to_str().unwrap().to_owned();
                    assert_eq!(event["id"], id.as_str());
                    if !s.accepted.iter().any(|(seen_id, ..)| *seen_id == id) {
                        let t = event["type"].as_str().unwrap().to_owned();
                        let k = event["key"].as_str().unwrap().to_owned();
                        s.accepted.push((id, t, k));
                    }
                    StatusCode::OK
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

const CREATE: &str =
    "mutation($i: WebhookEndpointCreateInput!) { webhookEndpointCreate(input: $i) {
    endpoint { id url eventTypes enabled } secret userErrors { field code message } } }";

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_are_signed_retried_and_received_once_each_in_order() {
    let app = spawn_app_with(
        Role::All,
        &[
            ("PURSER_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("PURSER_WEBHOOK_RETRY_BASE_MS", "50"),
        ],
    )
    .await;
    let shop = Shop::new(&app).await;
    let secret = Arc::new(Mutex::new(String::new()));
    let (url, seen) = receiver(secret.clone(), 3).await;
    let r = shop
        .admin(CREATE, json!({"i": {"url": url, "eventTypes": ["order.placed", "order.paid", "order.confirmed"]}}))
        .await;
    let created = &r["data"]["webhookEndpointCreate"];
    assert_eq!(created["userErrors"], json!([]), "{r}");
    *secret.lock().unwrap() = created["secret"].as_str().unwrap().to_owned();
    let endpoint = created["endpoint"]["id"].as_str().unwrap().to_owned();

    shop.product("HOOK-1", 700, 50).await;
    let order = shop.order_from(&[("HOOK-1", 2)], "pm_card_visa").await;
    shop.wait_for_status(&order, &["CONFIRMED"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().accepted.len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.bad_signatures, 0);
        let types: Vec<&str> = s.accepted.iter().map(|(_, t, _)| t.as_str()).collect();
        assert_eq!(
            types,
            ["order.placed", "order.paid", "order.confirmed"],
            "in order, once each"
        );
        // The three failures fell on the first event; the others waited behind it.
        assert!(s.attempts >= 6, "{} attempts", s.attempts);
    }

    // The delivery log shows the failed attempts and their status codes.
    let log = shop
        .admin(
            "query($e: ID!) { webhookDeliveries(endpointId: $e) { id eventId eventType status attempts lastStatusCode } }",
            json!({"e": endpoint}),
        )
        .await;
    let deliveries = log["data"]["webhookDeliveries"].as_array().unwrap().clone();
    assert_eq!(deliveries.len(), 3, "{log}");
    assert!(
        deliveries
            .iter()
            .all(|d| d["status"] == "DELIVERED" && d["lastStatusCode"] == 200)
    );
    let placed = deliveries
        .iter()
        .find(|d| d["eventType"] == "order.placed")
        .unwrap();
    assert_eq!(placed["attempts"], 4, "{placed}");

    // A replay sends the same event again: the receiver sees its id a second time and keeps one.
    let before = seen.lock().unwrap().attempts;
    let r = shop
        .admin(
            "mutation($d: ID!) { webhookDeliveryReplay(id: $d) { delivery { status } userErrors { code } } }",
            json!({"d": placed["id"]}),
        )
        .await;
    assert_eq!(
        r["data"]["webhookDeliveryReplay"]["userErrors"],
        json!([]),
        "{r}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().attempts == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replay never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: BTreeMap<String, usize> =
        seen.lock()
            .unwrap()
            .accepted
            .iter()
            .fold(BTreeMap::new(), |mut m, (id, ..)| {
                *m.entry(id.clone()).or_default() += 1;
                m
            });
    assert!(ids.values().all(|n| *n == 1));
    assert_eq!(ids.len(), 3);
}

#[tokio::test]
async fn private_and_bad_urls_are_refused_and_only_admins_register() {
    let app = spawn_app_with(Role::All, &[]).await;
    let shop = Shop::new(&app).await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://localhost/x",
    ] {
        let r = shop.admin(CREATE, json!({"i": {"url": url}})).await;
        let errors = &r["data"]["webhookEndpointCreate"]["userErrors"];
        assert_eq!(errors[0]["code"], "INVALID_WEBHOOK_URL", "{url}: {r}");
        assert_eq!(errors[0]["field"], json!(["input", "url"]));
    }
    let r = shop
        .admin(CREATE, json!({"i": {"url": "ftp://example.com/x"}}))
        .await;
    assert_eq!(
        r["data"]["webhookEndpointCreate"]["userErrors"][0]["code"],
        "INVALID_WEBHOOK_URL"
    );
    let r = shop
        .admin(
            CREATE,
            json!({"i": {"url": "http://10.0.0.7/", "eventTypes": ["order.nope"]}}),
        )
        .await;
    assert!(
        r["data"]["webhookEndpointCreate"]["userErrors"][0]["code"].is_string(),
        "{r}"
    );
    let r = app
        .graphql(CREATE, json!({"i": {"url": "https://example.com/hook"}}))
        .await;
    assert!(
        r["errors"].is_array(),
        "anonymous registration refused: {r}"
    );
    let listed = shop.admin("{ webhookEndpoints { id } }", json!({})).await;
    assert_eq!(listed["data"]["webhookEndpoints"], json!([]), "{listed}");
}
