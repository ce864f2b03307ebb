//! Stripe webhook verification and parsing: pure functions, no network, no database.

use std::time::Duration;

use chrono::{DateTime, Utc};
use purser_command_api::gateway::stripe_webhook::{
    DEFAULT_TOLERANCE, StripeEventKind, WebhookError, parse_event, signature_header,
    verify_signature,
};
use purser_domain::payment::PaymentFailureReason;
use purser_domain::{Currency, Money, OrderId, PaymentId};

const SECRET: &str = "whsec_test_secret";

fn at(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).unwrap()
}

#[test]
fn a_signature_computed_independently_verifies() {
    // Computed with Python's hmac module, not with this crate:
    // hmac.new(b"whsec_test_secret", b"1700000000." + payload, hashlib.sha256).hexdigest()
    let payload = br#"{"id":"evt_test_webhook","object":"event"}"#;
    let header = "t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";
    assert_eq!(
        verify_signature(
            payload,
            header,
            SECRET,
            at(1_700_000_010),
            DEFAULT_TOLERANCE
        ),
        Ok(())
    );
    assert_eq!(signature_header(payload, SECRET, 1_700_000_000), header);
}

#[test]
fn a_correctly_signed_payload_verifies() {
    let payload = br#"{"id":"evt_1"}"#;
    let header = signature_header(payload, SECRET, 1_700_000_000);
    assert_eq!(
        verify_signature(
            payload,
            &header,
            SECRET,
            at(1_700_000_000),
            DEFAULT_TOLERANCE
        ),
        Ok(())
    );
}

#[test]
fn the_wrong_secret_is_a_bad_signature() {
    let payload = br#"{"id":"evt_1"}"#;
    let header = signature_header(payload, "whsec_someone_else", 1_700_000_000);
    assert_eq!(
        verify_signature(
            payload,
            &header,
            SECRET,
            at(1_700_000_000),
            DEFAULT_TOLERANCE
        ),
        Err(WebhookError::BadSignature)
    );
    assert_eq!(
        verify_signature(payload, &header, "", at(1_700_000_000), DEFAULT_TOLERANCE),
        Err(WebhookError::BadSignature),
        "an empty secret verifies nothing"
    );
}

#[test]
fn a_tampered_payload_is_a_bad_signature() {
    let payload = br#"{"id":"evt_1","amount":2000}"#;
    let header = signature_header(payload, SECRET, 1_700_000_000);
    let tampered = br#"{"id":"evt_1","amount":2001}"#;
    assert_eq!(
        verify_signature(
            tampered,
            &header,
            SECRET,
            at(1_700_000_000),
            DEFAULT_TOLERANCE
        ),
        Err(WebhookError::BadSignature)
    );
    // Moving the signature to another timestamp breaks it too: the timestamp is signed.
    let moved = header.replace("t=1700000000", "t=1700000001");
    assert_eq!(
        verify_signature(
            payload,
            &moved,
            SECRET,
            at(1_700_000_000),
            DEFAULT_TOLERANCE
        ),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn a_timestamp_older_than_the_tolerance_is_stale() {
    let payload = br#"{"id":"evt_1"}"#;
    let header = signature_header(payload, SECRET, 1_700_000_000);
    assert_eq!(
        verify_signature(
            payload,
            &header,
            SECRET,
            at(1_700_000_300),
            DEFAULT_TOLERANCE
        ),
        Ok(()),
        "exactly at the tolerance is still accepted"
    );
    assert_eq!(
        verify_signature(
            payload,
            &header,
            SECRET,
            at(1_700_000_301),
            DEFAULT_TOLERANCE
        ),
        Err(WebhookError::Stale)
    );
    assert_eq!(
        verify_signature(
            payload,
            &header,
            SECRET,
            at(1_700_000_060),
            Duration::from_secs(30)
        ),
        Err(WebhookError::Stale),
        "the tolerance is the caller's"
    );
}

#[test]
fn a_timestamp_in_the_future_beyond_the_tolerance_is_stale() {
    let payload = br#"{"id":"evt_1"}"#;
    let header = signature_header(payload, SECRET, 1_700_000_000);
    assert_eq!(
        verify_signature(
            payload,
            &header,
            SECRET,
            at(1_699_999_700),
            DEFAULT_TOLERANCE
        ),
        Ok(())
    );
    assert_eq!(
        verify_signature(
            payload,
            &header,
            SECRET,
            at(1_699_999_699),
            DEFAULT_TOLERANCE
        ),
        Err(WebhookError::Stale)
    );
}

#[test]
fn a_forged_old_request_is_a_bad_signature_not_stale() {
    let payload = br#"{"id":"evt_1"}"#;
    let header = signature_header(payload, "whsec_forger", 1_600_000_000);
    assert_eq!(
        verify_signature(
            payload,
            &header,
            SECRET,
            at(1_700_000_000),
            DEFAULT_TOLERANCE
        ),
        Err(WebhookError::BadSignature)
    );
}

#[test]
fn malformed_headers_are_malformed() {
    let payload = br#"{"id":"evt_1"}"#;
    let good = signature_header(payload, SECRET, 1_700_000_000);
    let v1 = good.split_once(",v1=").unwrap().1.to_owned();
    let cases = [
        String::new(),
        "garbage".to_owned(),
        format!("v1={v1}"),
        "t=1700000000".to_owned(),
        format!("t=abc,v1={v1}"),
        format!("t=-1700000000,v1={v1}"),
        format!("t=+1700000000,v1={v1}"),
        format!("t=,v1={v1}"),
        format!("t=1700000000,t=1700000000,v1={v1}"),
        format!("t=1700000000,v0={v1}"),
    ];
    for header in cases {
        let result = verify_signature(
            payload,
            &header,
            SECRET,
            at(1_700_000_000),
            DEFAULT_TOLERANCE,
        );
        assert!(
            matches!(result, Err(WebhookError::Malformed(_))),
            "{header:?} gave {result:?}"
        );
    }
}

#[test]
fn one_matching_v1_among_several_is_enough() {
    let payload = br#"{"id":"evt_1"}"#;
    let good = signature_header(payload, SECRET, 1_700_000_000);
    let v1 = good.split_once(",v1=").unwrap().1.to_owned();
    let stale_secret = signature_header(payload, "whsec_rolled_out", 1_700_000_000);
    let other = stale_secret.split_once(",v1=").unwrap().1.to_owned();
    let now = at(1_700_000_000);
    for header in [
        format!("t=1700000000,v1={other},v1={v1}"),
        format!("t=1700000000,v1={v1},v1={other}"),
        format!("t=1700000000, v1=nothex, v0={other}, v1={v1}"),
        format!("v1={v1},t=1700000000,extra=1"),
    ] {
        assert_eq!(
            verify_signature(payload, &header, SECRET, now, DEFAULT_TOLERANCE),
            Ok(()),
            "{header}"
        );
    }
    let none_match = format!("t=1700000000,v1={other},v1=00ff");
    assert_eq!(
        verify_signature(payload, &none_match, SECRET, now, DEFAULT_TOLERANCE),
        Err(WebhookError::BadSignature)
    );
    // An upper-case copy of the right signature is accepted: it is the same bytes.
    let upper = format!("t=1700000000,v1={}", v1.to_ascii_uppercase());
    assert_eq!(
        verify_signature(payload, &upper, SECRET, now, DEFAULT_TOLERANCE),
        Ok(())
    );
}

/// Shape from Stripe's API reference (the Event object wrapping a PaymentIntent), trimmed.
const SUCCEEDED: &str = r#"{
  "id": "evt_3MtwBwLkdIwHu7ix0Yh0hBP3",
  "object": "event",
  "api_version": "2022-11-15",
  "created": 1680064028,
  "data": {
    "object": {
      "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
      "object": "payment_intent",
      "amount": 2000,
      "amount_capturable": 0,
      "amount_received": 2000,
      "capture_method": "automatic",
      "client_secret": "pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_YrKJUKribcBjcG8HVhfZluoGH",
      "confirmation_method": "automatic",
      "created": 1680800504,
      "currency": "usd",
      "customer": null,
      "description": null,
      "last_payment_error": null,
      "latest_charge": "ch_3MtwBwLkdIwHu7ix2oB5xVpK",
      "livemode": false,
      "metadata": {
        "order_id": "0190f0b4-2b6e-7c3a-9d4e-1f2a3b4c5d6e",
        "payment_id": "0190f0b4-2b6e-7c3a-9d4e-6f5e4d3c2b1a"
      },
      "payment_method": "pm_1MtwBwLkdIwHu7ixU1Zl0fKa",
      "payment_method_types": ["card"],
      "status": "succeeded"
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": { "id": "req_0SxPXuQ9j4TyIn", "idempotency_key": "payment-0190f0b4" },
  "type": "payment_intent.succeeded"
}"#;

/// Shape from Stripe's documentation of `payment_intent.payment_failed`, trimmed.
const FAILED: &str = r#"{
  "id": "evt_1GqIC8HYgolSBA35pDSkAYcb",
  "object": "event",
  "api_version": "2020-03-02",
  "created": 1591706376,
  "data": {
    "object": {
      "id": "pi_1GqIC6HYgolSBA35aFm2JfYg",
      "object": "payment_intent",
      "amount": 4599,
      "currency": "eur",
      "last_payment_error": {
        "charge": "ch_1GqIC7HYgolSBA35VFXbqSfS",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "doc_url": "https://stripe.com/docs/error-codes/card-declined",
        "message": "Your card has insufficient funds.",
        "type": "card_error"
      },
      "metadata": {
        "order_id": "0190f0b4-2b6e-7c3a-9d4e-1f2a3b4c5d6e",
        "payment_id": "0190f0b4-2b6e-7c3a-9d4e-6f5e4d3c2b1a"
      },
      "status": "requires_payment_method"
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": { "id": "req_lsJxKs5oHaMsjx", "idempotency_key": null },
  "type": "payment_intent.payment_failed"
}"#;

fn order_id() -> OrderId {
    "0190f0b4-2b6e-7c3a-9d4e-1f2a3b4c5d6e".parse().unwrap()
}

fn payment_id() -> PaymentId {
    "0190f0b4-2b6e-7c3a-9d4e-6f5e4d3c2b1a".parse().unwrap()
}

#[test]
fn parses_payment_intent_succeeded() {
    let event = parse_event(SUCCEEDED.as_bytes()).unwrap();
    assert_eq!(event.id, "evt_3MtwBwLkdIwHu7ix0Yh0hBP3");
    assert_eq!(event.created, Some(at(1_680_064_028)));
    assert!(!event.livemode);
    let StripeEventKind::PaymentIntentSucceeded(intent) = event.kind else {
        panic!("expected a succeeded payment intent, got {:?}", event.kind);
    };
    assert_eq!(intent.id, "pi_3MtwBwLkdIwHu7ix28a3tqPa");
    assert_eq!(intent.amount_minor, 2_000);
    assert_eq!(intent.currency, "USD");
    assert_eq!(intent.amount(), Some(Money::new(2_000, Currency::USD)));
    assert_eq!(intent.order_id, Some(order_id()));
    assert_eq!(intent.payment_id, Some(payment_id()));
}

#[test]
fn parses_payment_intent_payment_failed_with_its_reason() {
    let event = parse_event(FAILED.as_bytes()).unwrap();
    assert_eq!(event.id, "evt_1GqIC8HYgolSBA35pDSkAYcb");
    let StripeEventKind::PaymentIntentFailed {
        intent,
        reason,
        decline_code,
        message,
    } = event.kind
    else {
        panic!("expected a failed payment intent, got {:?}", event.kind);
    };
    assert_eq!(intent.id, "pi_1GqIC6HYgolSBA35aFm2JfYg");
    assert_eq!(intent.amount(), Some(Money::new(4_599, Currency::EUR)));
    assert_eq!(intent.payment_id, Some(payment_id()));
    assert_eq!(reason, PaymentFailureReason::InsufficientFunds);
    assert_eq!(decline_code.as_deref(), Some("insufficient_funds"));
    assert_eq!(message, "Your card has insufficient funds.");

    let cvc = FAILED
        .replace(r#""code": "card_declined""#, r#""code": "incorrect_cvc""#)
        .replace(r#""decline_code": "insufficient_funds","#, "");
    let StripeEventKind::PaymentIntentFailed {
        reason,
        decline_code,
        ..
    } = parse_event(cvc.as_bytes()).unwrap().kind
    else {
        panic!("expected a failed payment intent");
    };
    assert_eq!(reason, PaymentFailureReason::InvalidPaymentDetails);
    assert_eq!(decline_code, None);

    let generic = FAILED.replace("insufficient_funds", "generic_decline");
    let StripeEventKind::PaymentIntentFailed { reason, .. } =
        parse_event(generic.as_bytes()).unwrap().kind
    else {
        panic!("expected a failed payment intent");
    };
    assert_eq!(reason, PaymentFailureReason::Declined);
}

#[test]
fn other_event_types_are_other() {
    let payload = r#"{"id":"evt_1","object":"event","type":"charge.refunded","created":1,
                      "livemode":true,"data":{"object":{"id":"ch_1","object":"charge"}}}"#;
    let event = parse_event(payload.as_bytes()).unwrap();
    assert_eq!(event.id, "evt_1");
    assert!(event.livemode);
    assert_eq!(
        event.kind,
        StripeEventKind::Other {
            event_type: "charge.refunded".into()
        }
    );
}

#[test]
fn intents_made_elsewhere_have_no_purser_ids() {
    let foreign = SUCCEEDED
        .replace("0190f0b4-2b6e-7c3a-9d4e-1f2a3b4c5d6e", "order-42")
        .replace(
            r#""payment_id": "0190f0b4-2b6e-7c3a-9d4e-6f5e4d3c2b1a""#,
            r#""other": "x""#,
        );
    let StripeEventKind::PaymentIntentSucceeded(intent) =
        parse_event(foreign.as_bytes()).unwrap().kind
    else {
        panic!("expected a succeeded payment intent");
    };
    assert_eq!(intent.order_id, None);
    assert_eq!(intent.payment_id, None);
}

#[test]
fn unreadable_payloads_are_payload_errors() {
    for payload in [
        "",
        "not json",
        r#"{"object":"event"}"#,
        r#"{"id":"nope_1","type":"payment_intent.succeeded","data":{"object":{}}}"#,
        r#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}"#,
    ] {
        let result = parse_event(payload.as_bytes());
        assert!(
            matches!(result, Err(WebhookError::Payload(_))),
            "{payload:?} gave {result:?}"
        );
    }
}
