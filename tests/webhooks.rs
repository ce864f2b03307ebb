//! Stripe webhooks against the running app: correctly signed deliveries are applied once,
//! anything forged, tampered with or stale is refused with a 400 and changes nothing.

mod support;

use chrono::Utc;
use purser::app::Role;
use purser_command_api::CommandContext;
use purser_command_api::gateway::stripe_webhook::signature_header;
use purser_domain::payment::{Payment, PaymentCommand, PaymentMethod};
use purser_domain::{Currency, Money, OrderId, PaymentId};
use serde_json::{Value, json};
use support::{spawn_app, spawn_app_with};

const SECRET: &str = "whsec_test_secret_for_purser";

fn event(id: &str, kind: &str, payment_id: PaymentId, order_id: OrderId) -> Vec<u8> {
    let mut object = json!({
        "id": format!("pi_{id}"), "object": "payment_intent", "amount": 2500, "currency": "usd",
        "metadata": { "payment_id": payment_id.to_string(), "order_id": order_id.to_string() },
    });
    if kind == "payment_intent.payment_failed" {
        object["last_payment_error"] = json!({ "code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds." });
    }
    serde_json::to_vec(&json!({ "id": format!("evt_{id}"), "object": "event", "type": kind, "created": Utc::now().timestamp(), "livemode": false, "data": { "object": object } }))
        .unwrap()
}

async fn open_payment(app: &support::TestApp) -> (PaymentId, OrderId) {
    let (payment_id, order_id) = (PaymentId::new(), OrderId::new());
    let cmd = PaymentCommand::CreateIntent {
        payment_id,
        order_id,
        amount: Money::new(2500, Currency::USD),
        payment_method: PaymentMethod::parse("pm_card_visa").unwrap(),
        idempotency_key: payment_id.to_string(),
        now: Utc::now(),
    };
    app.services()
        .bus
        .execute::<Payment>(&payment_id, &CommandContext::system("test"), cmd)
        .await
        .unwrap();
    (payment_id, order_id)
}

async fn post(app: &support::TestApp, body: &[u8], signature: Option<String>) -> (u16, Value) {
    let mut req = app
        .http
        .post(app.url("/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("Stripe-Signature", sig);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn events_of(app: &support::TestApp, payment_id: PaymentId, event_type: &str) -> i64 {
    sqlx::query_scalar("select count(*) from es.events where stream_name = $1 and event_type = $2")
        .bind(payment_id.stream())
        .bind(event_type)
        .fetch_one(&app.services().pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_apply_once_and_forged_or_stale_ones_are_refused() {
    let mut app = spawn_app_with(
        Role::All,
        &[
            ("PURSER_PAYMENT_GATEWAY", "stripe"),
            ("STRIPE_API_KEY", "sk_test_not_a_real_key"),
            ("STRIPE_WEBHOOK_SECRET", SECRET),
            ("STRIPE_API_BASE", "http://127.0.0.1:9"),
        ],
    )
    .await;
    let (paid, paid_order) = open_payment(&app).await;
    let body = event("1", "payment_intent.succeeded", paid, paid_order);
    let now = Utc::now().timestamp();

    // Forged: wrong secret; tampered: right signature, different body; stale: an old, valid
    // signature replayed; missing: no header at all.
    let (status, err) = post(
        &app,
        &body,
        Some(signature_header(&body, "whsec_wrong", now)),
    )
    .await;
    assert_eq!(
        (status, err["errors"][0]["extensions"]["code"].as_str()),
        (400, Some("BAD_WEBHOOK"))
    );
    let tampered = event(
        "1",
        "payment_intent.succeeded",
        PaymentId::new(),
        paid_order,
    );
    assert_eq!(
        post(&app, &tampered, Some(signature_header(&body, SECRET, now)))
            .await
            .0,
        400
    );
    assert_eq!(
        post(
            &app,
            &body,
            Some(signature_header(&body, SECRET, now - 3600))
        )
        .await
        .0,
        400
    );
    assert_eq!(post(&app, &body, None).await.0, 400);
    assert_eq!(
        events_of(&app, paid, "PaymentCaptured").await,
        0,
        "nothing refused changed anything"
    );

    // Correctly signed: applied. Delivered again (Stripe retries): nothing more.
    for _ in 0..2 {
        let (status, ok) = post(&app, &body, Some(signature_header(&body, SECRET, now))).await;
        assert_eq!(status, 200, "{ok}");
        assert_eq!(ok["payment_id"], paid.to_string());
    }
    assert_eq!(events_of(&app, paid, "PaymentCaptured").await, 1);

    // A failure for another payment, with its reason.
    let (failed, failed_order) = open_payment(&app).await;
    let body = event("2", "payment_intent.payment_failed", failed, failed_order);
    assert_eq!(
        post(&app, &body, Some(signature_header(&body, SECRET, now)))
            .await
            .0,
        200
    );
    let reason: String = sqlx::query_scalar(
        "select data->>'reason' from es.events where stream_name = $1 and event_type = 'PaymentFailed'",
    )
    .bind(failed.stream())
    .fetch_one(&app.services().pool)
    .await
    .unwrap();
    assert_eq!(reason, "insufficient_funds");
    // A late failure for the captured payment is acknowledged and ignored.
    let late = event("3", "payment_intent.payment_failed", paid, paid_order);
    let (status, ok) = post(&app, &late, Some(signature_header(&late, SECRET, now))).await;
    assert_eq!(status, 200);
    assert!(ok["ignored"].is_string(), "{ok}");
    assert_eq!(events_of(&app, paid, "PaymentFailed").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_stripe_the_endpoint_does_not_exist() {
    let mut app = spawn_app().await;
    assert_eq!(post(&app, b"{}", Some("t=1,v1=00".into())).await.0, 404);
    app.stop().await;
}
