//! The read side end to end: checkouts through the real command path and process managers,
//! then every read model over HTTP GraphQL with real bearer tokens, read-your-writes with
//! `minPosition`, and every read model rebuilt from zero equal to the one built live.

mod support;

use std::time::Duration;

use purser_domain::customer::Role;
use purser_projections::{Projector, table_checksum};
use serde_json::{Value, json};
use support::shop::{CARD_DECLINED, CARD_OK, Shop};
use support::spawn_app;
use tokio_util::sync::CancellationToken;

/// Every table of every read model, with its checksum.
async fn checksums(pool: &sqlx::PgPool) -> Vec<(String, (i64, String))> {
    let mut out = Vec::new();
    for p in purser_projections::all() {
        for table in p.tables() {
            out.push((
                table.to_string(),
                table_checksum(pool, table).await.unwrap(),
            ));
        }
    }
    out
}

/// Runs every projection until each has applied the log up to its head as it is now.
async fn run_to_head(projector: &Projector, services: &purser::services::Services) {
    let head = services
        .store
        .last_committed()
        .await
        .unwrap()
        .map(|h| h.position)
        .unwrap_or_default();
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (projector, stop) = (projector.clone(), stop.clone());
        async move { projector.run(stop).await }
    });
    let reached = services
        .checkpoints
        .wait_for(&projector.names(), head, Duration::from_secs(60))
        .await
        .unwrap();
    stop.cancel();
    running.await.unwrap();
    assert!(reached, "the projections did not reach {head}");
}

fn codes(r: &Value) -> Vec<&str> {
    r["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or(""))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_land_in_every_read_model_and_each_viewer_sees_their_share() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("LAMP-1", 4_999, 10).await;
    shop.product("BULB-1", 499, 40).await;
    let ann = app.token_for("ann@example.com", &[]).await;
    let bob = app.token_for("bob@example.com", &[]).await;
    let analyst = app.token_for("analyst@example.com", &[Role::Analyst]).await;

    // A guest checkout with Ann's email: it becomes Ann's once she (verified) claims it.
    let cart = shop.cart(&[("LAMP-1", 2), ("BULB-1", 3)]).await;
    let placed = shop.checkout(&cart, "read-side-1", CARD_OK).await;
    assert_eq!(placed["userErrors"], json!([]), "{placed}");
    let order_id = placed["orderId"].as_str().unwrap().to_owned();
    let position = placed["position"].as_str().unwrap().to_owned();

    // Read-your-writes: with the position the mutation returned, the cart is already closed.
    let r = app
        .graphql(
            "query($id: ID!, $at: String) { cart(id: $id, minPosition: $at) { status orderId itemCount subtotal { amount } } }",
            json!({ "id": cart, "at": position }),
        )
        .await;
    assert_eq!(
        r["data"]["cart"],
        json!({ "status": "CHECKED_OUT", "orderId": order_id, "itemCount": 5,
                "subtotal": { "amount": 2 * 4_999 + 3 * 499 } }),
        "{r}"
    );

    // A second order whose payment is declined.
    let declined = shop.order_from(&[("BULB-1", 1)], CARD_DECLINED).await;
    shop.wait_for_status(&order_id, &["CONFIRMED"]).await;
    shop.wait_for_status(&declined, &["CANCELLED"]).await;
    app.settle().await;
    let claim = "mutation { customerClaimGuestOrders { claimedOrders userErrors { code } } }";
    let r = app.graphql_as(&ann, claim, json!({})).await;
    let claimed = &r["data"]["customerClaimGuestOrders"];
    assert_eq!(
        claimed["claimedOrders"].as_array().map(Vec::len),
        Some(2),
        "{r}"
    );
    app.settle().await;

    // Ann reads her order with its lines, products (live stock: the declined order's unit is
    // back) and timeline; Bob and strangers get null.
    let q = "query($id: ID!) { order(id: $id) {
        status total { amount formatted } payment { reference }
        lines { sku quantity product { name stock { available } } }
        timeline { status event }
    } }";
    let r = app.graphql_as(&ann, q, json!({ "id": order_id })).await;
    let order = &r["data"]["order"];
    assert_eq!(order["status"], "CONFIRMED", "{r}");
    assert_eq!(order["total"]["amount"], 2 * 4_999 + 3 * 499);
    assert_eq!(
        order["lines"],
        json!([
            { "sku": "LAMP-1", "quantity": 2, "product": { "name": "Product LAMP-1", "stock": { "available": 8 } } },
            { "sku": "BULB-1", "quantity": 3, "product": { "name": "Product BULB-1", "stock": { "available": 37 } } }
        ])
    );
    assert_eq!(
        order["timeline"][0],
        json!({ "status": "PENDING", "event": "OrderPlaced" })
    );
    let not_found = json!({ "data": { "order": null } });
    assert_eq!(
        app.graphql_as(&bob, q, json!({ "id": order_id })).await,
        not_found
    );
    assert_eq!(app.graphql(q, json!({ "id": order_id })).await, not_found);
    let r = app.graphql(q, json!({ "id": "not an id" })).await;
    assert_eq!(codes(&r), ["BAD_USER_INPUT"]);

    // Ann's history holds both orders (the declined one too), newest first.
    let r = app
        .graphql_as(
            &ann,
            "{ me { customer { email ordersCount totalSpent { amount } } orders { edges { node { id status } } } } }",
            json!({}),
        )
        .await;
    let me = &r["data"]["me"];
    assert_eq!(me["customer"]["ordersCount"], 2, "{r}");
    assert_eq!(
        me["customer"]["totalSpent"],
        json!([{ "amount": 2 * 4_999 + 3 * 499 }])
    );
    let statuses: Vec<&str> = me["orders"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["CANCELLED", "CONFIRMED"]);

    // Analytics: for the analyst, not for Ann.
    let aq = "{ analytics {
        ordersByStatus { status orders }
        revenueByDay { captured { amount } net { amount } }
        paymentFailureReasons { reason failures }
        topProducts { sku unitsSold }
        conversionRate { cartsCreated ordersPlaced }
    } }";
    let r = app.graphql_as(&ann, aq, json!({})).await;
    assert_eq!(codes(&r), ["FORBIDDEN"]);
    let r = app.graphql(aq, json!({})).await;
    assert_eq!(codes(&r), ["UNAUTHENTICATED"]);
    let r = app.graphql_as(&analyst, aq, json!({})).await;
    let a = &r["data"]["analytics"];
    assert_eq!(
        a["ordersByStatus"],
        json!([{ "status": "CANCELLED", "orders": 1 }, { "status": "CONFIRMED", "orders": 1 }]),
        "{r}"
    );
    assert_eq!(
        a["revenueByDay"][0]["captured"]["amount"],
        2 * 4_999 + 3 * 499
    );
    assert_eq!(
        a["paymentFailureReasons"],
        json!([{ "reason": "declined", "failures": 1 }])
    );
    assert_eq!(
        a["topProducts"],
        json!([{ "sku": "BULB-1", "unitsSold": 3 }, { "sku": "LAMP-1", "unitsSold": 2 }])
    );
    assert_eq!(
        a["conversionRate"],
        json!({ "cartsCreated": 2, "ordersPlaced": 2 })
    );

    // Search with a typo, with facets, through the same endpoint.
    let r = app
        .graphql(
            "{ products(query: \"lampp\") { nodes { sku } totalCount facets { brands { value count } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        r["data"]["products"],
        json!({ "nodes": [{ "sku": "LAMP-1" }], "totalCount": 1,
                "facets": { "brands": [{ "value": "Acme", "count": 1 }] } }),
        "{r}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_rebuilt_from_zero_equal_the_ones_built_live() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("LAMP-1", 4_999, 10).await;
    shop.product("BULB-1", 499, 40).await;
    let confirmed = shop
        .order_from(&[("LAMP-1", 1), ("BULB-1", 2)], CARD_OK)
        .await;
    let declined = shop.order_from(&[("BULB-1", 1)], CARD_DECLINED).await;
    let refunded = shop.order_from(&[("LAMP-1", 1)], CARD_OK).await;
    shop.wait_for_status(&refunded, &["CONFIRMED"]).await;
    let r = shop
        .admin(
            "mutation($id: ID!) { orderRefund(input: {orderId: $id, amount: {amount: 999, currency: \"USD\"}, reason: \"scratched\", idempotencyKey: \"rs-1\"}) { userErrors { code message } } }",
            json!({ "id": refunded }),
        )
        .await;
    assert_eq!(r["data"]["orderRefund"]["userErrors"], json!([]), "{r}");
    shop.wait_for_status(&confirmed, &["CONFIRMED"]).await;
    shop.wait_for_status(&declined, &["CANCELLED"]).await;
    shop.wait_for_status(&refunded, &["REFUNDED"]).await;
    app.settle().await;

    // Stop the app so the log stops growing, finish what the live projectors had left, and
    // keep that as the live state.
    let services = app.services().clone();
    app.stop().await;
    let projector = services.projector();
    run_to_head(&projector, &services).await;
    let live = checksums(&services.pool).await;
    for table in [
        "sales.orders",
        "sales.order_timeline",
        "sales.carts",
        "sales.customers",
        "analytics.fact_payments",
        "analytics.fact_inventory_movements",
    ] {
        let rows = live.iter().find(|(t, _)| t == table).unwrap().1.0;
        assert!(rows > 0, "{table} has rows to compare");
    }

    // Reset every read model to empty and rebuild it from the log.
    for name in projector.names() {
        projector.reset(name).await.unwrap();
    }
    assert_eq!(
        table_checksum(&services.pool, "sales.orders")
            .await
            .unwrap()
            .0,
        0
    );
    run_to_head(&projector, &services).await;
    assert_eq!(checksums(&services.pool).await, live);
}
