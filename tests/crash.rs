//! Crashes and old data: the real binary killed in the middle of a checkout, and a stored
//! event of an old schema version loading and projecting after its type changed.

mod support;

use std::time::Duration;

use purser::app::Role;
use purser_domain::Sku;
use purser_event_store::{ExpectedVersion, Metadata, NewEvent, StreamName};
use serde_json::json;
use support::shop::Shop;
use support::{Binary, TEST_JWT_SECRET, purser_command, spawn_app, spawn_app_with};
use uuid::Uuid;

const SIGNING_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `purser serve` on `port` and waits until it is ready.
async fn serve_binary(db_url: &str, port: u16, extra: &[(&str, &str)]) -> Binary {
    let mut cmd = purser_command(db_url);
    cmd.env("PURSER_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("PURSER_JWT_SECRET", TEST_JWT_SECRET)
        .env("PURSER_LICENSE_SIGNING_KEY", SIGNING_KEY)
        .arg("serve");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let binary = Binary::spawn(cmd);
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .get(format!("http://127.0.0.1:{port}/ready"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return binary;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the binary never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_checkout_completes_it_after_restart_with_one_capture() {
    // The gateway answers slowly and times out once before capturing, so the kill lands while
    // the charge is in flight.
    let env = [
        ("PURSER_SIM_TIMEOUT_DELAY_MS", "2000"),
        ("PURSER_SIM_TIMEOUTS_BEFORE_SUCCESS", "1"),
        ("PURSER_OUTBOX_LEASE_SECS", "1"),
        ("PURSER_RETRY_BASE_MS", "20"),
    ];
    // Set the shop up in process, then hand the database to the real binary.
    let mut app = spawn_app_with(Role::All, &env).await;
    let admin = Shop::new(&app).await.admin;
    {
        let shop = Shop {
            app: &app,
            admin: admin.clone(),
        };
        shop.product("CRASH-A", 1_000, 5).await;
        shop.product("CRASH-B", 2_000, 5).await;
    }
    app.stop().await;
    let pool = app.db.pool().await;
    let db_url = app.db.url();

    let port = free_port();
    let mut first = serve_binary(&db_url, port, &env).await;
    app.addr = format!("127.0.0.1:{port}").parse().unwrap();
    let shop = Shop {
        app: &app,
        admin: admin.clone(),
    };
    let order_id = shop
        .order_from(
            &[("CRASH-A", 1), ("CRASH-B", 2)],
            "pm_card_timeoutThenSucceed",
        )
        .await;

    // Wait until the charge is being sent, then SIGKILL the server.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let in_flight: i64 = sqlx::query_scalar(
            "select count(*) from purser.outbox where command->>'action' = 'charge_payment' and claimed_until > now()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if in_flight > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the charge never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill();

    // A new server finishes the checkout.
    let port = free_port();
    let _second = serve_binary(&db_url, port, &env).await;
    app.addr = format!("127.0.0.1:{port}").parse().unwrap();
    let shop = Shop { app: &app, admin };
    shop.wait_for_status(&order_id, &["CONFIRMED"]).await;

    // Exactly one capture, one reservation per line, one charge at the gateway.
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        count("select count(*) from es.events where event_type = 'PaymentCaptured'").await,
        1
    );
    assert_eq!(count("select count(*) from es.events where event_type = 'StockReserved' and stream_name = 'inventory-CRASH-A'").await, 1);
    assert_eq!(count("select count(*) from es.events where event_type = 'StockReserved' and stream_name = 'inventory-CRASH-B'").await, 1);
    assert_eq!(
        count("select count(*) from es.events where event_type = 'ReservationConfirmed'").await,
        2
    );
    assert_eq!(count("select count(*) from gateway_sim.charges").await, 1);
    assert_eq!(
        count("select count(*) from gateway_sim.charges where outcome = 'captured'").await,
        1
    );
    assert_eq!(
        count("select count(*) from purser.outbox").await,
        0,
        "nothing left to send"
    );
}

/// `StockAdjusted` is at schema version 2; version 1 named the delta `quantity_delta` and had
/// no reason. A v1 event written long ago still loads into the aggregate and projects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stored_at_an_old_schema_version_still_loads_and_projects() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("OLD-1", 500, 10).await;
    let store = app.services().store.clone();
    let sku = Sku::parse("OLD-1").unwrap();
    let v1 = NewEvent {
        id: Uuid::now_v7(),
        event_type: "StockAdjusted".into(),
        schema_version: 1,
        data: json!({ "sku": "OLD-1", "quantity_delta": -4, "note": "counted by hand in 2019", "at": "2019-03-01T09:00:00Z" }),
        metadata: Metadata::default(),
    };
    store
        .append(
            &StreamName::new(sku.inventory_stream()).unwrap(),
            ExpectedVersion::Any,
            vec![v1],
        )
        .await
        .unwrap();
    // The catalog projects it...
    assert_eq!(shop.stock("OLD-1").await, (6, 0, 6));
    // ...and the inventory aggregate folds it: only 6 can be reserved now.
    let cart = shop.cart(&[]).await;
    let r = app
        .graphql(
            "mutation($c: ID!) { cartLinesAdd(cartId: $c, lines: [{sku: \"OLD-1\", quantity: 7}]) { userErrors { code } } }",
            json!({ "c": cart }),
        )
        .await;
    assert_eq!(
        r["data"]["cartLinesAdd"]["userErrors"][0]["code"],
        "INSUFFICIENT_STOCK"
    );
    // A rebuild from zero reads it the same way.
    let projector = app.services().projector();
    projector.rebuild("catalog").await.unwrap();
    assert_eq!(shop.stock("OLD-1").await, (6, 0, 6));
    app.stop().await;
}

/// Kills the server again and again while a digital purchase goes through (a crash between
/// any two steps, many times over): the order still completes with exactly one capture, one
/// license, one account provisioning, one notification of each kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kills_during_a_digital_purchase_still_end_with_one_license_and_one_capture() {
    // Charges time out twice (150 ms each) before going through, so the purchase takes long
    // enough for the kills to land in the middle of it.
    let env = [
        ("PURSER_OUTBOX_LEASE_SECS", "1"),
        ("PURSER_RETRY_BASE_MS", "20"),
        ("PURSER_PROJECTOR_BATCH", "1"),
        ("PURSER_SIM_TIMEOUT_DELAY_MS", "150"),
        ("PURSER_SIM_TIMEOUTS_BEFORE_SUCCESS", "2"),
    ];
    let mut app = spawn_app_with(Role::All, &env).await;
    let admin = Shop::new(&app).await.admin;
    {
        let shop = Shop {
            app: &app,
            admin: admin.clone(),
        };
        shop.digital_product("CHAOS-SW", 3_000, "SIGNED").await;
        shop.product("CHAOS-HW", 1_000, 5).await;
    }
    app.stop().await;
    let pool = app.db.pool().await;
    let db_url = app.db.url();

    let port = free_port();
    let mut server = serve_binary(&db_url, port, &env).await;
    app.addr = format!("127.0.0.1:{port}").parse().unwrap();
    let order_id = {
        let shop = Shop {
            app: &app,
            admin: admin.clone(),
        };
        shop.order_from(
            &[("CHAOS-SW", 1), ("CHAOS-HW", 1)],
            "pm_card_timeoutThenSucceed",
        )
        .await
    };
    // Kill at staggered moments while the checkout moves, restarting each time.
    for round in 0..8u64 {
        tokio::time::sleep(Duration::from_millis(40 + (round * 37) % 150)).await;
        if round == 0 {
            let done: i64 = sqlx::query_scalar(
                "select count(*) from es.events where event_type = 'OrderFulfilled'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(
                done, 0,
                "the first kill must land before the purchase is complete"
            );
        }
        server.kill();
        server = serve_binary(&db_url, port, &env).await;
    }
    let shop = Shop { app: &app, admin };
    shop.wait_for_status(&order_id, &["CONFIRMED"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let fulfilled: i64 = sqlx::query_scalar(
            "select count(*) from es.events where event_type = 'OrderFulfilled'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if fulfilled == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the digital half never completed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    drop(server);
    for (event_type, expected) in [
        ("OrderPlaced", 1),
        ("PaymentIntentCreated", 1),
        ("PaymentCaptured", 1),
        ("StockReserved", 1),
        ("ReservationConfirmed", 1),
        ("AccountProvisioned", 1),
        ("LicenseIssued", 1),
        ("LicenseAttached", 1),
        ("OrderLicenseAttached", 1),
        ("OrderFulfilled", 1),
        ("OrderConfirmed", 1),
    ] {
        let n: i64 = sqlx::query_scalar("select count(*) from es.events where event_type = $1")
            .bind(event_type)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, expected, "{event_type}");
    }
    let charges: i64 = sqlx::query_scalar("select count(*) from gateway_sim.charges")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(charges, 1);
    // One notification per kind, however often the server died.
    let dupes: i64 = sqlx::query_scalar(
        "select count(*) from (select data->>'kind' from es.events where event_type = 'NotificationQueued'
                               group by 1 having count(*) > 1) d",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dupes, 0);
}
