//! The read queries executed against the schema over real read models: orders, carts, `me`,
//! analytics and catalog search, with the auth rules and bad input.

mod support;

use purser_api_core::wire::{global_id, uuid_global_id};
use purser_domain::CartId;
use purser_domain::cart::CartEvent;
use purser_domain::customer::Role;
use purser_domain::payment::PaymentFailureReason;
use purser_projections::Checkpoints;
use purser_testkit::TestDb;
use serde_json::{Value, json};
use support::scenario::{OrderSpec, Outcome, Scenario, catch_up_all, digital, physical, sku, t};
use support::{admin, anonymous, customer, error_codes, run, schema, schema_with, with_roles};

const ORDER: &str = "query($id: ID!) {
    order(id: $id) {
        id status email total { amount currency formatted } itemCount
        refunded { amount }
        payment { reference failureReason captured { amount } }
        tracking { trackingNumber carrier }
        cancellation { reason by }
        shippingAddress { city country }
        lines { lineNo sku name kind quantity unitPrice { amount } lineTotal { formatted }
                licenseId product { sku brand stock { available } } }
        timeline { seq status event detail }
    }
}";

async fn catalog(s: &Scenario) {
    s.product("LAP-13")
        .name("Laptop 13")
        .brand("Acme")
        .category("Computers")
        .price(100_000)
        .stock(10)
        .at(-60)
        .create()
        .await;
    s.product("MUG-1")
        .name("Mug")
        .brand("Acme")
        .category("Kitchen")
        .price(1_500)
        .stock(50)
        .at(-60)
        .create()
        .await;
    s.product("AV-1Y")
        .name("Antivirus")
        .brand("Shield")
        .category("Software")
        .price(4_999)
        .digital(true)
        .at(-60)
        .create()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_reads_with_lines_products_timeline_and_money() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let s = Scenario::new(pool.clone());
    catalog(&s).await;
    let order = OrderSpec::new(
        "ann@example.com",
        vec![
            physical("LAP-13", "Laptop 13", 1, 100_000),
            digital("AV-1Y", "Antivirus", 4_999),
        ],
        0,
        Outcome::Shipped,
    );
    s.order(&order).await;
    catch_up_all(&s).await;
    let schema = schema(&pool);

    let id = uuid_global_id("Order", order.order_id.as_uuid());
    let r = run(
        &schema,
        &customer("ann@example.com"),
        ORDER,
        json!({ "id": id }),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    let o = &r["data"]["order"];
    assert_eq!(o["id"], json!(id.to_string()));
    assert_eq!(o["status"], "SHIPPED");
    assert_eq!(
        o["total"],
        json!({ "amount": 104_999, "currency": "USD", "formatted": "$1,049.99" })
    );
    assert_eq!(o["itemCount"], 2);
    assert_eq!(
        o["tracking"],
        json!({ "trackingNumber": "1Z999", "carrier": "UPS" })
    );
    assert_eq!(o["cancellation"], Value::Null);
    assert_eq!(
        o["shippingAddress"],
        json!({ "city": "Springfield", "country": "US" })
    );
    assert_eq!(o["payment"]["captured"]["amount"], 104_999);
    assert!(
        o["payment"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("ch_")
    );
    let lines = o["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["kind"], "PHYSICAL");
    assert_eq!(lines[0]["lineTotal"]["formatted"], "$1,000.00");
    assert_eq!(
        lines[0]["product"],
        json!({ "sku": "LAP-13", "brand": "Acme", "stock": { "available": 9 } })
    );
    assert_eq!(lines[1]["kind"], "DIGITAL");
    assert_eq!(
        lines[1]["licenseId"],
        json!(uuid_global_id("License", order.license_id("AV-1Y").as_uuid()).to_string())
    );
    assert_eq!(lines[1]["product"]["stock"], Value::Null);
    let statuses: Vec<&str> = o["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "PENDING",
            "PAYMENT_PROCESSING",
            "PAID",
            "CONFIRMED",
            "CONFIRMED",
            "CONFIRMED",
            "PROCESSING",
            "SHIPPED"
        ]
    );
    assert_eq!(o["timeline"][7]["detail"]["carrier"], "UPS");

    // A bare UUID (as an event or a mutation may hand out) reads the same order.
    let r = run(
        &schema,
        &customer("ann@example.com"),
        "query($id: ID!) { order(id: $id) { status } }",
        json!({ "id": order.order_id.to_string() }),
    )
    .await;
    assert_eq!(r["data"]["order"]["status"], "SHIPPED", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_order_looks_exactly_like_a_missing_one() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let s = Scenario::new(pool.clone());
    catalog(&s).await;
    let anns = OrderSpec::new(
        "ann@example.com",
        vec![physical("MUG-1", "Mug", 1, 1_500)],
        0,
        Outcome::Paid,
    );
    s.order(&anns).await;
    catch_up_all(&s).await;
    let schema = schema(&pool);
    let q = "query($id: ID!) { order(id: $id) { status } }";
    let anns_id = json!({ "id": uuid_global_id("Order", anns.order_id.as_uuid()) });
    let missing_id = json!({ "id": uuid_global_id("Order", uuid::Uuid::now_v7()) });

    let as_bob = run(&schema, &customer("bob@example.com"), q, anns_id.clone()).await;
    let missing = run(&schema, &customer("bob@example.com"), q, missing_id).await;
    assert_eq!(as_bob, json!({ "data": { "order": null } }));
    assert_eq!(as_bob, missing, "refusal and absence are indistinguishable");
    let as_nobody = run(&schema, &anonymous(), q, anns_id.clone()).await;
    assert_eq!(as_nobody, missing);

    // The owner, admins and auditors see it.
    for viewer in [
        customer("ann@example.com"),
        admin(),
        with_roles("audit@example.com", &[Role::Auditor]),
    ] {
        let r = run(&schema, &viewer, q, anns_id.clone()).await;
        assert_eq!(r["data"]["order"]["status"], "CONFIRMED", "{r}");
    }

    // Listing every order is for staff only.
    let list = "{ orders(first: 10) { edges { node { email } } } }";
    let r = run(&schema, &customer("bob@example.com"), list, json!({})).await;
    assert_eq!(error_codes(&r), ["FORBIDDEN"]);
    let r = run(&schema, &anonymous(), list, json!({})).await;
    assert_eq!(error_codes(&r), ["UNAUTHENTICATED"]);
    let r = run(&schema, &admin(), list, json!({})).await;
    assert_eq!(
        r["data"]["orders"]["edges"],
        json!([{ "node": { "email": "ann@example.com" } }])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_do_not_parse_are_bad_user_input_not_errors_of_the_server() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let schema = schema(&pool);
    let product_id = global_id("Product", "MUG-1").to_string();
    let not_a_uuid = global_id("Order", "not-a-uuid").to_string();
    for (query, id) in [
        ("query($id: ID!) { order(id: $id) { status } }", "garbage"),
        (
            "query($id: ID!) { order(id: $id) { status } }",
            not_a_uuid.as_str(),
        ),
        (
            "query($id: ID!) { order(id: $id) { status } }",
            product_id.as_str(),
        ),
        ("query($id: ID!) { cart(id: $id) { status } }", "%%%"),
        ("query($id: ID!) { customer(id: $id) { email } }", ""),
        (
            "query($id: ID!) { orders(customerId: $id) { edges { cursor } } }",
            "nope",
        ),
    ] {
        let r = run(&schema, &admin(), query, json!({ "id": id })).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{query} {id}: {r}");
    }
    let bad_position = format!(
        "{{ order(id: \"{}\", minPosition: \"soon\") {{ status }} }}",
        uuid_global_id("Order", uuid::Uuid::now_v7()).as_str()
    );
    for bad in [
        "{ orders(first: 0) { edges { cursor } } }",
        "{ orders(first: 101) { edges { cursor } } }",
        "{ orders(after: \"zzz\") { edges { cursor } } }",
        bad_position.as_str(),
    ] {
        let r = run(&schema, &admin(), bad, json!({})).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{bad}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_lists_the_customers_own_orders_licenses_and_carts() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let s = Scenario::new(pool.clone());
    catalog(&s).await;
    s.register("ann@example.com", "Ann", -10).await;
    let mut orders = Vec::new();
    for (i, outcome) in [Outcome::Paid, Outcome::Delivered, Outcome::Refunded(1_000)]
        .into_iter()
        .enumerate()
    {
        let o = OrderSpec::new(
            "ann@example.com",
            vec![
                physical("MUG-1", "Mug", 2, 1_500),
                digital("AV-1Y", "Antivirus", 4_999),
            ],
            i as i64 * 10,
            outcome,
        );
        s.order(&o).await;
        orders.push(o);
    }
    s.order(&OrderSpec::new(
        "bob@example.com",
        vec![digital("AV-1Y", "Antivirus", 4_999)],
        40,
        Outcome::Paid,
    ))
    .await;
    let anns_cart = CartId::new();
    s.cart(
        anns_cart,
        Some("ann@example.com"),
        &[physical("MUG-1", "Mug", 3, 1_500)],
        50,
    )
    .await;
    s.cart(
        CartId::new(),
        Some("bob@example.com"),
        &[physical("MUG-1", "Mug", 1, 1_500)],
        50,
    )
    .await;
    catch_up_all(&s).await;
    let schema = schema(&pool);

    let q = "query($after: String) { me {
        customer { email name registered guest roles ordersCount totalSpent { amount currency } }
        orders(first: 2, after: $after) {
            edges { cursor node { id status } }
            pageInfo { hasNextPage endCursor }
        }
        licenses { id sku seats key status product { name } }
        carts(status: OPEN) { id itemCount subtotal { amount } lines { sku quantity product { name } } }
    } }";
    let r = run(&schema, &customer("ann@example.com"), q, json!({})).await;
    assert!(r["errors"].is_null(), "{r}");
    let me = &r["data"]["me"];
    assert_eq!(
        me["customer"],
        json!({
            "email": "ann@example.com", "name": "Ann", "registered": true, "guest": false,
            "roles": ["customer"], "ordersCount": 3,
            // Three orders of 7 999, 1 000 refunded.
            "totalSpent": [{ "amount": 3 * 7_999 - 1_000, "currency": "USD" }]
        })
    );
    let page: Vec<&Value> = me["orders"]["edges"].as_array().unwrap().iter().collect();
    assert_eq!(page.len(), 2);
    assert_eq!(
        page[0]["node"]["id"],
        json!(uuid_global_id("Order", orders[2].order_id.as_uuid()).to_string()),
        "newest first"
    );
    assert_eq!(me["orders"]["pageInfo"]["hasNextPage"], true);
    let licenses = me["licenses"].as_array().unwrap();
    assert_eq!(licenses.len(), 3, "only Ann's licenses");
    assert_eq!(licenses[0]["product"]["name"], "Antivirus");
    assert_eq!(licenses[0]["status"], "ATTACHED");
    assert_eq!(
        me["carts"],
        json!([{
            "id": uuid_global_id("Cart", anns_cart.as_uuid()).to_string(),
            "itemCount": 3, "subtotal": { "amount": 4_500 },
            "lines": [{ "sku": "MUG-1", "quantity": 3, "product": { "name": "Mug" } }]
        }])
    );

    // The next page holds the oldest order and ends there.
    let r = run(
        &schema,
        &customer("ann@example.com"),
        q,
        json!({ "after": me["orders"]["pageInfo"]["endCursor"] }),
    )
    .await;
    let page = &r["data"]["me"]["orders"];
    assert_eq!(
        page["edges"][0]["node"]["id"],
        json!(uuid_global_id("Order", orders[0].order_id.as_uuid()).to_string())
    );
    assert_eq!(page["pageInfo"]["hasNextPage"], false);

    // No token, no `me`.
    let r = run(
        &schema,
        &anonymous(),
        "{ me { orders { edges { cursor } } } }",
        json!({}),
    )
    .await;
    assert_eq!(error_codes(&r), ["UNAUTHENTICATED"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_carts_are_read_by_id_and_owned_carts_only_by_their_owner() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let s = Scenario::new(pool.clone());
    catalog(&s).await;
    let guest = CartId::new();
    s.cart(
        guest,
        None,
        &[
            physical("MUG-1", "Mug", 2, 1_500),
            digital("AV-1Y", "Antivirus", 4_999),
        ],
        0,
    )
    .await;
    let owned = CartId::new();
    s.cart(
        owned,
        Some("ann@example.com"),
        &[physical("MUG-1", "Mug", 1, 1_500)],
        0,
    )
    .await;
    s.cart_event(CartEvent::CartItemQuantityChanged {
        cart_id: guest,
        sku: sku("MUG-1"),
        old_qty: support::scenario::qty(2),
        new_qty: support::scenario::qty(3),
        at: t(5),
    })
    .await;
    catch_up_all(&s).await;
    let schema = schema(&pool);
    let q = "query($id: ID!) { cart(id: $id) {
        status currency itemCount subtotal { amount formatted }
        lines { sku kind quantity unitPrice { amount } lineTotal { amount } product { name } }
    } }";
    let r = run(
        &schema,
        &anonymous(),
        q,
        json!({ "id": uuid_global_id("Cart", guest.as_uuid()) }),
    )
    .await;
    assert_eq!(
        r,
        json!({ "data": { "cart": {
            "status": "OPEN", "currency": "USD", "itemCount": 4,
            "subtotal": { "amount": 9_499, "formatted": "$94.99" },
            "lines": [
                { "sku": "MUG-1", "kind": "PHYSICAL", "quantity": 3, "unitPrice": { "amount": 1_500 },
                  "lineTotal": { "amount": 4_500 }, "product": { "name": "Mug" } },
                { "sku": "AV-1Y", "kind": "DIGITAL", "quantity": 1, "unitPrice": { "amount": 4_999 },
                  "lineTotal": { "amount": 4_999 }, "product": { "name": "Antivirus" } }
            ]
        } } })
    );
    let owned_id = json!({ "id": uuid_global_id("Cart", owned.as_uuid()) });
    for (viewer, visible) in [
        (anonymous(), false),
        (customer("bob@example.com"), false),
        (customer("ann@example.com"), true),
        (admin(), true),
    ] {
        let r = run(
            &schema,
            &viewer,
            "query($id: ID!) { cart(id: $id) { status } }",
            owned_id.clone(),
        )
        .await;
        assert_eq!(r["data"]["cart"].is_null(), !visible, "{viewer:?}: {r}");
        assert!(r["errors"].is_null());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_are_for_analysts_and_admins() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let s = Scenario::new(pool.clone());
    catalog(&s).await;
    let carts: Vec<CartId> = (0..3).map(|_| CartId::new()).collect();
    for c in &carts {
        s.cart(*c, None, &[physical("MUG-1", "Mug", 1, 1_500)], 0)
            .await;
    }
    s.cart_event(CartEvent::CartAbandoned {
        cart_id: carts[0],
        last_activity_at: t(1),
        at: t(1 + 7 * 24 * 60),
    })
    .await;
    s.order(&OrderSpec::new(
        "ann@example.com",
        vec![physical("MUG-1", "Mug", 2, 1_500)],
        10,
        Outcome::Delivered,
    ))
    .await;
    s.order(&OrderSpec::new(
        "bob@example.com",
        vec![digital("AV-1Y", "Antivirus", 4_999)],
        70,
        Outcome::Paid,
    ))
    .await;
    s.order(&OrderSpec::new(
        "cy@example.com",
        vec![physical("MUG-1", "Mug", 1, 1_500)],
        80,
        Outcome::PaymentFailed(PaymentFailureReason::GatewayTimeout),
    ))
    .await;
    catch_up_all(&s).await;
    let schema = schema(&pool);
    let q = "query($from: DateTime, $to: DateTime) { analytics {
        revenueByDay(from: $from, to: $to) { start currency captured { amount } refunded { amount } net { amount formatted } captures refunds }
        revenueByHour { start net { amount } }
        ordersByStatus { status orders share }
        topProducts(limit: 2) { sku name unitsSold revenue { amount } orders }
        averageOrderValue { currency orders average { amount } }
        conversionRate { cartsCreated ordersPlaced ordersPaid rate paidRate }
        cartAbandonmentRate { cartsCreated cartsAbandoned cartsOpen rate }
        paymentFailureReasons { reason failures share }
        inventoryTurnover(from: $from) { sku unitsSold averageOnHand turnover }
    } }";
    let vars = json!({ "from": t(-60).to_rfc3339() });

    let r = run(&schema, &customer("ann@example.com"), q, vars.clone()).await;
    assert_eq!(error_codes(&r), ["FORBIDDEN"]);
    assert!(r["data"].is_null());
    let r = run(&schema, &anonymous(), q, vars.clone()).await;
    assert_eq!(error_codes(&r), ["UNAUTHENTICATED"]);
    let r = run(
        &schema,
        &with_roles("auditor@example.com", &[Role::Auditor]),
        q,
        vars.clone(),
    )
    .await;
    assert_eq!(error_codes(&r), ["FORBIDDEN"]);

    let analyst = with_roles("analyst@example.com", &[Role::Analyst]);
    let r = run(&schema, &analyst, q, vars.clone()).await;
    assert!(r["errors"].is_null(), "{r}");
    let a = &r["data"]["analytics"];
    assert_eq!(
        a["revenueByDay"],
        json!([{
            "start": "2024-05-01T00:00:00+00:00", "currency": "USD",
            "captured": { "amount": 7_999 }, "refunded": { "amount": 0 },
            "net": { "amount": 7_999, "formatted": "$79.99" }, "captures": 2, "refunds": 0
        }])
    );
    assert_eq!(
        a["revenueByHour"],
        json!([
            { "start": "2024-05-01T10:00:00+00:00", "net": { "amount": 3_000 } },
            { "start": "2024-05-01T11:00:00+00:00", "net": { "amount": 4_999 } }
        ])
    );
    assert_eq!(
        a["ordersByStatus"],
        json!([
            { "status": "CANCELLED", "orders": 1, "share": 0.3333 },
            { "status": "DELIVERED", "orders": 1, "share": 0.3333 },
            { "status": "FULFILLED", "orders": 1, "share": 0.3333 }
        ])
    );
    assert_eq!(
        a["topProducts"],
        json!([
            { "sku": "MUG-1", "name": "Mug", "unitsSold": 2, "revenue": { "amount": 3_000 }, "orders": 1 },
            { "sku": "AV-1Y", "name": "Antivirus", "unitsSold": 1, "revenue": { "amount": 4_999 }, "orders": 1 }
        ])
    );
    assert_eq!(
        a["averageOrderValue"],
        json!([{ "currency": "USD", "orders": 2, "average": { "amount": 4_000 } }])
    );
    assert_eq!(
        a["conversionRate"],
        json!({ "cartsCreated": 3, "ordersPlaced": 3, "ordersPaid": 2, "rate": 1.0, "paidRate": 0.6667 })
    );
    assert_eq!(
        a["cartAbandonmentRate"],
        json!({ "cartsCreated": 3, "cartsAbandoned": 1, "cartsOpen": 2, "rate": 1.0 })
    );
    assert_eq!(
        a["paymentFailureReasons"],
        json!([{ "reason": "gateway_timeout", "failures": 1, "share": 1.0 }])
    );
    let turnover = a["inventoryTurnover"].as_array().unwrap();
    let mug = turnover.iter().find(|t| t["sku"] == "MUG-1").unwrap();
    assert_eq!(mug["unitsSold"], 2);

    // Buckets overlapping a range: 11:01 to 11:02 is inside the 11:00 hour.
    let r = run(
        &schema,
        &analyst,
        "query($from: DateTime, $to: DateTime) { analytics { revenueByHour(from: $from, to: $to) { start } } }",
        json!({ "from": t(61).to_rfc3339(), "to": t(62).to_rfc3339() }),
    )
    .await;
    assert_eq!(
        r["data"]["analytics"]["revenueByHour"],
        json!([{ "start": "2024-05-01T11:00:00+00:00" }])
    );

    // Admins may too; a range the wrong way round is bad input.
    let r = run(
        &schema,
        &admin(),
        "{ analytics { conversionRate { rate } } }",
        json!({}),
    )
    .await;
    assert_eq!(r["data"]["analytics"]["conversionRate"]["rate"], 1.0);
    let r = run(
        &schema,
        &analyst,
        "query($from: DateTime, $to: DateTime) { analytics { revenueByDay(from: $from, to: $to) { start } } }",
        json!({ "from": t(10).to_rfc3339(), "to": t(0).to_rfc3339() }),
    )
    .await;
    assert_eq!(error_codes(&r), ["BAD_USER_INPUT"]);
}

/// A catalog worth searching.
async fn search_catalog(s: &Scenario) {
    let products = [
        ("HP-1", "Wireless Headphones", "Sonic", "Audio", 7_999, 5),
        ("HP-2", "Studio Headphones Pro", "Sonic", "Audio", 19_999, 0),
        ("SPK-1", "Bluetooth Speaker", "Boom", "Audio", 4_999, 3),
        (
            "KB-1",
            "Mechanical Keyboard",
            "Clack",
            "Computers",
            12_999,
            2,
        ),
        ("MS-1", "Wireless Mouse", "Clack", "Computers", 2_499, 8),
        ("CBL-1", "USB Cable", "Wire Co", "Accessories", 999, 100),
    ];
    for (i, (code, name, brand, category, price, stock)) in products.into_iter().enumerate() {
        s.product(code)
            .name(name)
            .brand(brand)
            .category(category)
            .price(price)
            .stock(stock)
            .at(i as i64)
            .create()
            .await;
    }
    s.product("AV-1Y")
        .name("Antivirus Suite")
        .brand("Shield")
        .category("Software")
        .price(4_999)
        .digital(true)
        .at(10)
        .create()
        .await;
}

fn skus(connection: &Value) -> Vec<String> {
    connection["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["sku"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_tolerates_typos_filters_sorts_and_counts_facets() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let s = Scenario::new(pool.clone());
    search_catalog(&s).await;
    catch_up_all(&s).await;
    let schema = schema(&pool);
    let viewer = anonymous();
    let q = "query($q: String, $f: ProductFilter, $sort: ProductSort, $first: Int, $after: String) {
        products(query: $q, filter: $f, sort: $sort, first: $first, after: $after) {
            nodes { sku }
            totalCount
            pageInfo { hasNextPage endCursor }
            facets { brands { value count } categories { value count } priceRanges { min max count } }
        }
    }";
    let search = |vars: Value| {
        let schema = schema.clone();
        let viewer = viewer.clone();
        async move {
            let r = run(&schema, &viewer, q, vars).await;
            assert!(r["errors"].is_null(), "{r}");
            r["data"]["products"].clone()
        }
    };

    // Full text, best match first.
    let r = search(json!({ "q": "headphones" })).await;
    assert_eq!(skus(&r), ["HP-1", "HP-2"]);
    assert_eq!(r["totalCount"], 2);
    // A typo still finds them, through trigram similarity.
    let r = search(json!({ "q": "hedphones" })).await;
    assert_eq!(skus(&r), ["HP-1", "HP-2"]);
    let r = search(json!({ "q": "wireles" })).await;
    assert_eq!(skus(&r), ["HP-1", "MS-1"]);
    // Brand matches count too.
    let r = search(json!({ "q": "clack" })).await;
    assert_eq!(skus(&r), ["KB-1", "MS-1"]);

    // Facets: each counts what every other filter leaves.
    let r = search(json!({ "f": { "category": "Audio" } })).await;
    assert_eq!(
        skus(&r),
        ["SPK-1", "HP-2", "HP-1"],
        "newest first by default"
    );
    assert_eq!(
        r["facets"]["brands"],
        json!([{ "value": "Sonic", "count": 2 }, { "value": "Boom", "count": 1 }])
    );
    assert_eq!(
        r["facets"]["categories"],
        json!([
            { "value": "Audio", "count": 3 },
            { "value": "Computers", "count": 2 },
            { "value": "Accessories", "count": 1 },
            { "value": "Software", "count": 1 }
        ])
    );
    assert_eq!(
        r["facets"]["priceRanges"],
        json!([
            { "min": 2_500, "max": 5_000, "count": 1 },
            { "min": 5_000, "max": 10_000, "count": 1 },
            { "min": 10_000, "max": 25_000, "count": 1 }
        ])
    );

    // Price (min inclusive, max exclusive), stock, brand, and sorting by price.
    let r = search(json!({ "f": { "minPrice": 2_499, "maxPrice": 12_999 }, "sort": "PRICE_ASC" }))
        .await;
    assert_eq!(
        skus(&r),
        ["MS-1", "AV-1Y", "SPK-1", "HP-1"],
        "equal prices by SKU"
    );
    let r = search(json!({ "f": { "inStock": true, "category": "Audio" }, "sort": "PRICE_DESC" }))
        .await;
    assert_eq!(skus(&r), ["HP-1", "SPK-1"], "HP-2 has no stock");
    let r = search(json!({ "q": "wireless", "f": { "brand": "Clack" } })).await;
    assert_eq!(skus(&r), ["MS-1"]);
    assert_eq!(
        r["facets"]["brands"],
        json!([{ "value": "Clack", "count": 1 }, { "value": "Sonic", "count": 1 }])
    );

    // Pages follow each other in every order without overlap or gaps.
    for sort in ["NEWEST", "PRICE_ASC", "PRICE_DESC", "RELEVANCE"] {
        let q_text = (sort == "RELEVANCE")
            .then_some("wireless or headphones or speaker or keyboard or mouse or cable");
        let mut seen = Vec::new();
        let mut after = Value::Null;
        loop {
            let r = search(json!({ "q": q_text, "sort": sort, "first": 2, "after": after })).await;
            seen.extend(skus(&r));
            if r["pageInfo"]["hasNextPage"] == false {
                break;
            }
            after = r["pageInfo"]["endCursor"].clone();
        }
        let total = search(json!({ "q": q_text, "sort": sort })).await["totalCount"]
            .as_i64()
            .unwrap();
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{sort}: {seen:?}");
        assert_eq!(seen.len() as i64, total, "{sort}: {seen:?}");
        assert!(total >= 6, "{sort}: enough results to span pages: {seen:?}");
    }

    // A cursor of one order is refused in another, and bad filters are bad input.
    let r = search(json!({ "sort": "PRICE_ASC", "first": 1 })).await;
    let price_cursor = r["pageInfo"]["endCursor"].clone();
    for (vars, what) in [
        (
            json!({ "sort": "NEWEST", "after": price_cursor }),
            "cursor of another order",
        ),
        (
            json!({ "f": { "minPrice": 5_000, "maxPrice": 10 } }),
            "min above max",
        ),
        (json!({ "f": { "minPrice": -1 } }), "negative price"),
        (json!({ "q": "x".repeat(201) }), "query too long"),
        (json!({ "first": 500 }), "page too large"),
    ] {
        let r = run(&schema, &viewer, q, vars).await;
        assert_eq!(error_codes(&r), ["BAD_USER_INPUT"], "{what}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn category_pages_count_and_list_their_products() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let s = Scenario::new(pool.clone());
    search_catalog(&s).await;
    catch_up_all(&s).await;
    let schema = schema(&pool);
    let r = run(
        &schema,
        &anonymous(),
        "{ categories { name productCount availableCount products(sort: PRICE_ASC) { nodes { sku } totalCount } } }",
        json!({}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(
        r["data"]["categories"],
        json!([
            { "name": "Accessories", "productCount": 1, "availableCount": 1,
              "products": { "nodes": [{ "sku": "CBL-1" }], "totalCount": 1 } },
            { "name": "Audio", "productCount": 3, "availableCount": 2,
              "products": { "nodes": [{ "sku": "SPK-1" }, { "sku": "HP-1" }, { "sku": "HP-2" }], "totalCount": 3 } },
            { "name": "Computers", "productCount": 2, "availableCount": 2,
              "products": { "nodes": [{ "sku": "MS-1" }, { "sku": "KB-1" }], "totalCount": 2 } },
            { "name": "Software", "productCount": 1, "availableCount": 1,
              "products": { "nodes": [{ "sku": "AV-1Y" }], "totalCount": 1 } }
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_position_waits_until_the_read_models_have_the_write() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let s = Scenario::new(pool.clone());
    catalog(&s).await;
    catch_up_all(&s).await;
    let checkpoints = Checkpoints::new(pool.clone());
    let schema = schema_with(&pool, checkpoints);
    let order = OrderSpec::new(
        "ann@example.com",
        vec![physical("MUG-1", "Mug", 1, 1_500)],
        0,
        Outcome::Paid,
    );
    let position = s.order(&order).await;
    let q = "query($id: ID!, $at: String) { order(id: $id, minPosition: $at) { status } }";
    let vars = json!({
        "id": uuid_global_id("Order", order.order_id.as_uuid()),
        "at": position.to_string(),
    });
    // The query starts before the projections have the order and answers once they do.
    let viewer = customer("ann@example.com");
    let (r, ()) = tokio::join!(run(&schema, &viewer, q, vars), async {
        catch_up_all(&s).await
    });
    assert_eq!(r, json!({ "data": { "order": { "status": "CONFIRMED" } } }));
}
