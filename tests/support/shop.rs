//! Driving the shop through GraphQL as its users do: an admin stocking products, a customer
//! (or guest) filling a cart and checking out, everyone following the order.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use serde_json::{Value, json};

use super::TestApp;

pub const CARD_OK: &str = "4242 4242 4242 4242";
pub const CARD_INSUFFICIENT_FUNDS: &str = "4000000000009995";
pub const CARD_DECLINED: &str = "4000000000000002";
pub const CARD_BAD_CVC: &str = "4000000000000127";

pub struct Shop<'a> {
    pub app: &'a TestApp,
    pub admin: String,
}

pub fn address() -> Value {
    json!({ "name": "Ann Buyer", "line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US" })
}

impl<'a> Shop<'a> {
    pub async fn new(app: &'a TestApp) -> Shop<'a> {
        Shop {
            admin: app.admin_token().await,
            app,
        }
    }

    pub async fn admin(&self, query: &str, vars: Value) -> Value {
        let r = self.app.graphql_as(&self.admin, query, vars).await;
        assert!(r.get("errors").is_none(), "admin request failed: {r}");
        r
    }

    /// A physical product with `stock` units.
    pub async fn product(&self, sku: &str, price: i64, stock: i64) {
        let r = self
            .admin(
                "mutation($i: ProductCreateInput!) { productCreate(input: $i) { userErrors { code message } } }",
                json!({ "i": { "sku": sku, "name": format!("Product {sku}"), "brand": "Acme", "category": "Tests",
                               "price": { "amount": price, "currency": "USD" } } }),
            )
            .await;
        assert_eq!(r["data"]["productCreate"]["userErrors"], json!([]), "{r}");
        if stock > 0 {
            self.receive(sku, stock).await;
        }
    }

    pub async fn receive(&self, sku: &str, qty: i64) {
        let r = self
            .admin(
                "mutation($s: String!, $q: Int64!) { inventoryReceive(input: {sku: $s, quantity: $q}) { userErrors { code } } }",
                json!({ "s": sku, "q": qty }),
            )
            .await;
        assert_eq!(
            r["data"]["inventoryReceive"]["userErrors"],
            json!([]),
            "{r}"
        );
    }

    /// A digital product whose licenses come from `source` (`POOL` or `SIGNED`).
    pub async fn digital_product(&self, sku: &str, price: i64, source: &str) {
        let r = self
            .admin(
                "mutation($i: ProductCreateInput!) { productCreate(input: $i) { userErrors { code message } } }",
                json!({ "i": { "sku": sku, "name": format!("Software {sku}"), "category": "Software",
                               "price": { "amount": price, "currency": "USD" },
                               "digital": { "licenseSource": source, "seats": 1, "validityDays": 365 } } }),
            )
            .await;
        assert_eq!(r["data"]["productCreate"]["userErrors"], json!([]), "{r}");
    }

    /// A guest cart holding `lines`; returns its id.
    pub async fn cart(&self, lines: &[(&str, i64)]) -> String {
        let r = self
            .app
            .graphql(
                "mutation { cartCreate { cartId userErrors { code } } }",
                json!({}),
            )
            .await;
        let id = r["data"]["cartCreate"]["cartId"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_owned();
        if !lines.is_empty() {
            let lines: Vec<Value> = lines
                .iter()
                .map(|(s, q)| json!({ "sku": s, "quantity": q }))
                .collect();
            let r = self
                .app
                .graphql(
                    "mutation($c: ID!, $l: [CartLineInput!]!) { cartLinesAdd(cartId: $c, lines: $l) { userErrors { code message } } }",
                    json!({ "c": id, "l": lines }),
                )
                .await;
            assert_eq!(r["data"]["cartLinesAdd"]["userErrors"], json!([]), "{r}");
        }
        id
    }

    /// Checks a cart out as a guest; returns the payload.
    pub async fn checkout(&self, cart: &str, key: &str, card: &str) -> Value {
        let r = self
            .app
            .graphql(
                "mutation($i: CartCheckoutInput!) { cartCheckout(input: $i) { orderId replayed position userErrors { field code message } } }",
                json!({ "i": { "cartId": cart, "idempotencyKey": key, "email": "ann@example.com",
                               "paymentMethod": card, "shippingAddress": address() } }),
            )
            .await;
        assert!(r.get("errors").is_none(), "{r}");
        r["data"]["cartCheckout"].clone()
    }

    /// Checks out and returns the order id.
    pub async fn order_from(&self, lines: &[(&str, i64)], card: &str) -> String {
        let cart = self.cart(lines).await;
        let out = self
            .checkout(&cart, &uuid::Uuid::new_v4().to_string(), card)
            .await;
        assert_eq!(out["userErrors"], json!([]), "{out}");
        out["orderId"].as_str().unwrap().to_owned()
    }

    /// The order as the admin sees it.
    pub async fn order(&self, id: &str) -> Value {
        let r = self
            .admin(
                "query($id: ID!) { order(id: $id) { id status total { amount } refunded { amount }
                    payment { reference failureReason }
                    cancellation { reason }
                    lines { sku quantity licenseId }
                    timeline { status event } } }",
                json!({ "id": id }),
            )
            .await;
        r["data"]["order"].clone()
    }

    /// Waits until the order reaches one of `statuses` (the process manager runs in the
    /// background), failing after 30 seconds.
    pub async fn wait_for_status(&self, id: &str, statuses: &[&str]) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let o = self.order(id).await;
            if o["status"].as_str().is_some_and(|s| statuses.contains(&s)) {
                return o;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {id} never reached {statuses:?}; it is {o}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// (on hand, reserved, available) after the catalog has caught up with everything.
    pub async fn stock(&self, sku: &str) -> (i64, i64, i64) {
        self.app.settle().await;
        let r = self
            .app
            .graphql(
                "query($s: String!) { product(sku: $s) { stock { onHand reserved available } } }",
                json!({ "s": sku }),
            )
            .await;
        let s = &r["data"]["product"]["stock"];
        (
            s["onHand"].as_i64().unwrap(),
            s["reserved"].as_i64().unwrap(),
            s["available"].as_i64().unwrap(),
        )
    }
}
