//! Integration events on the real RabbitMQ: a checkout's order.placed, order.paid and
//! order.confirmed reach a bound queue in order, once each by message id, also when the
//! broker cuts the publisher's connection in the middle and when the publisher process is
//! killed and started again.

mod support;

use std::collections::HashSet;

use purser::app::Role;
use support::amqp::{self, Received, TestQueue};
use support::shop::Shop;
use support::{Binary, purser_command, spawn_app, spawn_app_with};

const CARD: &str = "pm_card_visa";

/// The order's stream key: GraphQL ids are `base64url("Order:<uuid>")`.
fn key_of(order: &str) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(order)
        .expect("a global id");
    let raw = String::from_utf8(raw).unwrap();
    format!("order-{}", raw.strip_prefix("Order:").expect("an order id"))
}

/// The order events one order produced, de-duplicated by message id, in arrival order.
fn order_events<'a>(got: &'a [Received], order: &str) -> Vec<&'a Received> {
    let key = key_of(order);
    let mut seen = HashSet::new();
    got.iter()
        .filter(|m| m.body["key"] == key && m.routing_key.starts_with("order."))
        .filter(|m| seen.insert(m.message_id.clone()))
        .collect()
}

fn confirmed(got: &[Received], order: &str) -> bool {
    order_events(got, order)
        .iter()
        .any(|m| m.routing_key == "order.confirmed")
}

/// Every message is a well-formed integration event, and the order's events are exactly
/// placed, paid, confirmed, in that order, each under one message id.
fn assert_order_went_out(got: &[Received], order: &str) {
    for m in got {
        assert_eq!(
            m.message_id, m.body["id"],
            "message_id is the event id: {m:?}"
        );
        assert_eq!(
            m.routing_key, m.body["type"],
            "routing key is the type: {m:?}"
        );
        assert_eq!(m.body["version"], 1);
    }
    let events = order_events(got, order);
    let types: Vec<&str> = events.iter().map(|m| m.routing_key.as_str()).collect();
    assert_eq!(
        types,
        ["order.placed", "order.paid", "order.confirmed"],
        "order {order}"
    );
    // A message id names one event: repeats (at-least-once) are copies, never another event.
    for m in got.iter().filter(|m| m.body["key"] == key_of(order)) {
        let first = events.iter().find(|e| e.message_id == m.message_id);
        assert_eq!(first.map(|e| &e.body), Some(&m.body), "{m:?}");
    }
    assert!(
        events[0].correlation_id.is_some(),
        "a checkout has a correlation id"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkout_reaches_the_broker_in_order_also_across_a_connection_cut() {
    if !amqp::available("a_checkout_reaches_the_broker_in_order_also_across_a_connection_cut") {
        return;
    }
    let q = TestQueue::new().await;
    let app = spawn_app_with(
        Role::All,
        &[
            ("PURSER_AMQP_URL", amqp::URL),
            ("PURSER_AMQP_EXCHANGE", &q.exchange),
        ],
    )
    .await;
    let shop = Shop::new(&app).await;
    shop.product("BROKER-1", 1500, 100).await;
    let first = shop.order_from(&[("BROKER-1", 1)], CARD).await;
    let mut got = q.collect_until(|m| confirmed(m, &first)).await;

    // The broker drops every connection: the publisher finds its link dead on the next batch,
    // fails it, and publishes it again on a new connection. Orders placed meanwhile, and
    // another cut while they flow, lose nothing.
    let could_cut = amqp::cut_connections();
    let mut orders = Vec::new();
    for i in 0..4 {
        orders.push(shop.order_from(&[("BROKER-1", 1)], CARD).await);
        if i == 1 && could_cut {
            amqp::cut_connections();
        }
    }
    got.extend(
        q.collect_until(|m| orders.iter().all(|o| confirmed(m, o)))
            .await,
    );
    for o in std::iter::once(&first).chain(&orders) {
        assert_order_went_out(&got, o);
    }
    let products: Vec<_> = got
        .iter()
        .filter(|m| m.routing_key == "product.created")
        .collect();
    assert_eq!(products.len(), 1, "{products:?}");
    assert!(
        could_cut,
        "rabbitmqctl could not cut the connections; the cut was not tested"
    );
    q.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_publisher_process_picks_up_where_its_checkpoint_is() {
    if !amqp::available("a_killed_publisher_process_picks_up_where_its_checkpoint_is") {
        return;
    }
    let q = TestQueue::new().await;
    // The shop runs without a broker; `purser publisher` is a process of its own.
    let app = spawn_app().await;
    let publisher = || {
        let mut cmd = purser_command(&app.db.url());
        cmd.arg("publisher")
            .env("PURSER_AMQP_URL", amqp::URL)
            .env("PURSER_AMQP_EXCHANGE", &q.exchange);
        Binary::spawn(cmd)
    };
    let mut running = publisher();
    let shop = Shop::new(&app).await;
    shop.product("BROKER-2", 900, 100).await;
    let first = shop.order_from(&[("BROKER-2", 1)], CARD).await;
    let mut got = q.collect_until(|m| confirmed(m, &first)).await;

    // SIGKILL while orders go on; they wait in the log until a publisher runs again.
    let second = shop.order_from(&[("BROKER-2", 2)], CARD).await;
    running.kill();
    let mut orders = vec![second];
    for _ in 0..2 {
        orders.push(shop.order_from(&[("BROKER-2", 1)], CARD).await);
    }
    for o in &orders {
        shop.wait_for_status(o, &["CONFIRMED"]).await;
    }
    let _restarted = publisher();
    got.extend(
        q.collect_until(|m| orders.iter().all(|o| confirmed(m, o)))
            .await,
    );
    for o in std::iter::once(&first).chain(&orders) {
        assert_order_went_out(&got, o);
    }
    q.delete().await;
}

#[tokio::test]
async fn the_publisher_role_needs_a_broker_url() {
    let app = spawn_app().await;
    let (code, _, stderr) = support::run_with_timeout(
        {
            let mut cmd = purser_command(&app.db.url());
            cmd.arg("publisher");
            cmd
        },
        std::time::Duration::from_secs(30),
    );
    assert_ne!(code, Some(0));
    assert!(stderr.contains("PURSER_AMQP_URL"), "{stderr}");
}
