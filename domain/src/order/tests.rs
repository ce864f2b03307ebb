//! The order's rules as given/when/then: every status against every command, and the details
//! of each step.

use super::OrderEvent::*;
use super::*;
use crate::aggregate::testing::given;
use crate::payment::PaymentMethod;
use crate::product::{DigitalTerms, LicenseSource};
use crate::test_support::{email, eur, qty, sku, t, usd};
use crate::{CustomerId, DomainError, LicenseId, OrderId, PaymentId};

fn oid() -> OrderId {
    OrderId::derived(&["test-order"])
}

fn pid() -> PaymentId {
    PaymentId::derived(&["test-payment"])
}

fn lid(s: &str) -> LicenseId {
    LicenseId::derived(&["test-license", s])
}

fn terms() -> DigitalTerms {
    DigitalTerms { license: LicenseSource::Pool, seats: 1, validity_days: Some(365) }
}

fn physical_line() -> OrderLine {
    OrderLine::new(sku("LAP-13"), "Laptop", qty(2), usd(1_000), None).unwrap()
}

fn digital_line() -> OrderLine {
    OrderLine::new(sku("AV-1Y"), "Antivirus", qty(1), usd(500), Some(terms())).unwrap()
}

fn address() -> ShippingAddress {
    ShippingAddress::parse("Ann", "1 Main St", None, "Springfield", "12345", "us").unwrap()
}

fn place(lines: Vec<OrderLine>, address: Option<ShippingAddress>) -> OrderCommand {
    OrderCommand::Place {
        order_id: oid(),
        customer_id: CustomerId::for_email(&email("ann@example.com")),
        email: email("ann@example.com"),
        lines,
        cart_id: None,
        payment_method: PaymentMethod::parse("pm_test").unwrap(),
        shipping_address: address,
        now: t(0),
    }
}

fn placed_with(lines: Vec<OrderLine>) -> OrderEvent {
    let total = lines.iter().map(|l| l.line_total.minor).sum();
    let shipping_address = lines.iter().any(|l| !l.is_digital()).then(address);
    OrderPlaced {
        order_id: oid(),
        customer_id: CustomerId::for_email(&email("ann@example.com")),
        email: email("ann@example.com"),
        lines,
        total: usd(total),
        cart_id: None,
        payment_method: PaymentMethod::parse("pm_test").unwrap(),
        shipping_address,
        at: t(0),
    }
}

fn placed() -> OrderEvent {
    placed_with(vec![physical_line()])
}

fn started() -> OrderEvent {
    OrderPaymentStarted { order_id: oid(), payment_id: pid(), at: t(1) }
}

fn paid(minor: i64) -> OrderEvent {
    OrderPaid {
        order_id: oid(),
        payment_id: pid(),
        gateway_reference: "ch_1".into(),
        amount: usd(minor),
        at: t(2),
    }
}

fn attached(s: &str) -> OrderEvent {
    OrderLicenseAttached { order_id: oid(), sku: sku(s), license_id: lid(s), at: t(3) }
}

fn fulfilled(licensed: &[&str]) -> OrderEvent {
    let licenses = licensed.iter().map(|s| (sku(s), lid(s))).collect();
    OrderFulfilled { order_id: oid(), licenses, at: t(4) }
}

fn refunded(minor: i64, reference: &str) -> OrderEvent {
    OrderRefunded {
        order_id: oid(),
        amount: usd(minor),
        reason: "returned".into(),
        refund_reference: reference.into(),
        at: t(9),
    }
}

fn refund(minor: i64, reference: &str) -> OrderCommand {
    OrderCommand::Refund {
        amount: usd(minor),
        reason: "returned".into(),
        refund_reference: reference.into(),
        now: t(9),
    }
}

fn cancel(by: CancelledBy) -> OrderCommand {
    OrderCommand::Cancel { reason: "changed my mind".into(), by, now: t(5) }
}

/// A history that leaves the order in `status`. FULFILLED needs a digital-only order; all
/// others use a physical one.
fn history(status: OrderStatus) -> Vec<OrderEvent> {
    use OrderStatus as S;
    let physical_paid = vec![placed(), started(), paid(2_000)];
    let mut h = match status {
        S::Pending => vec![placed()],
        S::PaymentProcessing => vec![placed(), started()],
        S::PaymentFailed => vec![
            placed(),
            started(),
            OrderPaymentFailed {
                order_id: oid(),
                reason: "declined".into(),
                message: "no".into(),
                at: t(2),
            },
        ],
        S::InventoryUnavailable => vec![
            placed(),
            OrderInventoryUnavailable { order_id: oid(), skus: vec![sku("LAP-13")], at: t(1) },
        ],
        S::Cancelled => vec![
            placed(),
            OrderCancelled {
                order_id: oid(),
                reason: "x".into(),
                by: CancelledBy::Customer,
                was_paid: false,
                at: t(1),
            },
        ],
        S::Refunded => {
            let mut h = physical_paid.clone();
            h.push(refunded(500, "r1"));
            h
        }
        S::Fulfilled => vec![
            placed_with(vec![digital_line()]),
            started(),
            paid(500),
            attached("AV-1Y"),
            fulfilled(&["AV-1Y"]),
        ],
        S::Paid | S::Confirmed | S::Processing | S::Shipped | S::Delivered => physical_paid,
    };
    let steps = [
        (S::Confirmed, OrderConfirmed { order_id: oid(), at: t(3) }),
        (S::Processing, OrderProcessingStarted { order_id: oid(), at: t(4) }),
        (
            S::Shipped,
            OrderShipped {
                order_id: oid(),
                tracking_number: "1Z999".into(),
                carrier: "UPS".into(),
                estimated_delivery: Some(t(6_000)),
                at: t(5),
            },
        ),
        (S::Delivered, OrderDelivered { order_id: oid(), at: t(6) }),
    ];
    if let Some(last) = steps.iter().position(|(s, _)| *s == status) {
        h.extend(steps[..=last].iter().map(|(_, e)| e.clone()));
    }
    h
}

#[test]
fn histories_reach_their_status() {
    for status in OrderStatus::ALL {
        assert_eq!(given::<Order>(history(status)).state().status, Some(status));
    }
}

/// Every command against every status: which ones record events, which are idempotent
/// no-ops, and that everything else is rejected with the expected code.
#[test]
fn transition_matrix() {
    use OrderStatus as S;
    type Case = (&'static str, fn() -> OrderCommand, &'static [S], &'static [S], &'static str);
    let cases: Vec<Case> = vec![
        (
            "start_payment",
            || OrderCommand::StartPayment { payment_id: PaymentId::derived(&["other"]), now: t(1) },
            &[S::Pending],
            &[],
            "INVALID_TRANSITION",
        ),
        (
            "mark_paid",
            || OrderCommand::MarkPaid {
                payment_id: pid(),
                gateway_reference: "ch_1".into(),
                amount: usd(2_000),
                now: t(2),
            },
            &[S::PaymentProcessing],
            &[
                S::Paid,
                S::Confirmed,
                S::Processing,
                S::Shipped,
                S::Delivered,
                S::Fulfilled,
                S::Refunded,
            ],
            "INVALID_TRANSITION",
        ),
        (
            "mark_payment_failed",
            || OrderCommand::MarkPaymentFailed {
                reason: "declined".into(),
                message: "no".into(),
                now: t(2),
            },
            &[S::PaymentProcessing],
            &[S::PaymentFailed],
            "INVALID_TRANSITION",
        ),
        (
            "mark_inventory_unavailable",
            || OrderCommand::MarkInventoryUnavailable { skus: vec![sku("LAP-13")], now: t(1) },
            &[S::Pending],
            &[S::InventoryUnavailable],
            "INVALID_TRANSITION",
        ),
        (
            "confirm",
            || OrderCommand::Confirm { now: t(3) },
            &[S::Paid],
            &[S::Confirmed, S::Processing, S::Shipped, S::Delivered],
            "INVALID_TRANSITION",
        ),
        (
            "start_processing",
            || OrderCommand::StartProcessing { now: t(4) },
            &[S::Confirmed],
            &[],
            "INVALID_TRANSITION",
        ),
        (
            "ship",
            || OrderCommand::Ship {
                tracking_number: "1Z999".into(),
                carrier: "UPS".into(),
                estimated_delivery: None,
                now: t(5),
            },
            &[S::Processing],
            &[],
            "INVALID_TRANSITION",
        ),
        (
            "deliver",
            || OrderCommand::Deliver { now: t(6) },
            &[S::Shipped],
            &[],
            "INVALID_TRANSITION",
        ),
        (
            "fulfil",
            || OrderCommand::Fulfill { now: t(6) },
            &[],
            &[S::Fulfilled],
            "INVALID_TRANSITION",
        ),
        (
            "cancel_by_customer",
            || cancel(CancelledBy::Customer),
            &[S::Pending, S::PaymentFailed, S::InventoryUnavailable],
            &[S::Cancelled],
            "INVALID_TRANSITION",
        ),
        (
            "cancel_by_admin",
            || cancel(CancelledBy::Admin),
            &[
                S::Pending,
                S::PaymentFailed,
                S::InventoryUnavailable,
                S::Paid,
                S::Confirmed,
                S::Processing,
            ],
            &[S::Cancelled],
            "INVALID_TRANSITION",
        ),
        (
            "cancel_by_system",
            || cancel(CancelledBy::System),
            &[
                S::Pending,
                S::PaymentProcessing,
                S::PaymentFailed,
                S::InventoryUnavailable,
                S::Paid,
                S::Confirmed,
                S::Processing,
            ],
            &[S::Cancelled],
            "INVALID_TRANSITION",
        ),
        (
            "refund",
            || refund(100, "r2"),
            &[
                S::Paid,
                S::Confirmed,
                S::Processing,
                S::Shipped,
                S::Delivered,
                S::Fulfilled,
                S::Refunded,
            ],
            &[],
            "NOT_PAID",
        ),
    ];
    for (name, command, records, no_op, otherwise) in cases {
        for status in OrderStatus::ALL {
            let result = given::<Order>(history(status)).when(command()).result();
            match result {
                Ok(events) if records.contains(&status) => {
                    assert_eq!(events.len(), 1, "{name} from {status}");
                }
                Ok(events) if no_op.contains(&status) => {
                    assert!(events.is_empty(), "{name} from {status} should do nothing");
                }
                Ok(events) => panic!("{name} from {status} should fail, got {events:?}"),
                Err(e) => {
                    assert!(
                        !records.contains(&status) && !no_op.contains(&status),
                        "{name} from {status} failed: {e}"
                    );
                    assert_eq!(e.code(), otherwise, "{name} from {status}: {e}");
                    if e.code() == "INVALID_TRANSITION" {
                        assert!(e.to_string().contains(status.as_str()), "{e}");
                    }
                }
            }
        }
    }
}

#[test]
fn place_records_lines_totals_and_terms() {
    given::<Order>([])
        .when(place(vec![physical_line(), digital_line()], Some(address())))
        .then([placed_with(vec![physical_line(), digital_line()])]);
    given::<Order>([placed()])
        .when(place(vec![physical_line()], Some(address())))
        .then_error("ORDER_ALREADY_EXISTS");
    given::<Order>([])
        .when(OrderCommand::StartPayment { payment_id: pid(), now: t(1) })
        .then_error("ORDER_NOT_FOUND");
    let json = serde_json::to_value(placed_with(vec![digital_line()])).unwrap();
    assert_eq!(json["data"]["lines"][0]["digital"]["license"], "pool");
    assert_eq!(serde_json::to_value(OrderStatus::PaymentProcessing).unwrap(), "PAYMENT_PROCESSING");
}

#[test]
fn place_validates_the_lines() {
    given::<Order>([]).when(place(vec![], None)).then_error("EMPTY_ORDER");
    let many = (0..101)
        .map(|i| OrderLine::new(sku(&format!("S{i}")), "x", qty(1), usd(1), Some(terms())).unwrap())
        .collect();
    given::<Order>([]).when(place(many, None)).then_error("TOO_MANY_LINES");
    let euro = OrderLine::new(sku("B"), "x", qty(1), eur(1), Some(terms())).unwrap();
    given::<Order>([])
        .when(place(vec![digital_line(), euro], None))
        .then_error("CURRENCY_MISMATCH");
    let err = given::<Order>([]).when(place(vec![physical_line()], None)).result().unwrap_err();
    assert_eq!((err.code(), err.field()), ("SHIPPING_ADDRESS_REQUIRED", Some("shipping_address")));
    given::<Order>([])
        .when(place(vec![digital_line(), digital_line()], None))
        .then_error("DUPLICATE_LINE");
    // A forged line total is recomputed from the unit price.
    let mut forged = physical_line();
    forged.line_total = usd(1);
    let events = given::<Order>([]).when(place(vec![forged], Some(address()))).result().unwrap();
    assert!(matches!(&events[0], OrderPlaced { total, .. } if *total == usd(2_000)));
}

#[test]
fn payment_steps() {
    given::<Order>([placed()])
        .when(OrderCommand::StartPayment { payment_id: pid(), now: t(1) })
        .then([started()]);
    given::<Order>([placed(), started()])
        .when(OrderCommand::StartPayment { payment_id: pid(), now: t(1) })
        .then([]);
    let mark_paid = |payment_id, amount| OrderCommand::MarkPaid {
        payment_id,
        gateway_reference: "ch_1".into(),
        amount,
        now: t(2),
    };
    given::<Order>([placed(), started()]).when(mark_paid(pid(), usd(2_000))).then([paid(2_000)]);
    given::<Order>([placed(), started()])
        .when(mark_paid(PaymentId::derived(&["other"]), usd(2_000)))
        .then_error("PAYMENT_MISMATCH");
    given::<Order>([placed(), started()])
        .when(mark_paid(pid(), eur(2_000)))
        .then_error("CURRENCY_MISMATCH");
}

#[test]
fn licenses_attach_to_digital_lines_once() {
    let digital = [placed_with(vec![digital_line()]), started(), paid(500)];
    let attach = |s: &str, l| OrderCommand::AttachLicense { sku: sku(s), license_id: l, now: t(3) };
    given::<Order>(digital.clone()).when(attach("AV-1Y", lid("AV-1Y"))).then([attached("AV-1Y")]);
    let with_license = [placed_with(vec![digital_line()]), started(), paid(500), attached("AV-1Y")];
    given::<Order>(with_license.clone()).when(attach("AV-1Y", lid("AV-1Y"))).then([]);
    given::<Order>(with_license)
        .when(attach("AV-1Y", lid("other")))
        .then_error("LICENSE_ALREADY_ATTACHED");
    given::<Order>(digital).when(attach("LAP-13", lid("x"))).then_error("NOT_A_DIGITAL_LINE");
    given::<Order>([placed_with(vec![digital_line()])])
        .when(attach("AV-1Y", lid("AV-1Y")))
        .then_error("INVALID_TRANSITION");
}

#[test]
fn digital_only_orders_are_fulfilled_from_paid() {
    let fulfil = || OrderCommand::Fulfill { now: t(4) };
    given::<Order>([placed_with(vec![digital_line()]), started(), paid(500)])
        .when(fulfil())
        .then_error("LICENSES_MISSING");
    let ready = [placed_with(vec![digital_line()]), started(), paid(500), attached("AV-1Y")];
    given::<Order>(ready.clone()).when(fulfil()).then([fulfilled(&["AV-1Y"])]);
    let mut done = ready.to_vec();
    done.push(fulfilled(&["AV-1Y"]));
    assert_eq!(given::<Order>(done).state().status, Some(OrderStatus::Fulfilled));
    given::<Order>(ready)
        .when(OrderCommand::Confirm { now: t(3) })
        .then_error("INVALID_TRANSITION");
}

#[test]
fn mixed_orders_fulfil_without_leaving_the_physical_path() {
    let mixed = || placed_with(vec![physical_line(), digital_line()]);
    let confirmed = OrderConfirmed { order_id: oid(), at: t(3) };
    let ready = [mixed(), started(), paid(2_500), confirmed, attached("AV-1Y")];
    given::<Order>(ready.clone())
        .when(OrderCommand::Fulfill { now: t(4) })
        .then([fulfilled(&["AV-1Y"])]);
    let mut done = ready.to_vec();
    done.push(fulfilled(&["AV-1Y"]));
    let state = given::<Order>(done.clone()).state().clone();
    assert_eq!((state.status, state.fulfilled), (Some(OrderStatus::Confirmed), true));
    given::<Order>(done)
        .when(OrderCommand::StartProcessing { now: t(5) })
        .then([OrderProcessingStarted { order_id: oid(), at: t(5) }]);
}

#[test]
fn shipping_needs_a_sane_tracking_number() {
    let ship = |number: &str| OrderCommand::Ship {
        tracking_number: number.into(),
        carrier: "UPS".into(),
        estimated_delivery: Some(t(6_000)),
        now: t(5),
    };
    let processing = history(OrderStatus::Processing);
    given::<Order>(processing.clone()).when(ship("1Z999")).then([OrderShipped {
        order_id: oid(),
        tracking_number: "1Z999".into(),
        carrier: "UPS".into(),
        estimated_delivery: Some(t(6_000)),
        at: t(5),
    }]);
    given::<Order>(processing.clone()).when(ship("")).then_error("INVALID_INPUT");
    let err = given::<Order>(processing).when(ship(&"9".repeat(65))).result().unwrap_err();
    assert_eq!(err.field(), Some("tracking_number"));
}

#[test]
fn cancel_records_whether_money_was_taken() {
    given::<Order>(history(OrderStatus::Paid)).when(cancel(CancelledBy::Admin)).then([
        OrderCancelled {
            order_id: oid(),
            reason: "changed my mind".into(),
            by: CancelledBy::Admin,
            was_paid: true,
            at: t(5),
        },
    ]);
    let events = given::<Order>([placed()]).when(cancel(CancelledBy::Customer)).result().unwrap();
    assert!(matches!(events[..], [OrderCancelled { was_paid: false, .. }]));
}

#[test]
fn refunds_are_bounded_by_the_capture_and_recorded_once() {
    let paid_history = history(OrderStatus::Paid);
    given::<Order>(paid_history.clone()).when(refund(500, "r1")).then([refunded(500, "r1")]);
    given::<Order>(history(OrderStatus::Refunded)).when(refund(500, "r1")).then([]);
    given::<Order>(history(OrderStatus::Refunded))
        .when(refund(1_501, "r2"))
        .then_error("REFUND_EXCEEDS_CAPTURED");
    given::<Order>(history(OrderStatus::Refunded))
        .when(refund(1_500, "r2"))
        .then([refunded(1_500, "r2")]);
    given::<Order>(paid_history.clone()).when(refund(0, "r1")).then_error("INVALID_INPUT");
    let mut cancelled_after_payment = paid_history;
    cancelled_after_payment.push(OrderCancelled {
        order_id: oid(),
        reason: "license unavailable".into(),
        by: CancelledBy::System,
        was_paid: true,
        at: t(3),
    });
    given::<Order>(cancelled_after_payment).when(refund(2_000, "r1")).then([OrderRefunded {
        order_id: oid(),
        amount: usd(2_000),
        reason: "returned".into(),
        refund_reference: "r1".into(),
        at: t(9),
    }]);
}
