//! End-to-end checkout flows against the real aggregates, without a database.
//!
//! `World` is a tiny in-memory stand-in for the event store and the process-manager runner: it
//! keeps every aggregate's state, appends their events to one global log, feeds that log to
//! the checkout process manager in order, and executes the actions it returns through the
//! aggregates' `decide`. It checks what the unit tests cannot: that every command checkout
//! sends is one the target aggregate accepts, and where each flow leaves orders, stock,
//! payments and licenses.

use std::collections::BTreeMap;
use std::hash::Hash;

use chrono::{DateTime, Duration, TimeZone, Utc};
use purser_domain::checkout::{self, CheckoutAction, CheckoutConfig, CheckoutState};
use purser_domain::customer::{Customer, CustomerCommand};
use purser_domain::inventory::{AdjustmentReason, Inventory, InventoryCommand};
use purser_domain::license::{License, LicenseCommand, LicensePool, LicensePoolCommand};
use purser_domain::notification::{Notification, NotificationCommand, NotificationKind};
use purser_domain::order::{
    CancelledBy, Order, OrderCommand, OrderLine, OrderStatus, ShippingAddress,
};
use purser_domain::payment::{
    Payment, PaymentCommand, PaymentFailureReason, PaymentMethod, PaymentStatus,
};
use purser_domain::product::{DigitalTerms, LicenseSource};
use purser_domain::{
    Aggregate, AnyEvent, Currency, CustomerId, DomainError, Email, LicenseId, Money,
    NotificationId, OrderId, PaymentId, Quantity, Sku,
};

/// What the simulated gateway does with the next charge.
#[derive(Clone, Copy)]
enum Gateway {
    Capture,
    Fail(PaymentFailureReason),
    /// The charge is in flight; the test captures it by hand later.
    Hold,
}

#[derive(Default)]
struct World {
    minute: i64,
    log: Vec<AnyEvent>,
    cursor: usize,
    inventory: BTreeMap<Sku, <Inventory as Aggregate>::State>,
    orders: BTreeMap<OrderId, <Order as Aggregate>::State>,
    payments: BTreeMap<PaymentId, <Payment as Aggregate>::State>,
    customers: BTreeMap<CustomerId, <Customer as Aggregate>::State>,
    licenses: BTreeMap<LicenseId, <License as Aggregate>::State>,
    pools: BTreeMap<Sku, <LicensePool as Aggregate>::State>,
    notifications: BTreeMap<NotificationId, <Notification as Aggregate>::State>,
    checkouts: BTreeMap<OrderId, CheckoutState>,
    gateway: Option<Gateway>,
    /// Actions an aggregate refused, with the error code.
    refused: Vec<(CheckoutAction, &'static str)>,
}

fn now(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 9, 0, 0).unwrap() + Duration::minutes(minute)
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn qty(n: i64) -> Quantity {
    Quantity::new(n).unwrap()
}

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::USD)
}

fn ann() -> Email {
    Email::parse("ann@example.com").unwrap()
}

fn order_id() -> OrderId {
    OrderId::derived(&["flow-order"])
}

/// Runs `command` against the aggregate stored under `key` and appends the resulting events.
fn exec<A, K>(
    states: &mut BTreeMap<K, A::State>,
    log: &mut Vec<AnyEvent>,
    key: K,
    command: A::Command,
) -> Result<(), &'static str>
where
    A: Aggregate,
    K: Ord + Hash,
    A::Event: Into<AnyEvent>,
{
    let state = states.entry(key).or_default();
    let events = A::decide(state, command).map_err(|e| e.code())?;
    for event in events {
        *state = A::evolve(state.clone(), &event);
        log.push(event.into());
    }
    Ok(())
}

impl World {
    fn new(gateway: Gateway) -> World {
        World { gateway: Some(gateway), ..World::default() }
    }

    fn tick(&mut self) -> DateTime<Utc> {
        self.minute += 1;
        now(self.minute)
    }

    fn stock(&mut self, s: &str, n: i64) {
        let now = self.tick();
        let cmd = InventoryCommand::Receive { sku: sku(s), qty: qty(n), now };
        exec::<Inventory, _>(&mut self.inventory, &mut self.log, sku(s), cmd).unwrap();
    }

    fn load_keys(&mut self, s: &str, keys: &[&str]) {
        let now = self.tick();
        let keys = keys.iter().map(|k| k.to_string()).collect();
        let cmd = LicensePoolCommand::LoadKeys { sku: sku(s), keys, now };
        exec::<LicensePool, _>(&mut self.pools, &mut self.log, sku(s), cmd).unwrap();
    }

    fn order(&mut self, command: OrderCommand) -> Result<(), &'static str> {
        exec::<Order, _>(&mut self.orders, &mut self.log, order_id(), command)
    }

    fn place(&mut self, lines: &[(&str, i64, Option<DigitalTerms>)]) {
        let lines: Vec<OrderLine> = lines
            .iter()
            .map(|(s, n, d)| OrderLine::new(sku(s), s, qty(*n), usd(1_000), *d).unwrap())
            .collect();
        let physical = lines.iter().any(|l| !l.is_digital());
        let address =
            ShippingAddress::parse("Ann", "1 Main St", None, "Springfield", "12345", "US");
        let now = self.tick();
        self.order(OrderCommand::Place {
            order_id: order_id(),
            customer_id: CustomerId::for_email(&ann()),
            email: ann(),
            lines,
            cart_id: None,
            payment_method: PaymentMethod::parse("4242 4242 4242 4242").unwrap(),
            shipping_address: physical.then(|| address.unwrap()),
            now,
        })
        .unwrap();
    }

    /// Feeds every new event to the process manager and executes its actions, until the log
    /// stops growing.
    fn settle(&mut self) {
        let config = CheckoutConfig::default();
        while self.cursor < self.log.len() {
            let event = self.log[self.cursor].clone();
            self.cursor += 1;
            let Some(order) = checkout::order_of(&event) else { continue };
            let state = self.checkouts.entry(order).or_default();
            let actions = checkout::react(state, &event, &config);
            *state = checkout::evolve(state.clone(), &event);
            for action in actions {
                if let Err(code) = self.execute(action.clone()) {
                    self.refused.push((action, code));
                }
            }
        }
    }

    fn execute(&mut self, action: CheckoutAction) -> Result<(), &'static str> {
        use CheckoutAction as A;
        let now = self.tick();
        let log = &mut self.log;
        match action {
            A::ReserveStock { sku, reservation_id, order_id, qty, expires_at } => {
                let cmd = InventoryCommand::Reserve {
                    sku: sku.clone(),
                    reservation_id,
                    order_id,
                    qty,
                    expires_at,
                    now,
                };
                exec::<Inventory, _>(&mut self.inventory, log, sku, cmd)
            }
            A::ReleaseReservation { sku, reservation_id, reason } => {
                let cmd = InventoryCommand::Release { reservation_id, reason, now };
                exec::<Inventory, _>(&mut self.inventory, log, sku, cmd)
            }
            A::ConfirmReservation { sku, reservation_id } => {
                let cmd = InventoryCommand::Confirm { reservation_id, now };
                exec::<Inventory, _>(&mut self.inventory, log, sku, cmd)
            }
            A::RestockConfirmed { sku, qty, order_id } => {
                let cmd = InventoryCommand::Adjust {
                    sku: sku.clone(),
                    delta: i64::from(qty.get()),
                    reason: AdjustmentReason::OrderCancelled,
                    note: format!("order {order_id} cancelled"),
                    now,
                };
                exec::<Inventory, _>(&mut self.inventory, log, sku, cmd)
            }
            A::MarkOrderInventoryUnavailable { order_id, skus } => {
                let cmd = OrderCommand::MarkInventoryUnavailable { skus, now };
                exec::<Order, _>(&mut self.orders, log, order_id, cmd)
            }
            A::CreatePayment { payment_id, order_id, amount, payment_method, idempotency_key } => {
                let cmd = PaymentCommand::CreateIntent {
                    payment_id,
                    order_id,
                    amount,
                    payment_method,
                    idempotency_key,
                    now,
                };
                exec::<Payment, _>(&mut self.payments, log, payment_id, cmd)
            }
            A::StartOrderPayment { order_id, payment_id } => {
                let cmd = OrderCommand::StartPayment { payment_id, now };
                exec::<Order, _>(&mut self.orders, log, order_id, cmd)
            }
            A::ChargePayment { payment_id } => {
                let cmd = match self.gateway.unwrap_or(Gateway::Capture) {
                    Gateway::Capture => PaymentCommand::Capture {
                        gateway_reference: format!("ch_{payment_id}"),
                        now,
                    },
                    Gateway::Fail(reason) => {
                        PaymentCommand::Fail { reason, message: "declined by issuer".into(), now }
                    }
                    Gateway::Hold => return Ok(()),
                };
                exec::<Payment, _>(&mut self.payments, log, payment_id, cmd)
            }
            A::MarkOrderPaid { order_id, payment_id, gateway_reference, amount } => {
                let cmd = OrderCommand::MarkPaid { payment_id, gateway_reference, amount, now };
                exec::<Order, _>(&mut self.orders, log, order_id, cmd)
            }
            A::MarkOrderPaymentFailed { order_id, reason, message } => {
                let cmd = OrderCommand::MarkPaymentFailed { reason, message, now };
                exec::<Order, _>(&mut self.orders, log, order_id, cmd)
            }
            A::ConfirmOrder { order_id } => {
                exec::<Order, _>(&mut self.orders, log, order_id, OrderCommand::Confirm { now })
            }
            A::CancelOrder { order_id, reason } => {
                let cmd = OrderCommand::Cancel { reason, by: CancelledBy::System, now };
                exec::<Order, _>(&mut self.orders, log, order_id, cmd)
            }
            A::ProvisionAccount { customer_id, email, order_id } => {
                let cmd = CustomerCommand::ProvisionAccount { customer_id, email, order_id, now };
                exec::<Customer, _>(&mut self.customers, log, customer_id, cmd)
            }
            A::AllocateLicense { sku, license_id, order_id } => {
                let cmd =
                    LicensePoolCommand::Allocate { sku: sku.clone(), license_id, order_id, now };
                exec::<LicensePool, _>(&mut self.pools, log, sku, cmd)
            }
            A::IssueSignedLicense {
                sku,
                license_id,
                order_id,
                customer_id,
                seats,
                expires_at,
                ..
            } => {
                // The real runner signs the payload with Ed25519; a readable stand-in will do.
                let key = format!("SIGNED-{license_id}");
                let cmd = LicenseCommand::Issue {
                    license_id,
                    sku,
                    order_id,
                    customer_id,
                    seats,
                    key,
                    expires_at,
                    now,
                };
                exec::<License, _>(&mut self.licenses, log, license_id, cmd)
            }
            A::IssueLicense { license_id, sku, order_id, customer_id, seats, key, expires_at } => {
                let cmd = LicenseCommand::Issue {
                    license_id,
                    sku,
                    order_id,
                    customer_id,
                    seats,
                    key,
                    expires_at,
                    now,
                };
                exec::<License, _>(&mut self.licenses, log, license_id, cmd)
            }
            A::AttachLicense { license_id, customer_id } => {
                let cmd = LicenseCommand::Attach { customer_id, now };
                exec::<License, _>(&mut self.licenses, log, license_id, cmd)
            }
            A::AttachLicenseToOrder { order_id, sku, license_id } => {
                let cmd = OrderCommand::AttachLicense { sku, license_id, now };
                exec::<Order, _>(&mut self.orders, log, order_id, cmd)
            }
            A::FulfillOrder { order_id } => {
                exec::<Order, _>(&mut self.orders, log, order_id, OrderCommand::Fulfill { now })
            }
            A::RefundPayment { payment_id, amount, reason, refund_reference } => {
                let cmd = PaymentCommand::Refund { amount, reason, refund_reference, now };
                exec::<Payment, _>(&mut self.payments, log, payment_id, cmd)
            }
            A::MarkOrderRefunded { order_id, amount, reason, refund_reference } => {
                let cmd = OrderCommand::Refund { amount, reason, refund_reference, now };
                exec::<Order, _>(&mut self.orders, log, order_id, cmd)
            }
            A::RevokeLicense { license_id, reason } => {
                let cmd = LicenseCommand::Revoke { reason, now };
                exec::<License, _>(&mut self.licenses, log, license_id, cmd)
            }
            A::QueueNotification { notification_id, kind, to, order_id, license_id } => {
                let cmd = NotificationCommand::Queue {
                    notification_id,
                    kind,
                    to,
                    order_id: Some(order_id),
                    license_id,
                    account: None,
                    now,
                };
                exec::<Notification, _>(&mut self.notifications, log, notification_id, cmd)
            }
        }
    }

    fn status(&self) -> Option<OrderStatus> {
        self.orders.get(&order_id()).and_then(|o| o.status)
    }

    fn payment(&self) -> &<Payment as Aggregate>::State {
        &self.payments[&CheckoutState::payment_id(order_id())]
    }

    fn stock_of(&self, s: &str) -> (u64, u64) {
        let inv = &self.inventory[&sku(s)];
        (inv.on_hand, inv.reserved)
    }

    fn notified(&self) -> Vec<NotificationKind> {
        self.notifications.values().filter_map(|n| n.kind).collect()
    }

    fn license(&self, s: &str) -> &<License as Aggregate>::State {
        &self.licenses[&CheckoutState::license_id(order_id(), &sku(s))]
    }
}

fn pool_terms() -> DigitalTerms {
    DigitalTerms { license: LicenseSource::Pool, seats: 1, validity_days: Some(365) }
}

fn signed_terms() -> DigitalTerms {
    DigitalTerms { license: LicenseSource::Signed, seats: 3, validity_days: None }
}

#[test]
fn physical_order_is_confirmed_then_shipped_and_delivered() {
    let mut w = World::new(Gateway::Capture);
    w.stock("LAP", 5);
    w.stock("MOUSE", 5);
    w.place(&[("LAP", 2, None), ("MOUSE", 1, None)]);
    w.settle();
    assert_eq!(w.status(), Some(OrderStatus::Confirmed));
    assert_eq!((w.stock_of("LAP"), w.stock_of("MOUSE")), ((3, 0), (4, 0)));
    assert_eq!(w.payment().status, PaymentStatus::Captured);
    // The card number became a token; the PAN is nowhere in the log.
    let log = format!("{:?}", w.log);
    assert!(log.contains("pm_card_4242_visa") && !log.contains("4242424242424242"));
    for cmd in [
        OrderCommand::StartProcessing { now: now(100) },
        OrderCommand::Ship {
            tracking_number: "1Z999".into(),
            carrier: "UPS".into(),
            estimated_delivery: Some(now(5_000)),
            now: now(101),
        },
        OrderCommand::Deliver { now: now(4_000) },
    ] {
        w.order(cmd).unwrap();
    }
    w.settle();
    assert_eq!(w.status(), Some(OrderStatus::Delivered));
    let mut kinds = w.notified();
    kinds.sort();
    assert_eq!(kinds, vec![NotificationKind::OrderConfirmed, NotificationKind::Shipped]);
    assert!(w.refused.is_empty(), "refused: {:?}", w.refused);
}

#[test]
fn digital_order_from_the_pool_is_fulfilled_with_the_first_key() {
    let mut w = World::new(Gateway::Capture);
    w.load_keys("AV", &["KEY-1", "KEY-2"]);
    w.place(&[("AV", 1, Some(pool_terms()))]);
    w.settle();
    assert_eq!(w.status(), Some(OrderStatus::Fulfilled));
    let license = w.license("AV");
    assert_eq!(
        (license.key.as_str(), license.attached_to),
        ("KEY-1", Some(CustomerId::for_email(&ann())))
    );
    assert!(license.expires_at.is_some());
    assert_eq!(w.pools[&sku("AV")].available.len(), 1);
    assert!(w.customers[&CustomerId::for_email(&ann())].provisioned);
    assert_eq!(w.notified(), vec![NotificationKind::LicenseReady]);
    assert!(w.refused.is_empty(), "refused: {:?}", w.refused);
}

#[test]
fn mixed_order_is_confirmed_and_its_license_attached() {
    let mut w = World::new(Gateway::Capture);
    w.stock("LAP", 1);
    w.place(&[("LAP", 1, None), ("AV", 1, Some(signed_terms()))]);
    w.settle();
    let order = &w.orders[&order_id()];
    assert_eq!((order.status, order.fulfilled), (Some(OrderStatus::Confirmed), true));
    assert!(w.license("AV").key.starts_with("SIGNED-"));
    assert_eq!(w.license("AV").expires_at, None);
    assert_eq!(w.stock_of("LAP"), (0, 0));
    assert!(w.refused.is_empty(), "refused: {:?}", w.refused);
}

#[test]
fn missing_stock_cancels_without_charging() {
    let mut w = World::new(Gateway::Capture);
    w.stock("LAP", 5);
    w.stock("MOUSE", 1);
    w.place(&[("LAP", 2, None), ("MOUSE", 3, None)]);
    w.settle();
    assert_eq!(w.status(), Some(OrderStatus::Cancelled));
    assert_eq!((w.stock_of("LAP"), w.stock_of("MOUSE")), ((5, 0), (1, 0)));
    assert!(w.payments.is_empty());
    assert_eq!(w.notified(), vec![NotificationKind::OrderCancelled]);
    assert!(w.refused.is_empty(), "refused: {:?}", w.refused);
}

#[test]
fn failed_payment_releases_stock_and_cancels() {
    let mut w = World::new(Gateway::Fail(PaymentFailureReason::InsufficientFunds));
    w.stock("LAP", 5);
    w.place(&[("LAP", 2, None)]);
    w.settle();
    let order = &w.orders[&order_id()];
    assert_eq!(order.status, Some(OrderStatus::Cancelled));
    assert_eq!(order.payment_failure.as_deref(), Some("insufficient_funds"));
    assert_eq!(w.stock_of("LAP"), (5, 0));
    assert_eq!(w.notified(), vec![NotificationKind::PaymentFailed]);
    assert!(w.refused.is_empty(), "refused: {:?}", w.refused);
}

#[test]
fn empty_pool_refunds_and_cancels_so_nobody_pays_for_nothing() {
    let mut w = World::new(Gateway::Capture);
    w.place(&[("AV", 1, Some(pool_terms()))]);
    w.settle();
    let order = &w.orders[&order_id()];
    assert_eq!(order.status, Some(OrderStatus::Refunded));
    assert_eq!(
        order.cancellation.as_ref().map(|c| (c.by, c.was_paid)),
        Some((CancelledBy::System, true))
    );
    assert_eq!(order.refunded_amount, Some(usd(1_000)));
    let payment = w.payment();
    assert_eq!((payment.status, payment.refunded_minor), (PaymentStatus::Refunded, 1_000));
    assert!(w.licenses.is_empty());
    let mut kinds = w.notified();
    kinds.sort();
    assert_eq!(kinds, vec![NotificationKind::Refunded, NotificationKind::OrderCancelled]);
    assert!(w.refused.is_empty(), "refused: {:?}", w.refused);
}

#[test]
fn admin_cancel_after_confirmation_restocks_refunds_and_revokes() {
    let mut w = World::new(Gateway::Capture);
    w.stock("LAP", 5);
    w.load_keys("AV", &["KEY-1"]);
    w.place(&[("LAP", 2, None), ("AV", 1, Some(pool_terms()))]);
    w.settle();
    assert_eq!(w.status(), Some(OrderStatus::Confirmed));
    let cancel = OrderCommand::Cancel {
        reason: "fraud check".into(),
        by: CancelledBy::Admin,
        now: now(200),
    };
    w.order(cancel).unwrap();
    w.settle();
    assert_eq!(w.status(), Some(OrderStatus::Refunded));
    assert_eq!(w.stock_of("LAP"), (5, 0));
    assert_eq!(w.payment().refunded_minor, 3_000);
    assert!(w.license("AV").revoked);
    assert!(w.refused.is_empty(), "refused: {:?}", w.refused);
}

#[test]
fn expired_reservation_cancels_and_a_late_capture_is_refunded() {
    let mut w = World::new(Gateway::Hold);
    w.stock("LAP", 5);
    w.stock("MOUSE", 5);
    w.place(&[("LAP", 2, None), ("MOUSE", 1, None)]);
    w.settle();
    assert_eq!(w.status(), Some(OrderStatus::PaymentProcessing));
    // The reservation deadline fires before the gateway answers.
    let reservation_id = CheckoutState::reservation_id(order_id(), &sku("LAP"));
    let expire = InventoryCommand::Expire { reservation_id, now: now(60) };
    exec::<Inventory, _>(&mut w.inventory, &mut w.log, sku("LAP"), expire).unwrap();
    w.settle();
    assert_eq!(w.status(), Some(OrderStatus::Cancelled));
    assert_eq!((w.stock_of("LAP"), w.stock_of("MOUSE")), ((5, 0), (5, 0)));
    // Then the charge that was in flight succeeds after all.
    let payment_id = CheckoutState::payment_id(order_id());
    let capture = PaymentCommand::Capture { gateway_reference: "ch_late".into(), now: now(61) };
    exec::<Payment, _>(&mut w.payments, &mut w.log, payment_id, capture).unwrap();
    w.settle();
    assert_eq!(w.payment().status, PaymentStatus::Refunded);
    assert_eq!(w.payment().refunded_minor, 3_000);
    assert_eq!(w.status(), Some(OrderStatus::Cancelled));
    assert!(w.refused.is_empty(), "refused: {:?}", w.refused);
}

#[test]
fn replaying_the_whole_log_through_a_fresh_runner_changes_nothing() {
    let mut w = World::new(Gateway::Capture);
    w.stock("LAP", 5);
    w.load_keys("AV", &["KEY-1"]);
    w.place(&[("LAP", 1, None), ("AV", 1, Some(pool_terms()))]);
    w.settle();
    let log_len = w.log.len();
    // A runner that lost its state re-reads the log from the start: every action it sends
    // again is recognised as done by its aggregate, so nothing new is appended.
    w.checkouts.clear();
    w.cursor = 0;
    w.settle();
    assert_eq!(w.log.len(), log_len);
    assert!(w.refused.is_empty(), "refused: {:?}", w.refused);
}
