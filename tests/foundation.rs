//! The foundation, end to end: the real binary and router against a fresh database.

mod support;

use std::time::Duration;

use chrono::Utc;
use purser_domain::inventory::InventoryEvent;
use purser_domain::product::{ProductEvent, ProductKind};
use purser_domain::{Currency, Event, Money, Quantity, Sku};
use purser_event_store::{
    EventStore, ExpectedVersion, Metadata, NewEvent, PgEventStore, Position, StreamName,
};
use purser_projections::{Checkpoints, table_checksum};
use purser_testkit::TestDb;
use serde_json::json;
use support::{Binary, purser_command, run_with_timeout, spawn_app};
use uuid::Uuid;

fn new_event(e: &impl Event) -> NewEvent {
    let (t, v, data) = e.encode();
    NewEvent {
        id: Uuid::now_v7(),
        event_type: t.into(),
        schema_version: v,
        data,
        metadata: Metadata::default(),
    }
}

/// Fails with one clear line and a non-zero exit, quickly, never a panic or a hang.
fn assert_fails_cleanly(vars: &[(&str, &str)], args: &[&str], expect: &str) {
    let mut cmd = purser_command("postgres://purser:purser@127.0.0.1:5432/purser");
    cmd.env("PURSER_LOG", "off");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.args(args);
    let (code, _out, err) = run_with_timeout(cmd, Duration::from_secs(30));
    assert_eq!(code, Some(1), "exit code for {vars:?}: stderr {err}");
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err}");
    assert!(lines[0].starts_with("purser: "), "{err}");
    assert!(lines[0].contains(expect), "expected {expect:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_configuration_ends_with_one_clear_line() {
    assert_fails_cleanly(
        &[("PURSER_EVENT_STORE", "mongodb")],
        &["serve"],
        "PURSER_EVENT_STORE must be",
    );
    assert_fails_cleanly(
        &[("DATABASE_URL", "not a url")],
        &["serve"],
        "DATABASE_URL must be a Postgres URL",
    );
    assert_fails_cleanly(
        &[("PURSER_HTTP_ADDR", "8080")],
        &["serve"],
        "PURSER_HTTP_ADDR must be",
    );
    assert_fails_cleanly(
        &[(
            "DATABASE_URL",
            "postgres://purser:secret-pw@127.0.0.1:1/purser",
        )],
        &["serve"],
        "cannot connect to the database at postgres://purser:***@127.0.0.1:1/purser",
    );
    assert_fails_cleanly(
        &[
            ("PURSER_EVENT_STORE", "kurrentdb"),
            ("KURRENTDB_URL", "http://[::nonsense"),
        ],
        &["serve"],
        "KURRENTDB_URL is not a KurrentDB connection string",
    );
    // The secret in a bad URL never shows.
    let mut cmd = purser_command("postgres://u:topsecret@127.0.0.1:1/x");
    cmd.env("PURSER_LOG", "off").arg("migrate");
    let (_, _, err) = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(!err.contains("topsecret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_or_an_unmigrated_database_is_one_clear_line() {
    let db = TestDb::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let mut cmd = purser_command(&db.url());
    cmd.env("PURSER_LOG", "off")
        .env("PURSER_HTTP_ADDR", &port)
        .arg("serve");
    let (code, _, err) =
        tokio::task::spawn_blocking(move || run_with_timeout(cmd, Duration::from_secs(30)))
            .await
            .unwrap();
    assert_eq!(code, Some(1));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {port}")), "{err}");

    // A database nobody migrated.
    let pool = db.pool().await;
    sqlx::query("drop table _sqlx_migrations")
        .execute(&pool)
        .await
        .unwrap();
    let mut cmd = purser_command(&db.url());
    cmd.env("PURSER_LOG", "off").arg("serve");
    let (code, _, err) =
        tokio::task::spawn_blocking(move || run_with_timeout(cmd, Duration::from_secs(30)))
            .await
            .unwrap();
    assert_eq!(code, Some(1));
    assert!(
        err.contains("is not migrated") && err.contains("purser migrate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_runs_again_on_a_migrated_database_as_a_role_named_like_a_schema() {
    // The test role is `purser`, like the schema `purser` the migrations create: with the
    // default search_path a second run used to find an empty `purser._sqlx_migrations`.
    let db = TestDb::new().await;
    // The URL as a user writes it: no connection options.
    let url = db.url().split('?').next().unwrap().to_owned();
    for _ in 0..2 {
        let mut cmd = purser_command(&url);
        cmd.env("PURSER_LOG", "off").arg("migrate");
        let (code, out, err) =
            tokio::task::spawn_blocking(move || run_with_timeout(cmd, Duration::from_secs(60)))
                .await
                .unwrap();
        assert_eq!(code, Some(0), "{out}{err}");
    }
    let stray: Option<String> =
        sqlx::query_scalar("select to_regclass('purser._sqlx_migrations')::text")
            .fetch_one(&db.pool().await)
            .await
            .unwrap();
    assert_eq!(stray, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_batch_converges_to_a_rebuild_from_zero() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store = PgEventStore::new(pool.clone());
    // A log long enough that catching up takes a while: products, and stock moving in many
    // small receipts written in bulk.
    const SKUS: usize = 8;
    const RECEIPTS: usize = 1500;
    // The last position written. Not `store.head()`: that is the last event below the
    // visibility horizon, which a transaction in another test's database can hold back.
    let mut head = Position::default();
    for i in 0..SKUS {
        let sku = Sku::parse(&format!("KILL-{i}")).unwrap();
        let created = ProductEvent::ProductCreated {
            sku: sku.clone(),
            name: format!("Kill test {i}"),
            description: String::new(),
            brand: "Acme".into(),
            category: "Tests".into(),
            kind: ProductKind::Physical,
            price: Money::new(100, Currency::USD),
            at: Utc::now(),
        };
        store
            .append(
                &StreamName::new(sku.product_stream()).unwrap(),
                ExpectedVersion::NoStream,
                vec![new_event(&created)],
            )
            .await
            .unwrap();
        let receipts: Vec<NewEvent> = (0..RECEIPTS)
            .map(|n| {
                new_event(&InventoryEvent::StockReceived {
                    sku: sku.clone(),
                    qty: Quantity::new((n % 7 + 1) as i64).unwrap(),
                    at: Utc::now(),
                })
            })
            .collect();
        let appended = store
            .append(
                &StreamName::new(sku.inventory_stream()).unwrap(),
                ExpectedVersion::Any,
                receipts,
            )
            .await
            .unwrap();
        head = head.max(appended.last_position);
    }
    let total = (SKUS * (RECEIPTS + 1)) as i64;

    let mut cmd = purser_command(&db.url());
    cmd.env("PURSER_PROJECTOR_BATCH", "100").arg("projector");
    let mut projector = Binary::spawn(cmd);
    // Wait until it is part-way through, with a batch transaction open, then SIGKILL it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the projector never got going"
        );
        let applied: Option<i64> = sqlx::query_scalar(
            "select events_applied from purser.projection_checkpoints where name = 'catalog'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        let in_tx: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and pid <> pg_backend_pid()
               and xact_start is not null and query ilike '%catalog.stock%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if applied.is_some_and(|a| a > total / 5) && in_tx > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    projector.kill();

    // What survived is consistent: the checkpoint and the rows moved together.
    let applied: i64 = sqlx::query_scalar(
        "select events_applied from purser.projection_checkpoints where name = 'catalog'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        applied < total,
        "killed before the end ({applied} of {total})"
    );

    // Restart; it resumes from its checkpoint and catches up.
    let mut cmd = purser_command(&db.url());
    cmd.env("PURSER_PROJECTOR_BATCH", "100").arg("projector");
    let mut projector = Binary::spawn(cmd);
    let checkpoints = Checkpoints::new(pool.clone());
    assert!(
        checkpoints
            .wait_for(&["catalog"], head, Duration::from_secs(120))
            .await
            .unwrap()
    );
    projector.kill();
    let live = (
        table_checksum(&pool, "catalog.products").await.unwrap(),
        table_checksum(&pool, "catalog.stock").await.unwrap(),
    );

    // A rebuild from zero gives exactly the same rows.
    let mut cmd = purser_command(&db.url());
    cmd.args(["projector", "--rebuild", "catalog"]);
    let (code, out, err) =
        tokio::task::spawn_blocking(move || run_with_timeout(cmd, Duration::from_secs(120)))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("{total} events applied")), "{out}");
    let rebuilt = (
        table_checksum(&pool, "catalog.products").await.unwrap(),
        table_checksum(&pool, "catalog.stock").await.unwrap(),
    );
    assert_eq!(live, rebuilt);
    let expected_on_hand: i64 =
        (0..RECEIPTS).map(|n| (n % 7 + 1) as i64).sum::<i64>() * SKUS as i64;
    let on_hand: i64 = sqlx::query_scalar("select sum(on_hand)::bigint from catalog.stock")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(on_hand, expected_on_hand);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_a_product_through_graphql() {
    let mut app = spawn_app().await;
    let health = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = app
        .http
        .get(app.url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");

    let admin = app.admin_token().await;
    let created = app
        .graphql_as(
            &admin,
            "mutation($i: ProductCreateInput!) { productCreate(input: $i) { position userErrors { code } } }",
            json!({ "i": { "sku": "SLICE-1", "name": "Slice", "price": { "amount": 500, "currency": "EUR" } } }),
        )
        .await;
    assert_eq!(
        created["data"]["productCreate"]["userErrors"],
        json!([]),
        "{created}"
    );
    let received = app
        .graphql_as(
            &admin,
            "mutation { inventoryReceive(input: {sku: \"slice-1\", quantity: 12}) { position userErrors { code } } }",
            json!({}),
        )
        .await;
    let position = received["data"]["inventoryReceive"]["position"]
        .as_str()
        .unwrap()
        .to_owned();
    // Read-your-writes: the query waits for the catalog to reach the mutation's position.
    let listed = app
        .graphql(
            "query($p: String) { products(first: 5, minPosition: $p) { nodes { sku price { formatted } stock { onHand available } } } }",
            json!({ "p": position }),
        )
        .await;
    assert_eq!(
        listed["data"]["products"]["nodes"],
        json!([{ "sku": "SLICE-1", "price": { "formatted": "€5.00" }, "stock": { "onHand": 12, "available": 12 } }])
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_over_http_speaks_the_protocol_and_refuses_bad_requests() {
    let mut app = spawn_app().await;
    let url = app.url("/graphql");
    let c = &app.http;
    // A mutation over GET is refused.
    let r = c
        .get(&url)
        .query(&[(
            "query",
            "mutation { productReactivate(sku: \"X\") { position } }",
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // A query over GET works.
    let r = c
        .get(&url)
        .query(&[("query", "{ products(first: 1) { nodes { sku } } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Wrong content type, malformed JSON, batches, huge bodies: 4xx with a JSON body.
    let r = c
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["errors"][0]["extensions"]["code"],
        "BAD_REQUEST"
    );
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .body("[{\"query\":\"{__typename}\"}]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let big = format!(
        "{{\"query\":\"{{__typename}}\",\"variables\":{{\"x\":\"{}\"}}}}",
        "a".repeat(400_000)
    );
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // With graphql-response+json, a document that does not validate is a 400; with JSON, 200.
    let bad = json!({ "query": "{ nope }" });
    let r = c
        .post(&url)
        .header("accept", "application/graphql-response+json")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()["content-type"],
        "application/graphql-response+json"
    );
    let r = c
        .post(&url)
        .header("accept", "application/json")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    // Too deep, too many aliases.
    let deep = format!(
        "{{ {}__typename{} }}",
        "products { nodes { ".repeat(8),
        " } }".repeat(8)
    );
    let r = app.graphql(&deep, json!({})).await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("depth")
            || r["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("nested"),
        "{r}"
    );
    let aliases: String = (0..40).map(|i| format!("a{i}: __typename ")).collect();
    let r = app.graphql(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "TOO_MANY_ALIASES");
    app.stop().await;
}

#[test]
fn schema_graphql_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let current = purser::schema::sdl();
    if std::env::var("UPDATE_SCHEMA").is_ok() {
        std::fs::write(path, &current).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == current,
        "schema.graphql is stale; regenerate it with `UPDATE_SCHEMA=1 cargo test --test foundation schema_graphql_is_current`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_api_process_answers_queries_and_refuses_mutations() {
    let mut app = support::spawn_app_with(purser::app::Role::QueryApi, &[]).await;
    let r = app
        .graphql(
            "mutation { productReactivate(sku: \"X\") { position } }",
            json!({}),
        )
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "READ_ONLY", "{r}");
    assert_eq!(r["data"], serde_json::Value::Null, "{r}");
    let r = app
        .graphql("{ products(first: 1) { nodes { sku } } }", json!({}))
        .await;
    assert_eq!(r["data"]["products"]["nodes"], json!([]), "{r}");
    app.stop().await;
}
