//! `orderStatusChanged` over a real WebSocket speaking graphql-transport-ws.

mod support;

use purser::app::Role;
use serde_json::{Value, json};
use support::shop::Shop;
use support::spawn_app_with;
use support::ws::{Socket, connect, next, send};

/// Reads status updates until `last` arrives.
async fn statuses_until(ws: &mut Socket, last: &str) -> Vec<(String, i64)> {
    let mut seen = Vec::new();
    loop {
        let m = next(ws).await;
        assert_eq!(m["type"], "next", "{m}");
        let u = &m["payload"]["data"]["orderStatusChanged"];
        seen.push((
            u["status"].as_str().unwrap().to_owned(),
            u["version"].as_i64().unwrap(),
        ));
        if u["status"] == last {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_every_status_change_of_an_order_in_order() {
    // A slow gateway keeps the order in flight long enough to subscribe early.
    let mut app = spawn_app_with(
        Role::All,
        &[
            ("PURSER_SIM_TIMEOUT_DELAY_MS", "300"),
            ("PURSER_SIM_TIMEOUTS_BEFORE_SUCCESS", "1"),
        ],
    )
    .await;
    let shop = Shop::new(&app).await;
    shop.product("LIVE-1", 1_000, 5).await;
    let order = shop
        .order_from(&[("LIVE-1", 1)], "pm_card_timeoutThenSucceed")
        .await;

    let mut ws = connect(app.addr, &shop.admin).await;
    // The open connection shows in the metrics.
    let metrics = app.metrics().await;
    let open = support::sample(&metrics, "purser_websocket_connections", &[])
        .unwrap_or_else(|| panic!("no websocket gauge in\n{metrics}"));
    assert!(open >= 1.0, "{open} open websockets");
    send(
        &mut ws,
        json!({ "id": "1", "type": "subscribe", "payload": {
            "query": "subscription($id: ID!) { orderStatusChanged(orderId: $id) { status previousStatus event version position } }",
            "variables": { "id": order } } }),
    )
    .await;
    let mut seen = statuses_until(&mut ws, "CONFIRMED").await;
    for (mutation, input) in [
        ("orderStartProcessing(orderId: $id)", json!({ "id": order })),
        (
            "orderShip(input: {orderId: $id, trackingNumber: \"T1\", carrier: \"DHL\"})",
            json!({ "id": order }),
        ),
        ("orderDeliver(orderId: $id)", json!({ "id": order })),
    ] {
        shop.admin(
            &format!("mutation($id: ID!) {{ {mutation} {{ userErrors {{ code }} }} }}"),
            input,
        )
        .await;
    }
    seen.extend(statuses_until(&mut ws, "DELIVERED").await);

    let statuses: Vec<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
    let full = [
        "PENDING",
        "PAYMENT_PROCESSING",
        "PAID",
        "CONFIRMED",
        "PROCESSING",
        "SHIPPED",
        "DELIVERED",
    ];
    // The first update is the status at subscription time; from there, every change, in order.
    let start = full
        .iter()
        .position(|s| *s == statuses[0])
        .expect("a known status");
    assert!(
        start <= 2,
        "subscribed before the payment went through: {statuses:?}"
    );
    assert_eq!(statuses, full[start..].to_vec());
    assert!(
        seen.windows(2).all(|w| w[0].1 < w[1].1),
        "versions increase: {seen:?}"
    );

    // Someone else's order looks like no order at all.
    let stranger = app.token_for("stranger@example.com", &[]).await;
    let mut ws2 = connect(app.addr, &stranger).await;
    send(
        &mut ws2,
        json!({ "id": "2", "type": "subscribe", "payload": {
            "query": "subscription($id: ID!) { orderStatusChanged(orderId: $id) { status } }", "variables": { "id": order } } }),
    )
    .await;
    // The refusal arrives as an execution result with an error (graphql-transport-ws `next`).
    let m = next(&mut ws2).await;
    assert_eq!(m["payload"]["data"], Value::Null, "{m}");
    assert_eq!(
        m["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{m}"
    );
    app.stop().await;
}
