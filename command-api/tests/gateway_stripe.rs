//! The Stripe adapter against a fake Stripe served on 127.0.0.1:0 inside the test.
//!
//! The fake checks what the real API requires of us (bearer auth, an `Idempotency-Key`, a
//! form-encoded body), replays the first answer for a repeated key as Stripe does, and answers
//! each payment method the way Stripe answers the test card of that name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use purser_api_core::config::Secret;
use purser_command_api::gateway::{
    ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest, StripeConfig,
    StripeGateway,
};
use purser_domain::payment::{PaymentFailureReason, PaymentMethod};
use purser_domain::{Currency, Money, OrderId, PaymentId};
use serde_json::{Value, json};

const API_KEY: &str = "sk_test_fake_4eC39HqLyjWDarjtT1zdp7dc";

/// One request the fake received.
#[derive(Debug, Clone)]
struct Seen {
    path: &'static str,
    idempotency_key: String,
    form: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The first answer to each idempotency key, replayed for repeats.
    answers: Arc<Mutex<HashMap<String, (StatusCode, String)>>>,
    intents: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn stripe_error(status: StatusCode, error: Value) -> (StatusCode, String) {
    (status, json!({ "error": error }).to_string())
}

fn card_error(code: &str, decline_code: Option<&str>, message: &str) -> (StatusCode, String) {
    let mut error = json!({ "type": "card_error", "code": code, "message": message });
    if let Some(decline_code) = decline_code {
        error["decline_code"] = json!(decline_code);
    }
    stripe_error(StatusCode::PAYMENT_REQUIRED, error)
}

fn intent(id: &str, status: &str, form: &HashMap<String, String>) -> (StatusCode, String) {
    let body = json!({
        "id": id,
        "object": "payment_intent",
        "amount": form.get("amount").and_then(|a| a.parse::<i64>().ok()),
        "currency": form.get("currency"),
        "status": status,
        "metadata": {
            "order_id": form.get("metadata[order_id]"),
            "payment_id": form.get("metadata[payment_id]"),
        },
    });
    (StatusCode::OK, body.to_string())
}

/// Answers a request the way Stripe does, or refuses it the way Stripe refuses a bad call.
async fn guarded(
    fake: &Fake,
    path: &'static str,
    headers: &HeaderMap,
    form: HashMap<String, String>,
    answer: impl FnOnce(&Fake, &HashMap<String, String>) -> (StatusCode, String),
) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {API_KEY}")) {
        let (status, body) = stripe_error(
            StatusCode::UNAUTHORIZED,
            json!({ "type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****" }),
        );
        return (status, body).into_response();
    }
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        let (status, body) = stripe_error(
            StatusCode::BAD_REQUEST,
            json!({ "type": "invalid_request_error", "message": "the fake requires an Idempotency-Key" }),
        );
        return (status, body).into_response();
    };
    fake.seen.lock().unwrap().push(Seen {
        path,
        idempotency_key: key.to_owned(),
        form: form.clone(),
    });
    if form.get("payment_method").map(String::as_str) == Some("pm_card_slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let replayed = fake.answers.lock().unwrap().get(key).cloned();
    let (status, body) = match replayed {
        Some(answer) => answer,
        None => {
            let answer = answer(fake, &form);
            fake.answers
                .lock()
                .unwrap()
                .insert(key.to_owned(), answer.clone());
            answer
        }
    };
    (status, [("content-type", "application/json")], body).into_response()
}

async fn payment_intents(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    guarded(
        &fake,
        "/v1/payment_intents",
        &headers,
        form,
        |fake, form| {
            let method = form.get("payment_method").cloned().unwrap_or_default();
            match method.as_str() {
                "pm_card_chargeDeclinedInsufficientFunds" => card_error(
                    "card_declined",
                    Some("insufficient_funds"),
                    "Your card has insufficient funds.",
                ),
                "pm_card_chargeDeclined" => card_error(
                    "card_declined",
                    Some("generic_decline"),
                    "Your card was declined.",
                ),
                "pm_card_chargeDeclinedIncorrectCvc" => card_error(
                    "incorrect_cvc",
                    None,
                    "Your card's security code is incorrect.",
                ),
                "pm_card_chargeDeclinedExpiredCard" => {
                    card_error("expired_card", None, "Your card has expired.")
                }
                "pm_card_chargeDeclinedLostCard" => card_error(
                    "card_declined",
                    Some("lost_card"),
                    "Your card was declined.",
                ),
                "pm_card_authenticationRequired" => intent("pi_3ds", "requires_action", form),
                "pm_card_processing" => intent("pi_processing", "processing", form),
                "pm_card_serverError" => stripe_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "type": "api_error" }),
                ),
                "pm_card_rateLimited" => stripe_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({ "type": "invalid_request_error", "code": "rate_limit" }),
                ),
                "pm_card_garbage" => (StatusCode::OK, "<html>not json</html>".to_owned()),
                "pm_doesNotExist" => stripe_error(
                    StatusCode::BAD_REQUEST,
                    json!({
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "param": "payment_method",
                        "message": "No such PaymentMethod: 'pm_doesNotExist'",
                    }),
                ),
                _ => {
                    let mut intents = fake.intents.lock().unwrap();
                    let id = format!("pi_fake_{}", intents.len() + 1);
                    intents.push(id.clone());
                    intent(&id, "succeeded", form)
                }
            }
        },
    )
    .await
}

async fn refunds(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    guarded(&fake, "/v1/refunds", &headers, form, |fake, form| {
        let intent = form.get("payment_intent").cloned().unwrap_or_default();
        if !fake.intents.lock().unwrap().contains(&intent) {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                json!({
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "param": "payment_intent",
                    "message": format!("No such payment_intent: '{intent}'"),
                }),
            );
        }
        let n = fake.answers.lock().unwrap().len();
        let body =
            json!({ "id": format!("re_fake_{n}"), "object": "refund", "status": "succeeded" });
        (StatusCode::OK, body.to_string())
    })
    .await
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": { "type": "invalid_request_error" } })),
    )
}

/// Starts the fake on a free port; returns it and its base URL.
async fn fake_stripe() -> (Fake, String) {
    let fake = Fake::default();
    let app = Router::new()
        .route("/v1/payment_intents", post(payment_intents))
        .route("/v1/refunds", post(refunds))
        .fallback(not_found)
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, format!("http://{addr}"))
}

fn gateway(base_url: &str, api_key: &str) -> StripeGateway {
    let mut config = StripeConfig::new(Secret::new(api_key), Secret::new("whsec_fake"));
    config.base_url = base_url.to_owned();
    config.request_timeout = Duration::from_millis(500);
    StripeGateway::new(config).unwrap()
}

fn charge(method: &str, key: &str) -> ChargeRequest {
    ChargeRequest {
        payment_id: PaymentId::derived(&["payment", key]),
        order_id: OrderId::derived(&["order", key]),
        amount: Money::new(2_000, Currency::USD),
        payment_method: PaymentMethod::parse(method).unwrap(),
        idempotency_key: key.to_owned(),
    }
}

#[tokio::test]
async fn a_successful_charge_sends_what_stripe_needs_and_is_captured() {
    let (fake, base) = fake_stripe().await;
    let stripe = gateway(&base, API_KEY);
    assert_eq!(stripe.name(), "stripe");
    let request = charge("pm_card_visa", "checkout-1");
    let outcome = stripe.charge(&request).await.unwrap();
    assert_eq!(
        outcome,
        ChargeOutcome::Captured {
            reference: "pi_fake_1".into()
        }
    );

    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    let Seen {
        path,
        idempotency_key,
        form,
    } = &seen[0];
    assert_eq!(*path, "/v1/payment_intents");
    assert_eq!(idempotency_key, "checkout-1");
    let expected: HashMap<String, String> = [
        ("amount", "2000".to_owned()),
        ("currency", "usd".to_owned()),
        ("payment_method", "pm_card_visa".to_owned()),
        ("confirm", "true".to_owned()),
        ("automatic_payment_methods[enabled]", "true".to_owned()),
        (
            "automatic_payment_methods[allow_redirects]",
            "never".to_owned(),
        ),
        ("metadata[order_id]", request.order_id.to_string()),
        ("metadata[payment_id]", request.payment_id.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(form, &expected);
}

#[tokio::test]
async fn a_retried_charge_is_replayed_under_its_idempotency_key() {
    let (fake, base) = fake_stripe().await;
    let stripe = gateway(&base, API_KEY);
    let first = stripe
        .charge(&charge("pm_card_visa", "same"))
        .await
        .unwrap();
    let again = stripe
        .charge(&charge("pm_card_visa", "same"))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(
        fake.intents.lock().unwrap().len(),
        1,
        "one payment intent was created"
    );
    assert!(fake.seen().iter().all(|s| s.idempotency_key == "same"));
}

#[tokio::test]
async fn card_errors_are_failed_charges_with_their_reason() {
    use PaymentFailureReason::*;
    let (_fake, base) = fake_stripe().await;
    let stripe = gateway(&base, API_KEY);
    let cases = [
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            InsufficientFunds,
            "Your card has insufficient funds.",
        ),
        (
            "pm_card_chargeDeclined",
            Declined,
            "Your card was declined.",
        ),
        (
            "pm_card_chargeDeclinedLostCard",
            Declined,
            "Your card was declined.",
        ),
        (
            "pm_card_chargeDeclinedIncorrectCvc",
            InvalidPaymentDetails,
            "Your card's security code is incorrect.",
        ),
        (
            "pm_card_chargeDeclinedExpiredCard",
            InvalidPaymentDetails,
            "Your card has expired.",
        ),
        (
            "pm_doesNotExist",
            InvalidPaymentDetails,
            "No such PaymentMethod: 'pm_doesNotExist'",
        ),
    ];
    for (method, reason, message) in cases {
        let outcome = stripe.charge(&charge(method, method)).await.unwrap();
        assert_eq!(
            outcome,
            ChargeOutcome::Failed {
                reason,
                message: message.into()
            },
            "{method}"
        );
    }
}

#[tokio::test]
async fn a_card_that_needs_authentication_is_declined() {
    let (_fake, base) = fake_stripe().await;
    let stripe = gateway(&base, API_KEY);
    let outcome = stripe
        .charge(&charge("pm_card_authenticationRequired", "3ds"))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ChargeOutcome::Failed {
            reason: PaymentFailureReason::Declined,
            message: "authentication required".into()
        }
    );
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retryable() {
    let (_fake, base) = fake_stripe().await;
    let stripe = gateway(&base, API_KEY);
    for method in [
        "pm_card_serverError",
        "pm_card_rateLimited",
        "pm_card_processing",
        "pm_card_garbage",
    ] {
        let err = stripe.charge(&charge(method, method)).await.unwrap_err();
        assert!(
            matches!(err, GatewayError::Unavailable(_)),
            "{method}: {err:?}"
        );
        assert!(err.is_retryable(), "{method}");
    }
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let (_fake, base) = fake_stripe().await;
    let stripe = gateway(&base, API_KEY);
    let started = Instant::now();
    let err = stripe
        .charge(&charge("pm_card_slow", "slow"))
        .await
        .unwrap_err();
    assert_eq!(err, GatewayError::Timeout);
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the client gave up at its own timeout"
    );
}

#[tokio::test]
async fn an_unreachable_stripe_is_unavailable() {
    // A port that was free a moment ago and has nobody listening now.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let stripe = gateway(&format!("http://{addr}"), API_KEY);
    let err = stripe
        .charge(&charge("pm_card_visa", "nobody"))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_wrong_api_key_is_rejected_and_never_echoed() {
    let (fake, base) = fake_stripe().await;
    let stripe = gateway(&base, "sk_test_wrong_secret_value");
    let err = stripe
        .charge(&charge("pm_card_visa", "wrong-key"))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Rejected(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        !err.to_string().contains("sk_test_wrong_secret_value"),
        "{err}"
    );
    assert!(
        fake.seen().is_empty(),
        "the fake refused it before anything else"
    );
    let debug = format!("{:?}", stripe.config());
    assert!(!debug.contains("sk_test_wrong_secret_value"), "{debug}");
    assert!(!debug.contains("whsec_fake"), "{debug}");
}

#[tokio::test]
async fn refunds_go_to_the_payment_intent_under_their_key() {
    let (fake, base) = fake_stripe().await;
    let stripe = gateway(&base, API_KEY);
    let ChargeOutcome::Captured { reference } = stripe
        .charge(&charge("pm_card_visa", "to-refund"))
        .await
        .unwrap()
    else {
        panic!("captured");
    };
    let request = RefundRequest {
        payment_id: PaymentId::derived(&["payment", "to-refund"]),
        gateway_reference: reference.clone(),
        amount: Money::new(750, Currency::USD),
        idempotency_key: "refund-1".into(),
    };
    let first = stripe.refund(&request).await.unwrap();
    assert!(first.reference.starts_with("re_fake_"), "{first:?}");
    assert_eq!(
        stripe.refund(&request).await.unwrap(),
        first,
        "replayed under its key"
    );
    let refunds: Vec<Seen> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path == "/v1/refunds")
        .collect();
    assert_eq!(refunds.len(), 2);
    assert_eq!(refunds[0].idempotency_key, "refund-1");
    assert_eq!(refunds[0].form.get("payment_intent"), Some(&reference));
    assert_eq!(
        refunds[0].form.get("amount").map(String::as_str),
        Some("750")
    );

    let unknown = RefundRequest {
        gateway_reference: "pi_unknown".into(),
        idempotency_key: "refund-2".into(),
        ..request
    };
    let err = stripe.refund(&unknown).await.unwrap_err();
    assert!(
        matches!(err, GatewayError::Rejected(ref m) if m.contains("pi_unknown")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}
