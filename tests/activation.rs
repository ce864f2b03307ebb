//! Buying software as a guest, end to end: a guest pays, an
//! account is provisioned, a license is issued (signed, or from a pool) and attached, the
//! order is fulfilled, the guest follows it with a status token and signs in once with a
//! single-use token; when no license can be issued the payment is refunded.

mod support;

use std::time::Duration;

use purser::app::Role;
use purser_command_api::licensing::{LicenseSigner, verify};
use serde_json::{Value, json};
use support::shop::{CARD_OK, Shop, address};
use support::{spawn_app, spawn_app_with};

/// The public half of the signing key tests/support configures.
fn public_key() -> String {
    LicenseSigner::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .unwrap()
        .public_key_base64()
}

async fn guest_checkout(shop: &Shop<'_>, sku: &str, email: &str) -> (String, String) {
    let cart = shop.cart(&[(sku, 1)]).await;
    let r = shop
        .app
        .graphql(
            "mutation($i: CartCheckoutInput!) { cartCheckout(input: $i) { orderId statusToken userErrors { code message } } }",
            json!({ "i": { "cartId": cart, "idempotencyKey": "k", "email": email, "paymentMethod": CARD_OK } }),
        )
        .await;
    let p = &r["data"]["cartCheckout"];
    assert_eq!(p["userErrors"], json!([]), "{r}");
    (
        p["orderId"].as_str().unwrap().to_owned(),
        p["statusToken"].as_str().unwrap().to_owned(),
    )
}

/// Polls the guest's status view until `done` holds.
async fn follow(shop: &Shop<'_>, order: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = shop
            .app
            .graphql(
                "query($o: ID!, $t: String!) { checkoutStatus(orderId: $o, statusToken: $t) {
                    order { status lines { sku licenseId } timeline { status } refunded { amount } cancellation { reason } }
                    signInToken } }",
                json!({ "o": order, "t": token }),
            )
            .await;
        let s = r["data"]["checkoutStatus"].clone();
        if !s.is_null() && done(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never got there: {r}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_buys_signed_software_follows_the_order_and_signs_in_once() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.digital_product("AV-1Y", 4_999, "SIGNED").await;
    let (order, status_token) = guest_checkout(&shop, "AV-1Y", "guest@example.com").await;

    // Someone without the token sees nothing.
    let r = app
        .graphql(
            "query($o: ID!) { checkoutStatus(orderId: $o, statusToken: \"nope\") { signInToken } }",
            json!({ "o": order }),
        )
        .await;
    assert_eq!(r["data"]["checkoutStatus"], Value::Null);

    let status = follow(&shop, &order, &status_token, |s| {
        s["signInToken"].is_string()
    })
    .await;
    assert_eq!(status["order"]["status"], "FULFILLED");
    assert!(status["order"]["lines"][0]["licenseId"].is_string());

    // The single-use token gives a session once.
    let sign_in = status["signInToken"].as_str().unwrap();
    let exchange = "mutation($t: String!) { customerSignInWithToken(token: $t) { token account { email } userErrors { code } } }";
    let first = app.graphql(exchange, json!({ "t": sign_in })).await;
    let session = first["data"]["customerSignInWithToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    assert_eq!(
        first["data"]["customerSignInWithToken"]["account"]["email"],
        "guest@example.com"
    );
    let second = app.graphql(exchange, json!({ "t": sign_in })).await;
    assert_eq!(
        second["data"]["customerSignInWithToken"]["userErrors"][0]["code"],
        "TOKEN_ALREADY_USED"
    );
    assert!(second["data"]["customerSignInWithToken"]["token"].is_null());

    // With the session, the customer sees the license, and its key verifies offline.
    let me = app
        .graphql_as(&session, "{ me { customer { email } licenses { sku key status } orders(first: 5) { edges { node { status } } } } }", json!({}))
        .await;
    let license = &me["data"]["me"]["licenses"][0];
    assert_eq!(license["sku"], "AV-1Y", "{me}");
    let claims = verify(license["key"].as_str().unwrap(), &public_key())
        .expect("the key verifies with the public key");
    assert_eq!(claims["sku"], "AV-1Y");
    assert_eq!(me["data"]["me"]["customer"]["email"], "guest@example.com");
    assert_eq!(
        me["data"]["me"]["orders"]["edges"][0]["node"]["status"],
        "FULFILLED"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_keys_are_issued_once_each_and_an_empty_pool_refunds() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.digital_product("PDF-PRO", 2_999, "POOL").await;
    let load = "mutation($k: [String!]!) { licenseKeysLoad(input: {sku: \"PDF-PRO\", keys: $k}) { loaded userErrors { code } } }";
    let r = shop
        .admin(load, json!({ "k": ["KEY-AAAA-1111", "KEY-BBBB-2222"] }))
        .await;
    assert_eq!(r["data"]["licenseKeysLoad"]["loaded"], 2);
    // Loading a key again adds nothing: a key can only ever be issued once.
    let r = shop.admin(load, json!({ "k": ["KEY-AAAA-1111"] })).await;
    assert_eq!(r["data"]["licenseKeysLoad"]["loaded"], 0);
    // Keys only go into pool products.
    shop.digital_product("SIGNED-1", 100, "SIGNED").await;
    let r = shop
        .admin("mutation { licenseKeysLoad(input: {sku: \"SIGNED-1\", keys: [\"X\"]}) { userErrors { code } } }", json!({}))
        .await;
    assert_eq!(
        r["data"]["licenseKeysLoad"]["userErrors"][0]["code"],
        "NOT_A_POOL_PRODUCT"
    );

    let mut keys = Vec::new();
    for email in ["a@example.com", "b@example.com"] {
        let (order, token) = guest_checkout(&shop, "PDF-PRO", email).await;
        follow(&shop, &order, &token, |s| {
            s["order"]["status"] == "FULFILLED"
        })
        .await;
        let admin_view = shop
            .admin(
                "query($o: ID!) { order(id: $o) { lines { licenseId } } }",
                json!({ "o": order }),
            )
            .await;
        keys.push(
            admin_view["data"]["order"]["lines"][0]["licenseId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_ne!(keys[0], keys[1]);
    let issued: Vec<String> = sqlx::query_scalar("select data->>'key' from es.events where event_type = 'LicenseIssued' order by global_position")
        .fetch_all(&app.services().pool)
        .await
        .unwrap();
    assert_eq!(
        issued,
        vec!["KEY-AAAA-1111".to_string(), "KEY-BBBB-2222".to_string()]
    );

    // The pool is empty now: the third buyer is refunded and the order cancelled.
    let (order, token) = guest_checkout(&shop, "PDF-PRO", "c@example.com").await;
    let s = follow(&shop, &order, &token, |s| {
        s["order"]["status"] == "REFUNDED"
    })
    .await;
    let steps: Vec<&str> = s["order"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert!(steps.contains(&"CANCELLED"), "{steps:?}");
    assert_eq!(s["order"]["refunded"]["amount"], 2_999);
    assert!(
        s["order"]["cancellation"]["reason"]
            .as_str()
            .unwrap()
            .contains("pool"),
        "{s}"
    );
    assert!(
        s["signInToken"].is_null(),
        "nothing was delivered, so no sign-in"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_signing_key_signed_software_is_refunded_not_stuck() {
    let mut app = spawn_app_with(
        Role::All,
        &[
            ("PURSER_LICENSE_SIGNING_KEY", ""),
            ("PURSER_LICENSE_SIGNING_KEY_FILE", ""),
        ],
    )
    .await;
    let shop = Shop::new(&app).await;
    shop.digital_product("AV-2", 1_500, "SIGNED").await;
    let (order, token) = guest_checkout(&shop, "AV-2", "d@example.com").await;
    let s = follow(&shop, &order, &token, |s| {
        s["order"]["status"] == "REFUNDED"
    })
    .await;
    assert!(
        s["order"]["cancellation"]["reason"]
            .as_str()
            .unwrap()
            .contains("signing key"),
        "{s}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_order_completes_both_halves() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("LAPTOP-9", 99_900, 3).await;
    shop.digital_product("OFFICE-9", 9_900, "SIGNED").await;
    let cart = shop.cart(&[("LAPTOP-9", 1), ("OFFICE-9", 1)]).await;
    let r = app
        .graphql(
            "mutation($i: CartCheckoutInput!) { cartCheckout(input: $i) { orderId statusToken userErrors { code } } }",
            json!({ "i": { "cartId": cart, "idempotencyKey": "m", "email": "mix@example.com", "paymentMethod": CARD_OK, "shippingAddress": address() } }),
        )
        .await;
    let order = r["data"]["cartCheckout"]["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = r["data"]["cartCheckout"]["statusToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // The physical half is confirmed (ready to ship) and the digital half delivered.
    let s = follow(&shop, &order, &token, |s| s["signInToken"].is_string()).await;
    assert_eq!(s["order"]["status"], "CONFIRMED");
    assert_eq!(shop.stock("LAPTOP-9").await, (2, 0, 2));
    app.stop().await;
}
