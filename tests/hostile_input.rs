//! Tried as an attacker would, against the real server: tiny requests that would cost a lot,
//! legal but huge values, the same request many times at once, names chosen to grow metrics,
//! and an event no projection can apply.

mod support;

use std::time::{Duration, Instant};

use purser::app::Role;
use serde_json::{Value, json};
use support::shop::Shop;
use support::{TestApp, purser_command, run_with_timeout, sample, spawn_app, spawn_app_with, ws};

/// `F0` spreads `F1` twice, `F1` spreads `F2` twice, …: 2^24 fields once expanded, from a
/// document of about a kilobyte.
fn fan_out() -> String {
    let mut doc = String::from("query Bomb { ...F0 }\n");
    for i in 0..24 {
        doc += &format!("fragment F{i} on Query {{ ...F{j} ...F{j} }}\n", j = i + 1);
    }
    doc + "fragment F24 on Query { __typename }\n"
}

const SELF_SPREAD: &str = "query Loop { ...A } fragment A on Query { __typename ...A }";

/// Far less than the time a spinning request would take; refusals take microseconds.
const QUICKLY: Duration = Duration::from_secs(5);

async fn get(app: &TestApp, query: &str) -> Value {
    app.http
        .get(app.url("/graphql"))
        .query(&[("query", query)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragment_bombs_are_refused_on_every_transport() {
    let mut app = spawn_app().await;
    let mut socket = ws::connect(app.addr, "").await;
    for (doc, code) in [
        (fan_out(), "QUERY_TOO_COMPLEX"),
        (SELF_SPREAD.to_owned(), "FRAGMENT_CYCLE"),
    ] {
        assert!(doc.len() <= 1_100, "{}", doc.len());
        let started = Instant::now();
        let post = app.graphql(&doc, json!({})).await;
        let over_get = get(&app, &doc).await;
        let over_ws = ws::request(&mut socket, code, &doc, json!({})).await;
        assert!(started.elapsed() < QUICKLY, "{:?}", started.elapsed());
        assert_eq!(post["errors"][0]["extensions"]["code"], code, "{post}");
        assert_eq!(
            over_get["errors"][0]["extensions"]["code"], code,
            "{over_get}"
        );
        // Over graphql-transport-ws a refused operation answers with its errors.
        assert_eq!(
            over_ws["payload"]["errors"][0]["extensions"]["code"], code,
            "{over_ws}"
        );
    }
    // The server is still answering everything else.
    let r = app.graphql("{ __typename }", json!({})).await;
    assert_eq!(r["data"]["__typename"], "Query");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_gets_the_same_limits_as_http_and_no_mutations() {
    let mut app = spawn_app().await;
    let mut socket = ws::connect(app.addr, "").await;
    let aliases: String = (0..300).map(|i| format!("a{i}: __typename ")).collect();
    let r = ws::request(&mut socket, "1", &format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(
        r["payload"]["errors"][0]["extensions"]["code"], "TOO_MANY_ALIASES",
        "{r}"
    );
    let r = ws::request(
        &mut socket,
        "2",
        "mutation { cartCreate { cartId } }",
        json!({}),
    )
    .await;
    assert_eq!(
        r["payload"]["errors"][0]["extensions"]["code"], "METHOD_NOT_ALLOWED",
        "{r}"
    );
    // A query still runs over the socket.
    let r = ws::request(&mut socket, "3", "{ __typename }", json!({})).await;
    assert_eq!(r["payload"]["data"]["__typename"], "Query", "{r}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_chosen_operation_names_do_not_become_metric_series() {
    let mut app = spawn_app().await;
    let series = |m: &str| {
        m.lines()
            .filter(|l| l.starts_with("purser_graphql_"))
            .count()
    };
    app.graphql("query Warm { __typename }", json!({})).await;
    let before = series(&app.metrics().await);
    for i in 0..1000 {
        app.graphql(&format!("query Op{i} {{ __typename }}"), json!({}))
            .await;
    }
    let metrics = app.metrics().await;
    assert!(
        series(&metrics) <= before + 5,
        "{} -> {}",
        before,
        series(&metrics)
    );
    assert!(!metrics.contains("Op999"));
    assert!(
        metrics.contains("operation=\"introspection\""),
        "labels come from root fields"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_amounts_are_refused_and_the_carts_projection_stays_live() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    let create = "mutation($i: ProductCreateInput!) { productCreate(input: $i) { userErrors { code field } } }";
    let product = |sku: &str, amount: i64| json!({ "i": { "sku": sku, "name": "Gold bar", "price": { "amount": amount, "currency": "USD" } } });
    // The largest Int64 price is refused at the first step: creating the product.
    let r = shop.admin(create, product("HUGE-1", i64::MAX)).await;
    assert_eq!(
        r["data"]["productCreate"]["userErrors"][0]["field"],
        json!(["input", "price"]),
        "{r}"
    );
    // A price inside the bound is fine, but two of it in a cart would pass it.
    let half = purser_domain::Money::MAX_MINOR / 2 + 1;
    let r = shop.admin(create, product("HUGE-2", half)).await;
    assert_eq!(r["data"]["productCreate"]["userErrors"], json!([]), "{r}");
    shop.receive("HUGE-2", 5).await;
    app.settle().await;
    let cart = shop.cart(&[("HUGE-2", 1)]).await;
    let r = app
        .graphql(
            "mutation($c: ID!) { cartLinesAdd(cartId: $c, lines: [{sku: \"HUGE-2\", quantity: 1}]) { userErrors { code } } }",
            json!({ "c": cart }),
        )
        .await;
    assert_eq!(
        r["data"]["cartLinesAdd"]["userErrors"][0]["code"], "AMOUNT_TOO_LARGE",
        "{r}"
    );
    app.settle().await;
    let r = shop
        .admin("{ projections { name status } }", json!({}))
        .await;
    let carts = r["data"]["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "carts")
        .unwrap()
        .clone();
    assert_eq!(carts["status"], "live", "{r}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_bad_user_input_not_outages() {
    let mut app = spawn_app().await;
    for (query, vars) in [
        (
            "query($q: String) { products(query: $q) { totalCount } }",
            json!({ "q": "lap\u{0}top" }),
        ),
        ("{ product(sku: \"A\\u0000B\") { sku } }", json!({})),
        (
            "query($b: String) { products(filter: {brand: $b}) { totalCount } }",
            json!({ "b": "\u{7}" }),
        ),
    ] {
        let r = app.graphql(query, vars).await;
        assert_eq!(
            r["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{r}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_ran_has_no_data_entry() {
    let mut app = spawn_app().await;
    for doc in ["{ products { ", "{ noSuchField }"] {
        let r = app
            .http
            .post(app.url("/graphql"))
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": doc }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert!(body.get("data").is_none(), "{body}");
        assert!(body["errors"].as_array().is_some_and(|e| !e.is_empty()));
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checkouts_with_one_key_all_get_the_one_order() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("SAME-1", 1_000, 20).await;
    app.settle().await;
    let cart = shop.cart(&[("SAME-1", 1)]).await;
    let attempts = (0..8).map(|_| shop.checkout(&cart, "one-key", "pm_card_visa"));
    let results = futures::future::join_all(attempts).await;
    let orders: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|r| r["orderId"].as_str().unwrap_or_else(|| panic!("{r}")))
        .collect();
    assert_eq!(orders.len(), 1, "{results:?}");
    assert!(
        results.iter().all(|r| r["userErrors"] == json!([])),
        "{results:?}"
    );
    let fresh = results.iter().filter(|r| r["replayed"] == false).count();
    assert_eq!(fresh, 1, "exactly one call placed it: {results:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_unreachable_positions_are_bounded_per_request_and_per_process() {
    let mut app = spawn_app_with(
        Role::All,
        &[
            ("PURSER_CONSISTENCY_TIMEOUT_MS", "500"),
            ("PURSER_MAX_CONSISTENCY_WAITERS", "1"),
        ],
    )
    .await;
    let fields: String = (0..20)
        .map(|i| {
            format!("p{i}: product(sku: \"X\", minPosition: \"999999999/999999999\") {{ sku }} ")
        })
        .collect();
    let doc = format!("{{ {fields} }}");
    let (first, second) = tokio::join!(app.graphql(&doc, json!({})), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.graphql(&doc, json!({})).await
    });
    let codes = |r: &Value| -> Vec<String> {
        r["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let (a, b) = (codes(&first), codes(&second));
    // One request holds the only waiter's place; the other is told to come back.
    assert!(
        a.iter().chain(&b).any(|c| c == "UNAVAILABLE"),
        "{first} {second}"
    );
    assert!(
        a.iter().chain(&b).any(|c| c == "CONSISTENCY_TIMEOUT"),
        "{first} {second}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let mut app = spawn_app_with(
        Role::All,
        &[
            ("PURSER_RATE_LIMIT_PER_SEC", "1"),
            ("PURSER_RATE_LIMIT_BURST", "3"),
        ],
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = app
            .http
            .post(app.url("/graphql"))
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await
            .unwrap();
        statuses.push((r.status().as_u16(), r.headers().get("retry-after").cloned()));
    }
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!limited.is_empty(), "{statuses:?}");
    assert!(
        limited.iter().all(|(_, retry)| retry.is_some()),
        "{statuses:?}"
    );
    assert_eq!(statuses[0].0, 200);
    // Health checks are not rate limited.
    assert_eq!(
        app.http
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

/// Appends an event the domain would never accept today (as if written before a rule
/// existed): a cart line whose total no `bigint` holds.
async fn append_poison(app: &TestApp, cart: &str) -> purser_event_store::Position {
    use purser_domain::cart::CartEvent;
    use purser_domain::{CartId, Currency, Event, Money, Quantity, Sku};
    use purser_event_store::{ExpectedVersion, Metadata, NewEvent, StreamName};
    let uuid = purser_api_core::wire::parse_uuid_id("Cart", cart).unwrap();
    let event = CartEvent::CartItemAdded {
        cart_id: CartId::from(uuid),
        sku: Sku::parse("POISON-1").unwrap(),
        name: "Poison".into(),
        digital: false,
        qty: Quantity::new(3).unwrap(),
        unit_price: Money::new(i64::MAX / 2, Currency::USD),
        at: chrono::Utc::now(),
    };
    let (t, v, data) = event.encode();
    let new = NewEvent {
        id: uuid::Uuid::now_v7(),
        event_type: t.into(),
        schema_version: v,
        data,
        metadata: Metadata::default(),
    };
    let stream = StreamName::new(format!("cart-{uuid}")).unwrap();
    app.services()
        .store
        .append(&stream, ExpectedVersion::Any, vec![new])
        .await
        .unwrap()
        .last_position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_loud_and_is_passed_over_only_on_purpose() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("FINE-1", 1_000, 5).await;
    app.settle().await;
    let cart = shop.cart(&[("FINE-1", 1)]).await;
    let poison = append_poison(&app, &cart).await;

    // The carts projection stops at the event and says so everywhere an operator looks.
    let deadline = Instant::now() + Duration::from_secs(30);
    let carts = loop {
        let r = shop
            .admin(
                "{ projections { name status failingPosition failures lastError } }",
                json!({}),
            )
            .await;
        let carts = r["data"]["projections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "carts")
            .unwrap()
            .clone();
        if carts["status"] == "failing" && carts["failingPosition"] == json!(poison.to_string()) {
            break carts;
        }
        assert!(Instant::now() < deadline, "never reported failing: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        carts["lastError"]
            .as_str()
            .unwrap()
            .contains("out of range"),
        "{carts}"
    );
    let ready: Value = app
        .http
        .get(app.url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["failing_projections"], json!(["carts"]), "{ready}");
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "purser_projection_failing",
            &["projection=\"carts\""]
        ),
        Some(1.0)
    );
    let (code, out, err) = run_with_timeout(
        {
            let mut c = purser_command(&app.db.url());
            c.arg("status");
            c
        },
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("--skip {poison} carts")), "{out}");

    // Skipping anything but the failing event needs --force.
    let skip = |position: String| {
        let mut c = purser_command(&app.db.url());
        c.args([
            "projector",
            "--skip",
            &position,
            "carts",
            "--reason",
            "priced before the money bound",
        ]);
        c
    };
    let (code, _, err) = run_with_timeout(skip("1/1".into()), Duration::from_secs(60));
    assert_ne!(code, Some(0), "{err}");
    let (code, out, err) = run_with_timeout(skip(poison.to_string()), Duration::from_secs(120));
    assert_eq!(code, Some(0), "{out} {err}");

    // The projection passes over it, applies what came after, and the skip is on the record.
    let later = shop.cart(&[("FINE-1", 2)]).await;
    app.settle().await;
    let r = app
        .graphql(
            "query($c: ID!) { cart(id: $c) { lines { quantity } } }",
            json!({ "c": later }),
        )
        .await;
    assert_eq!(r["data"]["cart"]["lines"][0]["quantity"], 2, "{r}");
    let letters = shop
        .admin(
            "{ deadLetters { projection position reason eventType error skippedAt } }",
            json!({}),
        )
        .await;
    let letter = &letters["data"]["deadLetters"][0];
    assert_eq!(letter["projection"], "carts");
    assert_eq!(letter["position"], json!(poison.to_string()));
    assert_eq!(letter["eventType"], "CartItemAdded");
    assert!(letter["skippedAt"].is_string(), "{letters}");
    assert!(
        letter["error"].as_str().unwrap().contains("out of range"),
        "{letters}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_process_that_holds_an_open_request() {
    let db = purser_testkit::TestDb::new().await;
    let mut cmd = purser_command(&db.url());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    cmd.arg("serve")
        .env("PURSER_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("PURSER_SHUTDOWN_TIMEOUT_SECS", "1");
    let mut server = support::Binary::spawn(cmd);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    support::wait_until_ready(&reqwest::Client::new(), addr).await;
    // A subscription holds its connection open for as long as the client likes.
    let mut socket = ws::connect(addr, "").await;
    ws::send(&mut socket, json!({ "id": "held", "type": "subscribe",
        "payload": { "query": "subscription { orderStatusChanged(orderId: \"00000000-0000-7000-8000-000000000000\", statusToken: \"x\") { status } }" } })).await;
    let pid = server.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the process outlived its shutdown deadline"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(socket);
}
