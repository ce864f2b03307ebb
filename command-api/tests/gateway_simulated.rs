//! The simulated payment gateway against a real Postgres (a fresh database per test).

use std::sync::Arc;
use std::time::{Duration, Instant};

use purser_command_api::gateway::{
    ChargeOutcome, ChargeRequest, GatewayConfig, GatewayError, PaymentGateway, RefundRequest,
    SimulatedGateway, SimulatedGatewayConfig, build,
};
use purser_domain::payment::{PaymentFailureReason, PaymentMethod};
use purser_domain::{Currency, Money, OrderId, PaymentId};
use purser_testkit::TestDb;
use sqlx::PgPool;

/// Timeouts wait this long in tests: long enough to measure, short enough not to slow the suite.
const DELAY: Duration = Duration::from_millis(60);

fn config(timeouts_before_success: Option<u32>) -> SimulatedGatewayConfig {
    SimulatedGatewayConfig {
        timeout_delay: DELAY,
        timeouts_before_success,
    }
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

fn refund(reference: &str, minor: i64, key: &str) -> RefundRequest {
    RefundRequest {
        payment_id: PaymentId::derived(&["payment", "refunded"]),
        gateway_reference: reference.to_owned(),
        amount: Money::new(minor, Currency::USD),
        idempotency_key: key.to_owned(),
    }
}

/// (outcome, message, reference, attempts) of the charge under `key`.
async fn row(pool: &PgPool, key: &str) -> (String, Option<String>, String, i32) {
    sqlx::query_as(
        "select outcome, message, reference, attempts from gateway_sim.charges
         where idempotency_key = $1",
    )
    .bind(key)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[derive(Debug, PartialEq)]
enum Expect {
    Captured,
    Failed(PaymentFailureReason),
    Timeout,
}

#[tokio::test]
async fn every_test_card_has_its_outcome() {
    use PaymentFailureReason::*;
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let gateway = SimulatedGateway::new(pool.clone(), config(Some(2)));
    let cases = [
        ("pm_card_visa", Expect::Captured),
        ("4242 4242 4242 4242", Expect::Captured),
        ("5555 5555 5555 4444", Expect::Captured),
        ("pm_card_mastercard", Expect::Captured),
        ("pm_1NotATestCard", Expect::Captured),
        ("tok_visa", Expect::Captured),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            Expect::Failed(InsufficientFunds),
        ),
        ("4000000000009995", Expect::Failed(InsufficientFunds)),
        (
            "tok_chargeDeclinedInsufficientFunds",
            Expect::Failed(InsufficientFunds),
        ),
        ("pm_card_chargeDeclined", Expect::Failed(Declined)),
        ("4000 0000 0000 0002", Expect::Failed(Declined)),
        ("pm_card_chargeDeclinedLostCard", Expect::Failed(Declined)),
        ("4000000000009987", Expect::Failed(Declined)),
        ("pm_card_chargeDeclinedStolenCard", Expect::Failed(Declined)),
        ("4000000000009979", Expect::Failed(Declined)),
        ("pm_card_chargeDeclinedFraudulent", Expect::Failed(Declined)),
        ("4100000000000019", Expect::Failed(Declined)),
        (
            "pm_card_chargeDeclinedIncorrectCvc",
            Expect::Failed(InvalidPaymentDetails),
        ),
        ("4000000000000127", Expect::Failed(InvalidPaymentDetails)),
        (
            "pm_card_chargeDeclinedExpiredCard",
            Expect::Failed(InvalidPaymentDetails),
        ),
        ("4000-0000-0000-0069", Expect::Failed(InvalidPaymentDetails)),
        ("pm_card_timeout", Expect::Timeout),
        ("pm_card_chargeDeclinedProcessingError", Expect::Timeout),
        ("4000000000000119", Expect::Timeout),
        ("pm_card_timeoutThenSucceed", Expect::Timeout),
        ("4000000000007775", Expect::Timeout),
    ];
    for (i, (method, expected)) in cases.iter().enumerate() {
        let key = format!("card-{i}");
        let result = gateway.charge(&charge(method, &key)).await;
        let got = match &result {
            Ok(ChargeOutcome::Captured { reference }) => {
                assert_eq!(reference, &SimulatedGateway::charge_reference(&key));
                assert!(reference.starts_with("sim_ch_"), "{reference}");
                Expect::Captured
            }
            Ok(ChargeOutcome::Failed { reason, message }) => {
                assert!(!message.is_empty());
                Expect::Failed(*reason)
            }
            Err(GatewayError::Timeout) => Expect::Timeout,
            Err(other) => panic!("{method}: unexpected error {other}"),
        };
        assert_eq!(&got, expected, "{method}");
        let (outcome, _, _, attempts) = row(&pool, &key).await;
        assert_eq!(attempts, 1);
        let stored = match expected {
            Expect::Captured => "captured",
            Expect::Failed(reason) => reason.code(),
            Expect::Timeout => "timeout",
        };
        assert_eq!(outcome, stored, "{method}");
    }
    // Nothing anywhere holds a card number: only tokens are stored.
    let pans = count(
        &pool,
        "select count(*) from gateway_sim.charges where payment_method ~ '[0-9]{12}'",
    )
    .await;
    assert_eq!(pans, 0);
}

#[tokio::test]
async fn a_retried_charge_returns_the_first_outcome_and_charges_once() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let gateway = SimulatedGateway::new(pool.clone(), config(Some(2)));
    let first = gateway
        .charge(&charge("pm_card_visa", "key-1"))
        .await
        .unwrap();
    let again = gateway
        .charge(&charge("pm_card_visa", "key-1"))
        .await
        .unwrap();
    assert_eq!(first, again);
    let declined = gateway
        .charge(&charge("pm_card_chargeDeclined", "key-2"))
        .await
        .unwrap();
    assert_eq!(
        gateway
            .charge(&charge("pm_card_chargeDeclined", "key-2"))
            .await
            .unwrap(),
        declined
    );
    assert!(matches!(
        declined,
        ChargeOutcome::Failed {
            reason: PaymentFailureReason::Declined,
            ..
        }
    ));
    assert_eq!(
        count(&pool, "select count(*) from gateway_sim.charges").await,
        2
    );
    assert_eq!(
        row(&pool, "key-1").await.3,
        2,
        "both requests are counted as attempts"
    );
    assert_eq!(
        count(
            &pool,
            "select count(*) from gateway_sim.charges where outcome = 'captured'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn concurrent_charges_with_one_key_charge_once() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let gateway = Arc::new(SimulatedGateway::new(pool.clone(), config(Some(2))));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let gateway = gateway.clone();
            tokio::spawn(async move { gateway.charge(&charge("pm_card_visa", "same-key")).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap());
    }
    let expected = ChargeOutcome::Captured {
        reference: SimulatedGateway::charge_reference("same-key"),
    };
    assert!(outcomes.iter().all(|o| *o == expected), "{outcomes:?}");
    assert_eq!(
        count(&pool, "select count(*) from gateway_sim.charges").await,
        1
    );
    assert_eq!(row(&pool, "same-key").await.3, 10);
}

#[tokio::test]
async fn a_key_reused_for_a_different_charge_is_rejected() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let gateway = SimulatedGateway::new(pool.clone(), config(Some(2)));
    gateway
        .charge(&charge("pm_card_visa", "reused"))
        .await
        .unwrap();
    let mut other = charge("pm_card_visa", "reused");
    other.amount = Money::new(2_001, Currency::USD);
    let err = gateway.charge(&other).await.unwrap_err();
    assert!(matches!(err, GatewayError::Rejected(_)), "{err:?}");
    assert!(!err.is_retryable());
    let other_card = charge("pm_card_chargeDeclined", "reused");
    assert!(matches!(
        gateway.charge(&other_card).await,
        Err(GatewayError::Rejected(_))
    ));
    // The original charge is untouched.
    let (outcome, _, _, attempts) = row(&pool, "reused").await;
    assert_eq!((outcome.as_str(), attempts), ("captured", 1));
}

#[tokio::test]
async fn the_timeout_card_waits_then_times_out_on_every_attempt() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let gateway = SimulatedGateway::new(pool.clone(), config(Some(2)));
    for attempt in 1..=3 {
        let started = Instant::now();
        let err = gateway
            .charge(&charge("pm_card_timeout", "slow"))
            .await
            .unwrap_err();
        assert_eq!(err, GatewayError::Timeout);
        assert!(err.is_retryable());
        assert!(started.elapsed() >= DELAY, "the timeout waits first");
        let (outcome, _, _, attempts) = row(&pool, "slow").await;
        assert_eq!((outcome.as_str(), attempts), ("timeout", attempt));
    }
}

#[tokio::test]
async fn the_timeout_then_succeed_card_times_out_n_times_then_is_captured() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let gateway = SimulatedGateway::new(pool.clone(), config(Some(2)));
    let request = charge("pm_card_timeoutThenSucceed", "flaky");
    assert_eq!(gateway.charge(&request).await, Err(GatewayError::Timeout));
    assert_eq!(gateway.charge(&request).await, Err(GatewayError::Timeout));
    let captured = gateway.charge(&request).await.unwrap();
    assert_eq!(
        captured,
        ChargeOutcome::Captured {
            reference: SimulatedGateway::charge_reference("flaky")
        }
    );
    // Once decided, the outcome stays.
    assert_eq!(gateway.charge(&request).await.unwrap(), captured);
    let (outcome, _, _, attempts) = row(&pool, "flaky").await;
    assert_eq!((outcome.as_str(), attempts), ("captured", 4));
    // The count is per key: another key starts again from zero.
    let other = charge("4000000000007775", "flaky-2");
    assert_eq!(gateway.charge(&other).await, Err(GatewayError::Timeout));

    // Zero timeouts: captured at once. None: never succeeds.
    let eager = SimulatedGateway::new(pool.clone(), config(Some(0)));
    assert!(matches!(
        eager
            .charge(&charge("pm_card_timeoutThenSucceed", "eager"))
            .await,
        Ok(ChargeOutcome::Captured { .. })
    ));
    let never = SimulatedGateway::new(pool.clone(), config(None));
    for _ in 0..3 {
        assert_eq!(
            never
                .charge(&charge("pm_card_timeoutThenSucceed", "never"))
                .await,
            Err(GatewayError::Timeout)
        );
    }
}

#[tokio::test]
async fn refunds_are_idempotent_and_never_exceed_the_capture() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let gateway = SimulatedGateway::new(pool.clone(), config(Some(2)));
    let ChargeOutcome::Captured { reference } = gateway
        .charge(&charge("pm_card_visa", "paid"))
        .await
        .unwrap()
    else {
        panic!("the visa card is captured");
    };
    let first = gateway
        .refund(&refund(&reference, 500, "refund-1"))
        .await
        .unwrap();
    assert_eq!(
        first.reference,
        SimulatedGateway::refund_reference("refund-1")
    );
    assert!(first.reference.starts_with("sim_re_"));
    assert_eq!(
        gateway
            .refund(&refund(&reference, 500, "refund-1"))
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        count(&pool, "select count(*) from gateway_sim.refunds").await,
        1
    );

    // The same key for a different refund is refused, not silently answered.
    assert!(matches!(
        gateway.refund(&refund(&reference, 600, "refund-1")).await,
        Err(GatewayError::Rejected(_))
    ));
    // 1500 of 2000 are left.
    let too_much = gateway
        .refund(&refund(&reference, 1_501, "refund-2"))
        .await
        .unwrap_err();
    assert!(
        matches!(too_much, GatewayError::Rejected(ref m) if m.contains("1500")),
        "{too_much}"
    );
    gateway
        .refund(&refund(&reference, 1_500, "refund-2"))
        .await
        .unwrap();
    assert!(matches!(
        gateway.refund(&refund(&reference, 1, "refund-3")).await,
        Err(GatewayError::Rejected(_))
    ));
    let mut euros = refund(&reference, 1, "refund-4");
    euros.amount = Money::new(1, Currency::EUR);
    assert!(matches!(
        gateway.refund(&euros).await,
        Err(GatewayError::Rejected(_))
    ));
    assert!(matches!(
        gateway.refund(&refund(&reference, 0, "refund-5")).await,
        Err(GatewayError::Rejected(_))
    ));
    assert_eq!(
        count(
            &pool,
            "select coalesce(sum(amount_minor), 0)::bigint from gateway_sim.refunds"
        )
        .await,
        2_000
    );
}

#[tokio::test]
async fn unknown_or_failed_charges_cannot_be_refunded() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let gateway = SimulatedGateway::new(pool.clone(), config(Some(2)));
    let unknown = gateway
        .refund(&refund("sim_ch_doesnotexist", 100, "r-unknown"))
        .await;
    assert!(
        matches!(unknown, Err(GatewayError::Rejected(_))),
        "{unknown:?}"
    );
    gateway
        .charge(&charge("pm_card_chargeDeclined", "declined"))
        .await
        .unwrap();
    let declined = SimulatedGateway::charge_reference("declined");
    assert!(matches!(
        gateway.refund(&refund(&declined, 100, "r-declined")).await,
        Err(GatewayError::Rejected(_))
    ));
    let _ = gateway.charge(&charge("pm_card_timeout", "pending")).await;
    let pending = SimulatedGateway::charge_reference("pending");
    assert!(matches!(
        gateway.refund(&refund(&pending, 100, "r-pending")).await,
        Err(GatewayError::Rejected(_))
    ));
    assert_eq!(
        count(&pool, "select count(*) from gateway_sim.refunds").await,
        0
    );
}

#[tokio::test]
async fn concurrent_refunds_with_different_keys_cannot_over_refund() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let gateway = Arc::new(SimulatedGateway::new(pool.clone(), config(Some(2))));
    let ChargeOutcome::Captured { reference } = gateway
        .charge(&charge("pm_card_visa", "paid"))
        .await
        .unwrap()
    else {
        panic!("the visa card is captured");
    };
    // Eight refunds of 800 each against 2000: exactly two fit.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (gateway, reference) = (gateway.clone(), reference.clone());
            tokio::spawn(async move {
                gateway
                    .refund(&refund(&reference, 800, &format!("r-{i}")))
                    .await
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(GatewayError::Rejected(_)) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted, 2);
    assert_eq!(
        count(&pool, "select count(*) from gateway_sim.refunds").await,
        2
    );
}

#[tokio::test]
async fn build_assembles_the_simulated_gateway_by_default() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let config = GatewayConfig::from_lookup(|_| None).unwrap();
    let gateway = build(config, pool.clone()).unwrap();
    assert_eq!(gateway.name(), "simulated");
    assert!(matches!(
        gateway.charge(&charge("pm_card_visa", "built")).await,
        Ok(ChargeOutcome::Captured { .. })
    ));
    assert_eq!(
        count(&pool, "select count(*) from gateway_sim.charges").await,
        1
    );
}

#[tokio::test]
async fn bad_idempotency_keys_are_rejected() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let gateway = SimulatedGateway::new(pool.clone(), config(Some(2)));
    for key in [String::new(), "k".repeat(256)] {
        let err = gateway
            .charge(&charge("pm_card_visa", &key))
            .await
            .unwrap_err();
        assert!(matches!(err, GatewayError::Rejected(_)), "{err:?}");
    }
    assert_eq!(
        count(&pool, "select count(*) from gateway_sim.charges").await,
        0
    );
}
