//! The checkout's behaviour, event by event: given a history, when an event arrives, then
//! these actions.

use chrono::Duration;
use proptest::prelude::*;

use super::CheckoutAction as A;
use super::*;
use crate::customer::CustomerEvent;
use crate::inventory::{InventoryEvent, ReleaseReason};
use crate::license::{LicenseEvent, LicensePoolEvent};
use crate::notification::NotificationKind;
use crate::order::{CancelledBy, OrderEvent, OrderLine};
use crate::payment::{PaymentEvent, PaymentFailureReason, PaymentMethod};
use crate::product::{DigitalTerms, LicenseSource};
use crate::test_support::{email, qty, sku, t, usd};
use crate::{AnyEvent, CustomerId, LicenseId, NotificationId, OrderId, PaymentId, ReservationId};

fn oid() -> OrderId {
    OrderId::derived(&["checkout-test-order"])
}

fn pid() -> PaymentId {
    CheckoutState::payment_id(oid())
}

fn rid(s: &str) -> ReservationId {
    CheckoutState::reservation_id(oid(), &sku(s))
}

fn lid(s: &str) -> LicenseId {
    CheckoutState::license_id(oid(), &sku(s))
}

fn customer() -> CustomerId {
    CustomerId::for_email(&email("ann@example.com"))
}

fn pool() -> DigitalTerms {
    DigitalTerms { license: LicenseSource::Pool, seats: 1, validity_days: Some(365) }
}

fn signed() -> DigitalTerms {
    DigitalTerms { license: LicenseSource::Signed, seats: 5, validity_days: Some(30) }
}

/// `OrderPlaced` for lines of (SKU, quantity, license terms if digital), each at $10.
fn placed(lines: &[(&str, i64, Option<DigitalTerms>)]) -> AnyEvent {
    let lines: Vec<OrderLine> = lines
        .iter()
        .map(|(s, n, d)| OrderLine::new(sku(s), s, qty(*n), usd(1_000), *d).unwrap())
        .collect();
    let total = usd(lines.iter().map(|l| l.line_total.minor).sum());
    OrderEvent::OrderPlaced {
        order_id: oid(),
        customer_id: customer(),
        email: email("ann@example.com"),
        lines,
        total,
        cart_id: None,
        payment_method: PaymentMethod::parse("pm_test").unwrap(),
        shipping_address: None,
        at: t(0),
    }
    .into()
}

fn reserved(s: &str, n: i64) -> AnyEvent {
    let (reservation_id, order_id) = (rid(s), oid());
    let expires_at = t(10);
    InventoryEvent::StockReserved {
        sku: sku(s),
        reservation_id,
        order_id,
        qty: qty(n),
        expires_at,
        at: t(1),
    }
    .into()
}

fn rejected(s: &str, n: i64) -> AnyEvent {
    let (reservation_id, order_id) = (rid(s), oid());
    InventoryEvent::ReservationRejected {
        sku: sku(s),
        reservation_id,
        order_id,
        requested: qty(n),
        available: 0,
        at: t(1),
    }
    .into()
}

fn reservation_confirmed(s: &str, n: i64) -> AnyEvent {
    let (reservation_id, order_id) = (rid(s), oid());
    InventoryEvent::ReservationConfirmed {
        sku: sku(s),
        reservation_id,
        order_id,
        qty: qty(n),
        at: t(4),
    }
    .into()
}

fn reservation_released(s: &str, n: i64, reason: ReleaseReason) -> AnyEvent {
    let (reservation_id, order_id) = (rid(s), oid());
    InventoryEvent::ReservationReleased {
        sku: sku(s),
        reservation_id,
        order_id,
        qty: qty(n),
        reason,
        at: t(11),
    }
    .into()
}

fn intent_created(minor: i64) -> AnyEvent {
    PaymentEvent::PaymentIntentCreated {
        payment_id: pid(),
        order_id: oid(),
        amount: usd(minor),
        payment_method: PaymentMethod::parse("pm_test").unwrap(),
        idempotency_key: format!("checkout-{}-payment", oid()),
        at: t(2),
    }
    .into()
}

fn captured(minor: i64, minute: i64) -> AnyEvent {
    let (payment_id, order_id) = (pid(), oid());
    let gateway_reference = "ch_1".to_owned();
    PaymentEvent::PaymentCaptured {
        payment_id,
        order_id,
        amount: usd(minor),
        gateway_reference,
        at: t(minute),
    }
    .into()
}

fn payment_failed() -> AnyEvent {
    PaymentEvent::PaymentFailed {
        payment_id: pid(),
        order_id: oid(),
        reason: PaymentFailureReason::Declined,
        message: "card declined".into(),
        at: t(3),
    }
    .into()
}

fn payment_refunded(minor: i64, reference: &str) -> AnyEvent {
    PaymentEvent::PaymentRefunded {
        payment_id: pid(),
        order_id: oid(),
        amount: usd(minor),
        reason: "refund".into(),
        refund_reference: reference.into(),
        at: t(20),
    }
    .into()
}

fn provisioned(minute: i64) -> AnyEvent {
    CustomerEvent::AccountProvisioned {
        customer_id: customer(),
        email: email("ann@example.com"),
        order_id: oid(),
        guest: true,
        at: t(minute),
    }
    .into()
}

fn key_allocated(s: &str, key: &str) -> AnyEvent {
    let (license_id, order_id) = (lid(s), oid());
    LicensePoolEvent::LicenseKeyAllocated {
        sku: sku(s),
        license_id,
        order_id,
        key: key.into(),
        at: t(6),
    }
    .into()
}

fn pool_exhausted(s: &str) -> AnyEvent {
    LicensePoolEvent::LicensePoolExhausted {
        sku: sku(s),
        license_id: lid(s),
        order_id: oid(),
        at: t(6),
    }
    .into()
}

fn license_issued(s: &str, terms: DigitalTerms) -> AnyEvent {
    LicenseEvent::LicenseIssued {
        license_id: lid(s),
        sku: sku(s),
        order_id: oid(),
        customer_id: customer(),
        seats: terms.seats,
        key: "KEY".into(),
        expires_at: None,
        at: t(7),
    }
    .into()
}

fn license_revoked(s: &str) -> AnyEvent {
    LicenseEvent::LicenseRevoked {
        license_id: lid(s),
        order_id: oid(),
        reason: "order refunded".into(),
        at: t(21),
    }
    .into()
}

fn order_event(make: impl FnOnce(OrderId) -> OrderEvent) -> AnyEvent {
    make(oid()).into()
}

fn payment_started() -> AnyEvent {
    order_event(|order_id| OrderEvent::OrderPaymentStarted {
        order_id,
        payment_id: pid(),
        at: t(2),
    })
}

fn order_paid(minor: i64) -> AnyEvent {
    order_event(|order_id| OrderEvent::OrderPaid {
        order_id,
        payment_id: pid(),
        gateway_reference: "ch_1".into(),
        amount: usd(minor),
        at: t(5),
    })
}

fn order_confirmed() -> AnyEvent {
    order_event(|order_id| OrderEvent::OrderConfirmed { order_id, at: t(5) })
}

fn license_attached_to_order(s: &str) -> AnyEvent {
    order_event(|order_id| OrderEvent::OrderLicenseAttached {
        order_id,
        sku: sku(s),
        license_id: lid(s),
        at: t(8),
    })
}

fn order_cancelled(by: CancelledBy, was_paid: bool) -> AnyEvent {
    let reason = "cancelled".to_owned();
    order_event(|order_id| OrderEvent::OrderCancelled { order_id, reason, by, was_paid, at: t(12) })
}

fn order_refunded(minor: i64, reference: &str) -> AnyEvent {
    order_event(|order_id| OrderEvent::OrderRefunded {
        order_id,
        amount: usd(minor),
        reason: "refund".into(),
        refund_reference: reference.into(),
        at: t(21),
    })
}

fn notify(
    kind: NotificationKind,
    discriminator: &str,
    license_id: Option<LicenseId>,
) -> CheckoutAction {
    let parts = ["checkout", &oid().to_string(), "notification", kind.as_str(), discriminator];
    A::QueueNotification {
        notification_id: NotificationId::derived(&parts),
        kind,
        to: email("ann@example.com"),
        order_id: oid(),
        license_id,
    }
}

fn reserve(s: &str, n: i64) -> CheckoutAction {
    A::ReserveStock {
        sku: sku(s),
        reservation_id: rid(s),
        order_id: oid(),
        qty: qty(n),
        expires_at: t(10),
    }
}

fn release(s: &str, reason: ReleaseReason) -> CheckoutAction {
    A::ReleaseReservation { sku: sku(s), reservation_id: rid(s), reason }
}

fn confirm_reservation(s: &str) -> CheckoutAction {
    A::ConfirmReservation { sku: sku(s), reservation_id: rid(s) }
}

fn request_payment(minor: i64) -> Vec<CheckoutAction> {
    vec![
        A::CreatePayment {
            payment_id: pid(),
            order_id: oid(),
            amount: usd(minor),
            payment_method: PaymentMethod::parse("pm_test").unwrap(),
            idempotency_key: format!("checkout-{}-payment", oid()),
        },
        A::StartOrderPayment { order_id: oid(), payment_id: pid() },
    ]
}

fn mark_paid(minor: i64) -> CheckoutAction {
    A::MarkOrderPaid {
        order_id: oid(),
        payment_id: pid(),
        gateway_reference: "ch_1".into(),
        amount: usd(minor),
    }
}

fn provision() -> CheckoutAction {
    A::ProvisionAccount {
        customer_id: customer(),
        email: email("ann@example.com"),
        order_id: oid(),
    }
}

fn attach(s: &str) -> Vec<CheckoutAction> {
    vec![
        A::AttachLicense { license_id: lid(s), customer_id: customer() },
        A::AttachLicenseToOrder { order_id: oid(), sku: sku(s), license_id: lid(s) },
    ]
}

fn compensation(minor: i64, reason: &str) -> CheckoutAction {
    A::RefundPayment {
        payment_id: pid(),
        amount: usd(minor),
        reason: reason.into(),
        refund_reference: CheckoutState::compensation_reference(oid()),
    }
}

fn mark_refunded(minor: i64, reference: &str) -> CheckoutAction {
    A::MarkOrderRefunded {
        order_id: oid(),
        amount: usd(minor),
        reason: "refund".into(),
        refund_reference: reference.into(),
    }
}

/// Given/when/then for the process manager: `given` folds a history, `when` reacts to one
/// event (then folds it in, as the runner does), `then` asserts the actions.
struct Checkout {
    state: CheckoutState,
    config: CheckoutConfig,
}

fn given(history: impl IntoIterator<Item = AnyEvent>) -> Checkout {
    let state = history.into_iter().fold(CheckoutState::default(), |s, e| evolve(s, &e));
    Checkout { state, config: CheckoutConfig::default() }
}

impl Checkout {
    fn when(&mut self, event: AnyEvent) -> Then {
        let actions = react(&self.state, &event, &self.config);
        self.state = evolve(self.state.clone(), &event);
        Then(actions)
    }
}

struct Then(Vec<CheckoutAction>);

impl Then {
    #[track_caller]
    fn then(self, expected: impl IntoIterator<Item = CheckoutAction>) {
        assert_eq!(self.0, expected.into_iter().collect::<Vec<_>>());
    }

    #[track_caller]
    fn then_nothing(self) {
        assert_eq!(self.0, vec![]);
    }
}

#[test]
fn happy_physical_path() {
    let mut pm = given([]);
    pm.when(placed(&[("LAP", 2, None), ("MOUSE", 1, None)]))
        .then([reserve("LAP", 2), reserve("MOUSE", 1)]);
    pm.when(reserved("LAP", 2)).then_nothing();
    pm.when(reserved("MOUSE", 1)).then(request_payment(3_000));
    pm.when(payment_started()).then_nothing();
    pm.when(intent_created(3_000)).then([A::ChargePayment { payment_id: pid() }]);
    pm.when(captured(3_000, 3)).then([
        confirm_reservation("LAP"),
        confirm_reservation("MOUSE"),
        mark_paid(3_000),
    ]);
    pm.when(reservation_confirmed("LAP", 2)).then_nothing();
    pm.when(order_paid(3_000)).then_nothing();
    pm.when(reservation_confirmed("MOUSE", 1)).then([
        A::ConfirmOrder { order_id: oid() },
        notify(NotificationKind::OrderConfirmed, "", None),
    ]);
    pm.when(order_confirmed()).then_nothing();
    let shipped = order_event(|order_id| OrderEvent::OrderShipped {
        order_id,
        tracking_number: "1Z".into(),
        carrier: "UPS".into(),
        estimated_delivery: None,
        at: t(30),
    });
    pm.when(shipped).then([notify(NotificationKind::Shipped, "", None)]);
}

#[test]
fn digital_order_paid_before_the_account_is_provisioned() {
    let mut pm = given([]);
    let mut first = vec![provision()];
    first.extend(request_payment(1_000));
    pm.when(placed(&[("AV", 1, Some(pool()))])).then(first);
    pm.when(intent_created(1_000)).then([A::ChargePayment { payment_id: pid() }]);
    pm.when(captured(1_000, 3)).then([mark_paid(1_000)]);
    pm.when(order_paid(1_000)).then_nothing();
    pm.when(provisioned(4)).then([A::AllocateLicense {
        sku: sku("AV"),
        license_id: lid("AV"),
        order_id: oid(),
    }]);
    pm.when(key_allocated("AV", "K-1")).then([A::IssueLicense {
        license_id: lid("AV"),
        sku: sku("AV"),
        order_id: oid(),
        customer_id: customer(),
        seats: 1,
        key: "K-1".into(),
        expires_at: Some(t(4) + Duration::days(365)),
    }]);
    pm.when(license_issued("AV", pool())).then(attach("AV"));
    pm.when(license_attached_to_order("AV")).then([
        A::FulfillOrder { order_id: oid() },
        notify(NotificationKind::LicenseReady, "AV", Some(lid("AV"))),
    ]);
}

#[test]
fn digital_order_provisioned_before_payment() {
    let mut pm = given([placed(&[("AV", 1, Some(signed()))]), intent_created(1_000)]);
    pm.when(provisioned(1)).then_nothing();
    pm.when(captured(1_000, 3)).then([
        mark_paid(1_000),
        A::IssueSignedLicense {
            sku: sku("AV"),
            license_id: lid("AV"),
            order_id: oid(),
            customer_id: customer(),
            seats: 5,
            validity_days: Some(30),
            expires_at: Some(t(3) + Duration::days(30)),
        },
    ]);
    pm.when(license_issued("AV", signed())).then(attach("AV"));
    pm.when(license_attached_to_order("AV")).then([
        A::FulfillOrder { order_id: oid() },
        notify(NotificationKind::LicenseReady, "AV", Some(lid("AV"))),
    ]);
}

#[test]
fn mixed_order_confirms_the_physical_half_and_fulfils_the_digital_half() {
    let mut pm = given([]);
    pm.when(placed(&[("LAP", 1, None), ("AV", 1, Some(signed()))]))
        .then([reserve("LAP", 1), provision()]);
    pm.when(provisioned(1)).then_nothing();
    pm.when(reserved("LAP", 1)).then(request_payment(2_000));
    pm.when(intent_created(2_000)).then([A::ChargePayment { payment_id: pid() }]);
    let actions = pm.when(captured(2_000, 3)).0;
    assert_eq!(actions[..2], [confirm_reservation("LAP"), mark_paid(2_000)]);
    assert!(matches!(actions[2], A::IssueSignedLicense { .. }) && actions.len() == 3);
    pm.when(reservation_confirmed("LAP", 1)).then_nothing();
    pm.when(order_paid(2_000)).then([
        A::ConfirmOrder { order_id: oid() },
        notify(NotificationKind::OrderConfirmed, "", None),
    ]);
    pm.when(order_confirmed()).then_nothing();
    pm.when(license_issued("AV", signed())).then(attach("AV"));
    pm.when(license_attached_to_order("AV")).then([
        A::FulfillOrder { order_id: oid() },
        notify(NotificationKind::LicenseReady, "AV", Some(lid("AV"))),
    ]);
}

#[test]
fn inventory_unavailable_releases_the_rest_and_cancels() {
    let mut pm = given([placed(&[("LAP", 2, None), ("MOUSE", 1, None)])]);
    pm.when(reserved("LAP", 2)).then_nothing();
    pm.when(rejected("MOUSE", 1)).then([
        release("LAP", ReleaseReason::OrderUnfulfillable),
        A::MarkOrderInventoryUnavailable { order_id: oid(), skus: vec![sku("MOUSE")] },
    ]);
    pm.when(reservation_released("LAP", 2, ReleaseReason::OrderUnfulfillable)).then_nothing();
    let unavailable = order_event(|order_id| OrderEvent::OrderInventoryUnavailable {
        order_id,
        skus: vec![sku("MOUSE")],
        at: t(2),
    });
    pm.when(unavailable)
        .then([A::CancelOrder { order_id: oid(), reason: "inventory unavailable: MOUSE".into() }]);
    pm.when(order_cancelled(CancelledBy::System, false)).then([notify(
        NotificationKind::OrderCancelled,
        "",
        None,
    )]);

    // The other arrival order: the rejection first, the reservation afterwards.
    let mut pm = given([placed(&[("LAP", 2, None), ("MOUSE", 1, None)])]);
    pm.when(rejected("MOUSE", 1)).then_nothing();
    pm.when(reserved("LAP", 2)).then([
        release("LAP", ReleaseReason::OrderUnfulfillable),
        A::MarkOrderInventoryUnavailable { order_id: oid(), skus: vec![sku("MOUSE")] },
    ]);
}

#[test]
fn payment_failure_releases_stock_and_cancels_with_a_notice() {
    let mut pm = given([
        placed(&[("LAP", 2, None)]),
        reserved("LAP", 2),
        payment_started(),
        intent_created(2_000),
    ]);
    pm.when(payment_failed()).then([
        release("LAP", ReleaseReason::PaymentFailed),
        A::MarkOrderPaymentFailed {
            order_id: oid(),
            reason: "declined".into(),
            message: "card declined".into(),
        },
    ]);
    let failed = order_event(|order_id| OrderEvent::OrderPaymentFailed {
        order_id,
        reason: "declined".into(),
        message: "card declined".into(),
        at: t(4),
    });
    pm.when(failed).then([
        A::CancelOrder { order_id: oid(), reason: "payment failed: declined".into() },
        notify(NotificationKind::PaymentFailed, "", None),
    ]);
    pm.when(reservation_released("LAP", 2, ReleaseReason::PaymentFailed)).then_nothing();
    pm.when(order_cancelled(CancelledBy::System, false)).then_nothing();
}

#[test]
fn a_license_that_cannot_be_signed_refunds_and_cancels() {
    let history = [
        placed(&[("AV", 1, Some(signed()))]),
        intent_created(1_000),
        provisioned(1),
        captured(1_000, 3),
        order_paid(1_000),
    ];
    let failed: AnyEvent = LicenseEvent::LicenseIssueFailed {
        license_id: lid("AV"),
        sku: sku("AV"),
        order_id: oid(),
        reason: "no license signing key is configured".into(),
        at: t(6),
    }
    .into();
    assert_eq!(order_of(&failed), Some(oid()));
    let reason = "license unavailable for AV: no license signing key is configured";
    let mut pm = given(history);
    pm.when(failed.clone()).then([
        compensation(1_000, reason),
        A::CancelOrder { order_id: oid(), reason: reason.into() },
    ]);
    pm.when(failed).then_nothing();
}

#[test]
fn an_empty_license_pool_refunds_and_cancels() {
    let history = [
        placed(&[("AV", 1, Some(pool()))]),
        intent_created(1_000),
        provisioned(1),
        captured(1_000, 3),
        order_paid(1_000),
    ];
    let reason = "license unavailable: pool for AV is empty";
    let reference = CheckoutState::compensation_reference(oid());
    let mut pm = given(history.clone());
    pm.when(pool_exhausted("AV")).then([
        compensation(1_000, reason),
        A::CancelOrder { order_id: oid(), reason: reason.into() },
    ]);
    // The order records the refund only once it is cancelled, so it ends REFUNDED with
    // CANCELLED before it, whichever of the two lands first.
    pm.when(payment_refunded(1_000, &reference)).then_nothing();
    pm.when(order_cancelled(CancelledBy::System, true)).then([
        mark_refunded(1_000, &reference),
        notify(NotificationKind::OrderCancelled, "", None),
    ]);
    pm.when(order_refunded(1_000, &reference)).then([notify(
        NotificationKind::Refunded,
        &reference,
        None,
    )]);

    let mut pm = given(history);
    pm.when(pool_exhausted("AV")).then([
        compensation(1_000, reason),
        A::CancelOrder { order_id: oid(), reason: reason.into() },
    ]);
    pm.when(order_cancelled(CancelledBy::System, true)).then([notify(
        NotificationKind::OrderCancelled,
        "",
        None,
    )]);
    pm.when(payment_refunded(1_000, &reference)).then([mark_refunded(1_000, &reference)]);
}

#[test]
fn admin_cancel_of_a_paid_order_gives_everything_back() {
    let mut pm = given([
        placed(&[("LAP", 2, None), ("MOUSE", 1, None)]),
        reserved("LAP", 2),
        reserved("MOUSE", 1),
        intent_created(3_000),
        captured(3_000, 3),
        reservation_confirmed("LAP", 2),
    ]);
    let reference = CheckoutState::compensation_reference(oid());
    pm.when(order_cancelled(CancelledBy::Admin, true)).then([
        release("MOUSE", ReleaseReason::Cancelled),
        compensation(3_000, "order cancelled: cancelled"),
        A::RestockConfirmed { sku: sku("LAP"), qty: qty(2), order_id: oid() },
        notify(NotificationKind::OrderCancelled, "", None),
    ]);
    // The confirmation that was in flight wins the race against the release: that stock
    // is put back too.
    pm.when(reservation_confirmed("MOUSE", 1)).then([A::RestockConfirmed {
        sku: sku("MOUSE"),
        qty: qty(1),
        order_id: oid(),
    }]);
    pm.when(payment_refunded(3_000, &reference)).then_nothing();
    // The order never recorded its payment here (OrderPaid was not seen), so there is no
    // refund to record on it; with OrderPaid seen, the refund is recorded.
    pm.when(order_paid(3_000)).then([A::MarkOrderRefunded {
        order_id: oid(),
        amount: usd(3_000),
        reason: "refund".into(),
        refund_reference: reference.clone(),
    }]);
}

#[test]
fn a_refused_compensation_is_retried_for_what_is_left() {
    let mut pm = given([
        placed(&[("AV", 1, Some(signed()))]),
        intent_created(3_000),
        captured(3_000, 3),
        order_paid(3_000),
    ]);
    pm.when(order_cancelled(CancelledBy::Admin, true)).then([
        compensation(3_000, "order cancelled: cancelled"),
        notify(NotificationKind::OrderCancelled, "", None),
    ]);
    // An admin refund of 1,000 landed first, so the payment refused the full 3,000; the
    // remaining 2,000 go back under the same reference.
    pm.when(payment_refunded(1_000, "admin-1"))
        .then([compensation(2_000, "order cancelled: cancelled"), mark_refunded(1_000, "admin-1")]);
}

#[test]
fn refunding_a_fulfilled_order_revokes_its_licenses() {
    let mut pm = given([
        placed(&[("AV", 1, Some(signed()))]),
        intent_created(1_000),
        provisioned(1),
        captured(1_000, 3),
        order_paid(1_000),
        license_issued("AV", signed()),
        license_attached_to_order("AV"),
    ]);
    pm.when(payment_refunded(400, "admin-1")).then([mark_refunded(400, "admin-1")]);
    pm.when(order_refunded(400, "admin-1")).then([
        A::RevokeLicense { license_id: lid("AV"), reason: "order refunded".into() },
        notify(NotificationKind::Refunded, "admin-1", None),
    ]);
    pm.when(license_revoked("AV")).then_nothing();
}

#[test]
fn an_expired_reservation_cancels_and_a_late_capture_is_refunded() {
    let mut pm = given([
        placed(&[("LAP", 2, None), ("MOUSE", 1, None)]),
        reserved("LAP", 2),
        reserved("MOUSE", 1),
        payment_started(),
        intent_created(3_000),
    ]);
    pm.when(reservation_released("LAP", 2, ReleaseReason::Expired)).then([
        release("MOUSE", ReleaseReason::Cancelled),
        A::CancelOrder { order_id: oid(), reason: "reservation expired".into() },
    ]);
    pm.when(captured(3_000, 12)).then([compensation(3_000, "reservation expired")]);
    pm.when(order_cancelled(CancelledBy::System, false)).then([notify(
        NotificationKind::OrderCancelled,
        "",
        None,
    )]);
    // The order never recorded the payment, so the refund stays on the payment.
    pm.when(payment_refunded(3_000, &CheckoutState::compensation_reference(oid()))).then_nothing();
}

/// Every event of a complete mixed order, in a valid log order.
fn mixed_history() -> Vec<AnyEvent> {
    vec![
        placed(&[("LAP", 2, None), ("MOUSE", 1, None), ("AV", 1, Some(pool()))]),
        reserved("LAP", 2),
        reserved("MOUSE", 1),
        provisioned(1),
        payment_started(),
        intent_created(4_000),
        captured(4_000, 3),
        reservation_confirmed("LAP", 2),
        reservation_confirmed("MOUSE", 1),
        order_paid(4_000),
        key_allocated("AV", "K-1"),
        order_confirmed(),
        license_issued("AV", pool()),
        license_attached_to_order("AV"),
    ]
}

#[test]
fn duplicate_deliveries_cause_nothing_new() {
    let mut pm = given([]);
    for event in mixed_history() {
        pm.when(event.clone());
        pm.when(event).then_nothing();
    }
    // A late duplicate of an early event does not move anything backwards either.
    for event in mixed_history() {
        pm.when(event).then_nothing();
    }
    assert!(pm.state.order_confirmed && pm.state.digital[&sku("AV")].attached_to_order);
    // The runner persists this state between events, so it must survive JSON.
    let json = serde_json::to_string(&pm.state).unwrap();
    assert_eq!(serde_json::from_str::<CheckoutState>(&json).unwrap(), pm.state);
}

/// All actions of a run, as sorted JSON, to compare runs regardless of order.
fn run(events: &[AnyEvent]) -> Vec<String> {
    let mut pm = given([]);
    let mut all: Vec<String> = events
        .iter()
        .flat_map(|e| pm.when(e.clone()).0)
        .map(|a| serde_json::to_string(&a).unwrap())
        .collect();
    all.sort();
    all
}

proptest! {
    #[test]
    fn independent_events_in_any_order_give_the_same_actions(
        reservations in Just(vec![reserved("LAP", 2), reserved("MOUSE", 1), reserved("CABLE", 3)]).prop_shuffle(),
        confirmations in Just(vec![
            reservation_confirmed("LAP", 2),
            reservation_confirmed("MOUSE", 1),
            reservation_confirmed("CABLE", 3),
            order_paid(7_000),
        ]).prop_shuffle(),
        capture_first in any::<bool>(),
        provision_at in 0usize..4,
        duplicate in 0usize..12,
    ) {
        let terms = [("LAP", 2, None), ("MOUSE", 1, None), ("CABLE", 3, None), ("AV", 1, Some(signed()))];
        let placed = placed(&terms);
        let baseline = {
            let mut events = vec![placed.clone()];
            events.extend([reserved("LAP", 2), reserved("MOUSE", 1), reserved("CABLE", 3)]);
            events.extend([intent_created(7_000), provisioned(1), captured(7_000, 3)]);
            events.extend([
                reservation_confirmed("LAP", 2),
                reservation_confirmed("MOUSE", 1),
                reservation_confirmed("CABLE", 3),
                order_paid(7_000),
            ]);
            events.extend([license_issued("AV", signed()), license_attached_to_order("AV")]);
            events
        };
        // Provisioning may arrive at any point after the order is placed, before or after
        // the capture; a random event is also delivered twice.
        let mut events = vec![placed];
        events.extend(reservations);
        events.push(intent_created(7_000));
        events.push(captured(7_000, 3));
        let at = if capture_first { events.len() } else { provision_at.min(events.len() - 1) + 1 };
        events.insert(at, provisioned(1));
        events.extend(confirmations);
        events.extend([license_issued("AV", signed()), license_attached_to_order("AV")]);
        let again = events[duplicate % events.len()].clone();
        events.push(again);
        prop_assert_eq!(run(&events), run(&baseline));
    }
}

#[test]
fn events_are_routed_to_their_order() {
    assert_eq!(order_of(&placed(&[("LAP", 1, None)])), Some(oid()));
    assert_eq!(order_of(&provisioned(1)), Some(oid()));
    assert_eq!(order_of(&pool_exhausted("AV")), Some(oid()));
    let received = InventoryEvent::StockReceived { sku: sku("LAP"), qty: qty(1), at: t(0) };
    assert_eq!(order_of(&received.into()), None);
    // An instance ignores events of other orders.
    let state = given([placed(&[("LAP", 1, None)])]).state;
    let other = InventoryEvent::StockReserved {
        sku: sku("LAP"),
        reservation_id: rid("LAP"),
        order_id: OrderId::derived(&["another order"]),
        qty: qty(1),
        expires_at: t(10),
        at: t(1),
    };
    assert_eq!(evolve(state.clone(), &other.into()), state);
}
