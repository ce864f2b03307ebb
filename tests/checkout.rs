//! The commerce core end to end: carts, checkout, the checkout process manager, payments,
//! stock, deadlines and the admin lifecycle, all through GraphQL against the running app.

mod support;

use std::time::Duration;

use purser::app::Role;
use purser_domain::customer::Role as UserRole;
use serde_json::json;
use support::shop::{CARD_BAD_CVC, CARD_DECLINED, CARD_INSUFFICIENT_FUNDS, CARD_OK, Shop};
use support::{spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_physical_checkout_reaches_confirmed_and_moves_stock_once() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("LAMP-1", 4_999, 10).await;
    shop.product("BULB-1", 499, 40).await;
    let cart = shop.cart(&[("LAMP-1", 2), ("BULB-1", 6)]).await;
    let placed = shop.checkout(&cart, "key-1", CARD_OK).await;
    assert_eq!(placed["userErrors"], json!([]));
    assert_eq!(placed["replayed"], false);
    let order_id = placed["orderId"].as_str().unwrap();

    let order = shop.wait_for_status(order_id, &["CONFIRMED"]).await;
    assert_eq!(order["total"]["amount"], 2 * 4_999 + 6 * 499);
    assert!(
        order["payment"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("sim_ch_")
    );
    let steps: Vec<&str> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    for expected in ["PENDING", "PAYMENT_PROCESSING", "PAID", "CONFIRMED"] {
        assert!(
            steps.contains(&expected),
            "timeline {steps:?} lacks {expected}"
        );
    }
    assert_eq!(shop.stock("LAMP-1").await, (8, 0, 8));
    assert_eq!(shop.stock("BULB-1").await, (34, 0, 34));

    // The same checkout sent again returns the same order and changes nothing.
    let again = shop.checkout(&cart, "key-1", CARD_OK).await;
    assert_eq!(again["orderId"], placed["orderId"]);
    assert_eq!(again["replayed"], true);
    // The cart is closed to any other checkout.
    let other = shop.checkout(&cart, "key-2", CARD_OK).await;
    assert_eq!(other["userErrors"][0]["code"], "CART_CLOSED");
    assert_eq!(shop.stock("LAMP-1").await, (8, 0, 8));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_failures_cancel_the_order_and_put_stock_back() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("MUG-1", 1_200, 20).await;
    for (card, reason) in [
        (CARD_INSUFFICIENT_FUNDS, "insufficient_funds"),
        (CARD_DECLINED, "declined"),
        (CARD_BAD_CVC, "invalid_payment_details"),
    ] {
        let order_id = shop.order_from(&[("MUG-1", 3)], card).await;
        let order = shop.wait_for_status(&order_id, &["CANCELLED"]).await;
        let steps: Vec<&str> = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_str().unwrap())
            .collect();
        assert!(steps.contains(&"PAYMENT_FAILED"), "{steps:?}");
        assert_eq!(order["payment"]["failureReason"], reason, "{order}");
    }
    assert_eq!(
        shop.stock("MUG-1").await,
        (20, 0, 20),
        "stock is back where it started"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_timeouts_are_retried_with_backoff_then_fail_or_succeed() {
    let mut app = spawn_app_with(
        Role::All,
        &[
            ("PURSER_SIM_TIMEOUT_DELAY_MS", "20"),
            ("PURSER_CHARGE_ATTEMPTS", "3"),
            ("PURSER_SIM_TIMEOUTS_BEFORE_SUCCESS", "2"),
        ],
    )
    .await;
    let shop = Shop::new(&app).await;
    shop.product("CUP-1", 800, 10).await;

    // Times out on every attempt: after three the payment fails as a gateway timeout.
    let failed = shop.order_from(&[("CUP-1", 1)], "pm_card_timeout").await;
    let order = shop.wait_for_status(&failed, &["CANCELLED"]).await;
    assert_eq!(
        order["payment"]["failureReason"], "gateway_timeout",
        "{order}"
    );
    // Times out twice, then goes through on the third attempt.
    let recovered = shop
        .order_from(&[("CUP-1", 1)], "pm_card_timeoutThenSucceed")
        .await;
    shop.wait_for_status(&recovered, &["CONFIRMED"]).await;
    let attempts: i64 = sqlx::query_scalar(
        "select count(*) from es.events where event_type = 'PaymentAttemptFailed' and data->>'order_id' = $1",
    )
    .bind(recovered_uuid(&recovered))
    .fetch_one(&app.services().pool)
    .await
    .unwrap();
    assert_eq!(attempts, 2, "each failed attempt is recorded once");
    assert_eq!(shop.stock("CUP-1").await, (9, 0, 9));
    app.stop().await;
}

/// The UUID inside an opaque Order id.
fn recovered_uuid(global: &str) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(global)
        .unwrap();
    String::from_utf8(raw)
        .unwrap()
        .trim_start_matches("Order:")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_cannot_be_reserved_cancels_the_order_and_releases_the_others() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("PEN-1", 150, 5).await;
    shop.product("INK-1", 300, 5).await;
    let cart = shop.cart(&[("PEN-1", 2), ("INK-1", 5)]).await;
    // Between filling the cart and checking out, two units of ink are lost.
    shop.admin(
        "mutation { inventoryAdjust(input: {sku: \"INK-1\", delta: -2, reason: LOST, note: \"dropped\"}) { userErrors { code } } }",
        json!({}),
    )
    .await;
    let placed = shop.checkout(&cart, "k", CARD_OK).await;
    let order = shop
        .wait_for_status(placed["orderId"].as_str().unwrap(), &["CANCELLED"])
        .await;
    let steps: Vec<&str> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert!(steps.contains(&"INVENTORY_UNAVAILABLE"), "{steps:?}");
    assert!(!steps.contains(&"PAID"), "nobody was charged: {steps:?}");
    assert_eq!(shop.stock("PEN-1").await, (5, 0, 5));
    assert_eq!(shop.stock("INK-1").await, (3, 0, 3));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_checkouts_for_ten_units_confirm_exactly_ten() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("HOT-1", 9_900, 10).await;
    // Fifty shoppers each put one unit in a cart while ten are still available...
    let mut carts = Vec::new();
    for _ in 0..50 {
        carts.push(shop.cart(&[("HOT-1", 1)]).await);
    }
    // ...then all check out at once.
    let checkouts = carts.iter().enumerate().map(|(i, cart)| {
        let shop = &shop;
        async move { shop.checkout(cart, &format!("k{i}"), CARD_OK).await }
    });
    let placed = futures::future::join_all(checkouts).await;
    let ids: Vec<String> = placed
        .iter()
        .map(|p| p["orderId"].as_str().unwrap().to_owned())
        .collect();
    let mut confirmed = 0;
    let mut cancelled = 0;
    for id in &ids {
        let o = shop.wait_for_status(id, &["CONFIRMED", "CANCELLED"]).await;
        if o["status"] == "CONFIRMED" {
            confirmed += 1;
        } else {
            let steps: Vec<&str> = o["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["status"].as_str().unwrap())
                .collect();
            assert!(steps.contains(&"INVENTORY_UNAVAILABLE"), "{steps:?}");
            cancelled += 1;
        }
    }
    assert_eq!((confirmed, cancelled), (10, 40));
    assert_eq!(shop.stock("HOT-1").await, (0, 0, 0));
    // The numbers agree with the events.
    let pool = &app.services().pool;
    let (reserved, confirmed_res, released): (i64, i64, i64) = sqlx::query_as(
        "select count(*) filter (where event_type = 'StockReserved'),
                count(*) filter (where event_type = 'ReservationConfirmed'),
                count(*) filter (where event_type = 'ReservationReleased')
         from es.events where stream_name = 'inventory-HOT-1'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(reserved, confirmed_res + released);
    assert_eq!(confirmed_res, 10);
    let captures: i64 =
        sqlx::query_scalar("select count(*) from gateway_sim.charges where outcome = 'captured'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(captures, 10, "only the orders that got stock were charged");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_ship_deliver_cancel_and_refund() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("BOX-1", 2_000, 10).await;

    let shipped = shop.order_from(&[("BOX-1", 1)], CARD_OK).await;
    shop.wait_for_status(&shipped, &["CONFIRMED"]).await;
    for (mutation, input) in [
        ("orderStartProcessing(orderId: $id)", None),
        (
            "orderShip(input: $i)",
            Some(json!({ "orderId": shipped, "trackingNumber": "1Z999", "carrier": "UPS" })),
        ),
        ("orderDeliver(orderId: $id)", None),
    ] {
        let (sig, vars) = match &input {
            Some(i) => ("$i: OrderShipInput!", json!({ "i": i })),
            None => ("$id: ID!", json!({ "id": shipped })),
        };
        let r = shop
            .admin(
                &format!("mutation({sig}) {{ {mutation} {{ userErrors {{ code message }} }} }}"),
                vars,
            )
            .await;
        let payload = r["data"].as_object().unwrap().values().next().unwrap();
        assert_eq!(payload["userErrors"], json!([]), "{r}");
    }
    shop.wait_for_status(&shipped, &["DELIVERED"]).await;
    // Shipping a delivered order is an illegal transition: a user error, not a 500.
    let r = shop
        .admin(
            "mutation($id: ID!) { orderShip(input: {orderId: $id, trackingNumber: \"x\", carrier: \"y\"}) { userErrors { code } } }",
            json!({ "id": shipped }),
        )
        .await;
    assert_eq!(
        r["data"]["orderShip"]["userErrors"][0]["code"],
        "INVALID_TRANSITION"
    );

    // An admin cancels a paid, confirmed order: stock goes back on the shelf, money back to
    // the customer.
    let cancelled = shop.order_from(&[("BOX-1", 2)], CARD_OK).await;
    shop.wait_for_status(&cancelled, &["CONFIRMED"]).await;
    assert_eq!(shop.stock("BOX-1").await, (7, 0, 7));
    let r = shop
        .admin(
            "mutation($id: ID!) { orderCancel(input: {orderId: $id, reason: \"customer called\"}) { userErrors { code } } }",
            json!({ "id": cancelled }),
        )
        .await;
    assert_eq!(r["data"]["orderCancel"]["userErrors"], json!([]));
    let o = shop.wait_for_status(&cancelled, &["REFUNDED"]).await;
    assert_eq!(o["refunded"]["amount"], 4_000);
    assert_eq!(shop.stock("BOX-1").await, (9, 0, 9));

    // A partial refund of the delivered order, sent twice with one key, refunds once.
    for _ in 0..2 {
        let r = shop
            .admin(
                "mutation($id: ID!) { orderRefund(input: {orderId: $id, amount: {amount: 500, currency: \"USD\"}, reason: \"scratched\", idempotencyKey: \"r1\"}) { userErrors { code message } } }",
                json!({ "id": shipped }),
            )
            .await;
        assert_eq!(r["data"]["orderRefund"]["userErrors"], json!([]), "{r}");
    }
    let o = shop.wait_for_status(&shipped, &["REFUNDED"]).await;
    assert_eq!(o["refunded"]["amount"], 500);
    let refunds: i64 = sqlx::query_scalar("select count(*) from gateway_sim.refunds")
        .fetch_one(&app.services().pool)
        .await
        .unwrap();
    assert_eq!(
        refunds, 2,
        "one for the cancellation, one for the partial refund"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_manage_the_shop() {
    let mut app = spawn_app().await;
    let customer = app.token_for("cat@example.com", &[]).await;
    let create = "mutation { productCreate(input: {sku: \"X-1\", name: \"X\", price: {amount: 1, currency: \"USD\"}}) { userErrors { code } } }";
    let r = app.graphql(create, json!({})).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let r = app.graphql_as(&customer, create, json!({})).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "FORBIDDEN");
    // A forged or expired token is a 401 with a JSON body, not a silent guest session.
    let res = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth("not.a.token")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let admin = app.token_for("boss@example.com", &[UserRole::Admin]).await;
    let r = app.graphql_as(&admin, create, json!({})).await;
    assert_eq!(r["data"]["productCreate"]["userErrors"], json!([]));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_user_errors_never_a_500() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("OK-1", 1_000, 5).await;
    let cart = shop.cart(&[]).await;
    let add = |sku: &str, qty: serde_json::Value| {
        let vars = json!({ "c": cart, "l": [{ "sku": sku, "quantity": qty }] });
        let app = &app;
        async move {
            app.graphql(
                "mutation($c: ID!, $l: [CartLineInput!]!) { cartLinesAdd(cartId: $c, lines: $l) { userErrors { field code message } } }",
                vars,
            )
            .await
        }
    };
    let code = |r: &serde_json::Value| {
        r["data"]["cartLinesAdd"]["userErrors"][0]["code"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(
        code(&add("NOPE-1", json!(1)).await).as_deref(),
        Some("PRODUCT_NOT_FOUND")
    );
    assert_eq!(
        code(&add("OK-1", json!(0)).await).as_deref(),
        Some("INVALID_INPUT")
    );
    assert_eq!(
        code(&add("OK-1", json!(-3)).await).as_deref(),
        Some("INVALID_INPUT")
    );
    assert_eq!(
        code(&add("OK-1", json!(5_000_000_000i64)).await).as_deref(),
        Some("INVALID_INPUT")
    );
    assert_eq!(
        code(&add("OK-1", json!(6)).await).as_deref(),
        Some("INSUFFICIENT_STOCK")
    );
    assert_eq!(
        code(&add(&"A".repeat(500), json!(1)).await).as_deref(),
        Some("INVALID_INPUT")
    );
    // A cart in another currency.
    let r = app
        .graphql(
            "mutation { cartCreate(input: {currency: \"EUR\"}) { cartId } }",
            json!({}),
        )
        .await;
    let eur = r["data"]["cartCreate"]["cartId"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .graphql(
            "mutation($c: ID!) { cartLinesAdd(cartId: $c, lines: [{sku: \"OK-1\", quantity: 1}]) { userErrors { code } } }",
            json!({ "c": eur }),
        )
        .await;
    assert_eq!(
        r["data"]["cartLinesAdd"]["userErrors"][0]["code"],
        "CURRENCY_MISMATCH"
    );
    let r = app
        .graphql(
            "mutation { cartCreate(input: {currency: \"XYZ\"}) { userErrors { code } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        r["data"]["cartCreate"]["userErrors"][0]["code"],
        "INVALID_INPUT"
    );
    // An empty cart, a malformed id, a missing email, a bad card number.
    assert_eq!(
        shop.checkout(&cart, "k", CARD_OK).await["userErrors"][0]["code"],
        "CART_EMPTY"
    );
    assert_eq!(
        shop.checkout("not-an-id", "k", CARD_OK).await["userErrors"][0]["code"],
        "INVALID_ID"
    );
    let r = app
        .graphql(
            "mutation($c: ID!) { cartCheckout(input: {cartId: $c, idempotencyKey: \"k\", paymentMethod: \"pm_card_visa\"}) { userErrors { code } } }",
            json!({ "c": shop.cart(&[("OK-1", 1)]).await }),
        )
        .await;
    assert_eq!(
        r["data"]["cartCheckout"]["userErrors"][0]["code"],
        "EMAIL_REQUIRED"
    );
    let r = shop
        .checkout(&shop.cart(&[("OK-1", 1)]).await, "k", "4242 4242 4242 4241")
        .await;
    assert_eq!(r["userErrors"][0]["code"], "INVALID_INPUT");
    assert!(
        !r.to_string().contains("4242 4242 4242 4241"),
        "the card number is never echoed"
    );
    // Nothing was reserved or charged by any of it.
    assert_eq!(shop.stock("OK-1").await, (5, 0, 5));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_reservation_expires_and_its_stock_returns() {
    // Reservations hold for one second; the gateway takes far longer to answer.
    let mut app = spawn_app_with(
        Role::All,
        &[
            ("PURSER_RESERVATION_TTL_SECS", "1"),
            ("PURSER_SIM_TIMEOUT_DELAY_MS", "1500"),
            ("PURSER_CHARGE_ATTEMPTS", "2"),
        ],
    )
    .await;
    let shop = Shop::new(&app).await;
    shop.product("SLOW-1", 700, 4).await;
    let order_id = shop.order_from(&[("SLOW-1", 3)], "pm_card_timeout").await;
    let order = shop.wait_for_status(&order_id, &["CANCELLED"]).await;
    assert!(
        order["cancellation"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{order}"
    );
    let released: i64 = sqlx::query_scalar(
        "select count(*) from es.events where stream_name = 'inventory-SLOW-1'
           and event_type = 'ReservationReleased' and lower(data->>'reason') = 'expired'",
    )
    .fetch_one(&app.services().pool)
    .await
    .unwrap();
    assert_eq!(released, 1);
    assert_eq!(shop.stock("SLOW-1").await, (4, 0, 4));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cart_is_abandoned_even_across_a_restart() {
    let mut app = spawn_app_with(Role::All, &[("PURSER_CART_IDLE_SECS", "2")]).await;
    let shop = Shop::new(&app).await;
    shop.product("IDLE-1", 100, 5).await;
    let cart = shop.cart(&[("IDLE-1", 1)]).await;
    let cart_stream = format!("cart-{}", recovered_cart_uuid(&cart));
    app.settle().await;
    // The deadline is durable: stop before it falls due and start again.
    app.restart().await;
    let pool = app.services().pool.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let abandoned: i64 = sqlx::query_scalar("select count(*) from es.events where stream_name = $1 and event_type = 'CartAbandoned'")
            .bind(&cart_stream)
            .fetch_one(&pool)
            .await
            .unwrap();
        if abandoned == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cart was never abandoned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = app
        .graphql(
            "mutation($c: ID!) { cartLinesAdd(cartId: $c, lines: [{sku: \"IDLE-1\", quantity: 1}]) { userErrors { code } } }",
            json!({ "c": cart }),
        )
        .await;
    assert_eq!(
        r["data"]["cartLinesAdd"]["userErrors"][0]["code"],
        "CART_CLOSED"
    );
    app.stop().await;
}

fn recovered_cart_uuid(global: &str) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(global)
        .unwrap();
    String::from_utf8(raw)
        .unwrap()
        .trim_start_matches("Cart:")
        .to_owned()
}
