//! What operators rely on: metrics after real traffic, one request followed through every
//! event it caused, projectors failing over between processes, and a graceful SIGTERM.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use purser_event_store::{EventFilter, EventStore, KurrentEventStore, PgEventStore, Position};
use purser_projections::{Checkpoints, table_checksum};
use serde_json::json;
use support::shop::{CARD_DECLINED, CARD_OK, Shop, address};
use support::{Binary, TEST_JWT_SECRET, purser_command, sample, spawn_app};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_requests_commands_projections_and_business_after_a_checkout() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("MET-1", 2_500, 10).await;
    let ok = shop.order_from(&[("MET-1", 2)], CARD_OK).await;
    shop.wait_for_status(&ok, &["CONFIRMED"]).await;
    let failed = shop.order_from(&[("MET-1", 1)], CARD_DECLINED).await;
    shop.wait_for_status(&failed, &["CANCELLED"]).await;
    app.settle().await;

    let body = app.metrics().await;
    let at_least = |name: &str, labels: &[&str], min: f64| {
        let v = sample(&body, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{body}"));
        assert!(v >= min, "{name} {labels:?} = {v}, expected at least {min}");
    };
    at_least(
        "purser_http_requests_total",
        &["path=\"/graphql\"", "status=\"200\""],
        5.0,
    );
    at_least(
        "purser_http_request_duration_seconds_count",
        &["path=\"/graphql\""],
        5.0,
    );
    at_least("purser_graphql_requests_total", &["type=\"mutation\""], 3.0);
    at_least(
        "purser_graphql_request_duration_seconds_count",
        &["type=\"query\""],
        1.0,
    );
    at_least(
        "purser_commands_total",
        &["aggregate=\"order\"", "outcome=\"ok\""],
        2.0,
    );
    at_least(
        "purser_command_duration_seconds_count",
        &["aggregate=\"inventory\""],
        1.0,
    );
    at_least(
        "purser_events_appended_total",
        &["type=\"OrderPlaced\""],
        2.0,
    );
    at_least(
        "purser_projection_events_applied_total",
        &["projection=\"catalog\""],
        1.0,
    );
    at_least(
        "purser_projection_batch_size_count",
        &["projection=\"orders\""],
        1.0,
    );
    at_least(
        "purser_pm_actions_total",
        &["action=\"charge_payment\"", "outcome=\"done\""],
        2.0,
    );
    at_least("purser_orders_placed_total", &[], 2.0);
    at_least("purser_orders_total", &["outcome=\"confirmed\""], 1.0);
    at_least("purser_orders_total", &["outcome=\"cancelled\""], 1.0);
    at_least("purser_revenue_minor_total", &["currency=\"USD\""], 5_000.0);
    at_least(
        "purser_payment_failures_total",
        &["reason=\"declined\""],
        1.0,
    );
    at_least(
        "purser_db_pool_connections",
        &["pool=\"primary\"", "state=\"open\""],
        1.0,
    );
    // Per command type: the order was placed twice, and every command took some time.
    at_least(
        "purser_commands_total",
        &["aggregate=\"order\"", "command=\"place\"", "outcome=\"ok\""],
        2.0,
    );
    let per_command = |suffix: &str| {
        sample(
            &body,
            &format!("purser_command_duration_seconds_{suffix}"),
            &["command=\"place\""],
        )
        .unwrap_or_else(|| panic!("no per-command duration in\n{body}"))
    };
    let (count, sum) = (per_command("count"), per_command("sum"));
    assert!(
        count >= 2.0 && sum > 0.0 && sum / count < 5.0,
        "{count} {sum}"
    );
    // The append alone is part of the command, so it cannot take longer.
    let appends = sample(
        &body,
        "purser_append_duration_seconds_count",
        &["aggregate=\"order\""],
    )
    .expect("append latency is exported");
    let append_sum = sample(&body, "purser_append_duration_seconds_sum", &[])
        .expect("append latency is exported");
    let command_sum = sample(&body, "purser_command_duration_seconds_sum", &[]).unwrap();
    assert!(appends >= 2.0 && append_sum > 0.0 && append_sum <= command_sum);
    // Who holds which projection (checked per process in the two-projector test; here other
    // apps in this test process share the gauge).
    assert!(sample(&body, "purser_projection_held", &["projection=\"catalog\""]).is_some());
    assert_eq!(
        sample(
            &body,
            "purser_db_pool_max_connections",
            &["pool=\"primary\""]
        ),
        Some(f64::from(app.services().config.db_pool_size))
    );
    assert!(
        sample(&body, "purser_deadlines_overdue", &[]).is_some(),
        "overdue deadlines are exported"
    );
    assert!(
        body.contains("purser_projection_lag_events"),
        "lag gauges are exported"
    );
    assert!(
        body.contains("purser_outbox_backlog"),
        "backlog gauges are exported"
    );
    // Latency histograms have buckets.
    assert!(
        body.contains("purser_command_duration_seconds_bucket{"),
        "{body}"
    );
    // The command bus's state cache: its size, its bounds and how well it serves. The
    // checkout's commands on the inventory and order streams found their states cached.
    let cache = |name: &str| {
        sample(&body, name, &["cache=\"aggregate_states\""])
            .unwrap_or_else(|| panic!("no {name} in\n{body}"))
    };
    let limits = app.services().config.budgets.state_cache;
    assert!(cache("purser_cache_entries") >= 3.0);
    assert!(cache("purser_cache_bytes") > 0.0);
    assert!(cache("purser_cache_bytes") <= limits.max_bytes as f64);
    assert_eq!(
        cache("purser_cache_capacity_bytes"),
        limits.max_bytes as f64
    );
    assert_eq!(
        cache("purser_cache_capacity_entries"),
        limits.max_entries as f64
    );
    assert!(cache("purser_cache_hits_total") >= 1.0);
    assert!(cache("purser_cache_misses_total") >= 1.0);
    let ratio = cache("purser_cache_hit_ratio");
    assert!(ratio > 0.0 && ratio < 1.0, "hit ratio {ratio}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_checkout_can_be_followed_by_its_correlation_id_through_every_event() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("TRACE-HW", 1_000, 5).await;
    shop.digital_product("TRACE-SW", 2_000, "SIGNED").await;
    let cart = shop.cart(&[("TRACE-HW", 1), ("TRACE-SW", 1)]).await;
    let correlation = Uuid::now_v7();
    let r: serde_json::Value = app
        .http
        .post(app.url("/graphql"))
        .header("x-correlation-id", correlation.to_string())
        .json(&json!({
            "query": "mutation Checkout($i: CartCheckoutInput!) { cartCheckout(input: $i) { orderId userErrors { code } } }",
            "variables": { "i": { "cartId": cart, "idempotencyKey": "c", "email": "trace@example.com",
                                  "paymentMethod": CARD_OK, "shippingAddress": address() } } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order = r["data"]["cartCheckout"]["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    shop.wait_for_status(&order, &["CONFIRMED"]).await;
    // The digital half completes after the physical half is confirmed: wait for the order's
    // last event of this request (the license-ready mail is queued after it).
    let pool = &app.services().pool;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done: bool = sqlx::query_scalar(
            "select exists (select 1 from es.events
                            where event_type = 'OrderFulfilled' and metadata->>'correlation_id' = $1)
                and exists (select 1 from es.events e
                            where e.event_type = 'NotificationQueued'
                              and e.data->>'kind' = 'license_ready'
                              and e.metadata->>'correlation_id' = $1)",
        )
        .bind(correlation.to_string())
        .fetch_one(pool)
        .await
        .unwrap();
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the order was not fulfilled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.settle().await;

    let rows: Vec<(Uuid, String, String, serde_json::Value)> = sqlx::query_as(
        "select event_id, stream_name, event_type, metadata from es.events
         where metadata->>'correlation_id' = $1 order by transaction_id, global_position",
    )
    .bind(correlation.to_string())
    .fetch_all(pool)
    .await
    .unwrap();
    let types: HashSet<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    for expected in [
        "CartCheckedOut",
        "OrderPlaced",
        "StockReserved",
        "AccountProvisioned",
        "PaymentIntentCreated",
        "PaymentCaptured",
        "ReservationConfirmed",
        "OrderPaid",
        "OrderConfirmed",
        "LicenseIssued",
        "LicenseAttached",
        "OrderLicenseAttached",
        "OrderFulfilled",
        "NotificationQueued",
    ] {
        assert!(
            types.contains(expected),
            "{expected} does not carry the request's correlation id: {types:?}"
        );
    }
    // Every event caused by another names an event of the same request as its cause.
    let ids: HashSet<Uuid> = rows.iter().map(|r| r.0).collect();
    for (_, stream, event_type, metadata) in &rows {
        if let Some(cause) = metadata["causation_id"].as_str() {
            let cause: Uuid = cause.parse().unwrap();
            assert!(
                ids.contains(&cause),
                "{event_type} in {stream} was caused by {cause}, outside the request"
            );
        }
    }
    // The operator's trace has the same request's order creation, payment and fulfilment.
    let kinds: Vec<(String, String)> =
        sqlx::query_as("select kind, status from purser.trace_events where correlation_id = $1")
            .bind(correlation)
            .fetch_all(pool)
            .await
            .unwrap();
    for kind in ["order_creation", "payment_processing", "fulfilment"] {
        assert!(
            kinds.iter().any(|(k, s)| k == kind && s == "success"),
            "no successful {kind} trace: {kinds:?}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projector_processes_share_the_work_and_fail_over_without_gaps() {
    let mut app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("FAIL-1", 100, 1).await;
    // Only the two projector processes run projections from here on.
    app.stop().await;
    let pool = app.db.pool().await;
    let db_url = app.db.url();
    let spawn = |port: u16| {
        let mut cmd = purser_command(&db_url);
        cmd.env("PURSER_JWT_SECRET", TEST_JWT_SECRET)
            .env("PURSER_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .arg("projector");
        Binary::spawn(cmd)
    };
    let ports = [support::smtp::free_port(), support::smtp::free_port()];
    let mut first = spawn(ports[0]);
    let mut second = spawn(ports[1]);
    // How many projector processes say they hold `projection` (`purser_projection_held`).
    let holders = |projection: String, ports: Vec<u16>| async move {
        let mut total = 0.0;
        for port in ports {
            let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            total += sample(
                &body,
                "purser_projection_held",
                &[&format!("projection=\"{projection}\"")],
            )
            .unwrap_or_else(|| panic!("no purser_projection_held in\n{body}"));
        }
        total
    };

    let store = purser_event_store::PgEventStore::new(pool.clone());
    let checkpoints = Checkpoints::new(pool.clone());
    let receive = |n: i64| {
        let store = store.clone();
        async move {
            use purser_domain::Event;
            use purser_event_store::EventStore;
            let sku = purser_domain::Sku::parse("FAIL-1").unwrap();
            let (t, v, data) = purser_domain::inventory::InventoryEvent::StockReceived {
                sku: sku.clone(),
                qty: purser_domain::Quantity::new(n).unwrap(),
                at: chrono::Utc::now(),
            }
            .encode();
            let e = purser_event_store::NewEvent {
                id: Uuid::now_v7(),
                event_type: t.into(),
                schema_version: v,
                data,
                metadata: Default::default(),
            };
            let stream = purser_event_store::StreamName::new(sku.inventory_stream()).unwrap();
            store
                .append(&stream, purser_event_store::ExpectedVersion::Any, vec![e])
                .await
                .unwrap()
                .last_position
        }
    };
    let names: Vec<String> = purser_projections::all()
        .iter()
        .map(|p| p.name().to_owned())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let last = receive(1).await;
    assert!(
        checkpoints
            .wait_for(&names, last, Duration::from_secs(60))
            .await
            .unwrap()
    );
    // Each projection has exactly one owner, and both processes are alive.
    let owners: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
        "select name, owner from purser.projection_checkpoints where owner is not null",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    for name in &names {
        assert!(owners.contains_key(*name), "{name} has no owner");
        // The processes agree: exactly one of them holds it.
        assert_eq!(
            holders(name.to_string(), ports.to_vec()).await,
            1.0,
            "{name}"
        );
    }
    // Kill the process that runs the catalog; the other takes over within seconds.
    let catalog_owner = owners["catalog"].clone();
    let first_pid = format!(":{}", first.child.id());
    let survivor = if catalog_owner.ends_with(&first_pid) {
        first.kill();
        ports[1]
    } else {
        second.kill();
        ports[0]
    };
    // One unit from the product's creation, one from the first receipt above.
    let mut expected = 2;
    for n in 2..=20 {
        expected += n;
        receive(n).await;
    }
    let last = receive(100).await;
    expected += 100;
    let started = std::time::Instant::now();
    assert!(
        checkpoints
            .wait_for(&["catalog"], last, Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "fail-over took {:?}",
        started.elapsed()
    );
    assert_eq!(holders("catalog".into(), vec![survivor]).await, 1.0);
    let on_hand: i64 = sqlx::query_scalar("select on_hand from catalog.stock where sku = 'FAIL-1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(on_hand, expected, "nothing skipped, nothing applied twice");
    let live = table_checksum(&pool, "catalog.stock").await.unwrap();
    drop((first, second));
    let mut cmd = purser_command(&db_url);
    cmd.args(["projector", "--rebuild", "catalog"]);
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        support::run_with_timeout(cmd, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(table_checksum(&pool, "catalog.stock").await.unwrap(), live);
}

/// SIGTERM while requests are in flight: every request the server accepted completes, and
/// every order it accepted is still there (and completes) after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_fails_no_accepted_request_and_loses_no_event() {
    let mut app = spawn_app().await;
    let admin = Shop::new(&app).await.admin;
    {
        let shop = Shop {
            app: &app,
            admin: admin.clone(),
        };
        shop.product("TERM-1", 500, 1_000).await;
    }
    app.stop().await;
    let db_url = app.db.url();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serve = |port: u16| {
        let mut cmd = purser_command(&db_url);
        cmd.env("PURSER_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("PURSER_JWT_SECRET", TEST_JWT_SECRET)
            .arg("serve");
        Binary::spawn(cmd)
    };
    let server = serve(port);
    app.addr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = reqwest::Client::new();
    support::wait_until_ready(&client, app.addr).await;

    // Shoppers check out continuously; SIGTERM lands in the middle.
    let shop = Shop {
        app: &app,
        admin: admin.clone(),
    };
    let mut carts = Vec::new();
    for _ in 0..40 {
        carts.push(shop.cart(&[("TERM-1", 1)]).await);
    }
    let pid = server.child.id();
    let checkouts = carts.iter().enumerate().map(|(i, cart)| {
        let client = client.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(i as u64 * 5)).await;
            let r = client
                .post(format!("http://127.0.0.1:{port}/graphql"))
                .json(&json!({ "query": "mutation($i: CartCheckoutInput!) { cartCheckout(input: $i) { orderId userErrors { code } } }",
                               "variables": { "i": { "cartId": cart, "idempotencyKey": "t", "email": "t@example.com",
                                                     "paymentMethod": CARD_OK, "shippingAddress": address() } } }))
                .send()
                .await;
            match r {
                // Accepted: it must have succeeded completely.
                Ok(res) => {
                    let status = res.status();
                    let body: serde_json::Value = res.json().await.expect("an accepted request gets a full answer");
                    assert_eq!(status, 200, "{body}");
                    assert!(body.get("errors").is_none(), "{body}");
                    Some(body["data"]["cartCheckout"]["orderId"].as_str().unwrap().to_owned())
                }
                // Refused at the door after shutdown began: never accepted, nothing to check.
                Err(_) => None,
            }
        }
    });
    let term = async {
        tokio::time::sleep(Duration::from_millis(60)).await;
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
    };
    let (placed, ()) = tokio::join!(futures::future::join_all(checkouts), term);
    let accepted: Vec<String> = placed.into_iter().flatten().collect();
    assert!(
        !accepted.is_empty(),
        "some checkouts went through before the shutdown"
    );
    // The process exits on its own.
    let mut server = server;
    let exit = tokio::task::spawn_blocking(move || server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "a clean exit after SIGTERM, got {exit}");

    // Restart: every accepted order is there and completes.
    let _again = serve(port);
    support::wait_until_ready(&client, app.addr).await;
    for order in &accepted {
        shop.wait_for_status(order, &["CONFIRMED"]).await;
    }
}

/// A span as the stand-in collector received it.
#[derive(Debug, Clone)]
struct ExportedSpan {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: HashMap<String, String>,
}

/// A stand-in OpenTelemetry collector on a free port: OTLP/HTTP with protobuf bodies, the
/// spans it receives sent down the channel.
async fn otlp_collector() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<ExportedSpan>,
) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let text = |v: Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
        .and_then(|v| v.value)
    {
        Some(Value::StringValue(s)) => s,
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    };
    let receive = move |body: axum::body::Bytes| {
        let tx = tx.clone();
        async move {
            let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
            for resource in request.resource_spans {
                let service = resource
                    .resource
                    .into_iter()
                    .flat_map(|r| r.attributes)
                    .find(|a| a.key == "service.name")
                    .map(|a| text(a.value))
                    .unwrap_or_default();
                for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                    let _ = tx.send(ExportedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        attributes: span
                            .attributes
                            .into_iter()
                            .map(|a| (a.key, text(a.value)))
                            .collect(),
                    });
                }
            }
            (
                [("content-type", "application/x-protobuf")],
                Vec::<u8>::new(),
            )
        }
    };
    let router = axum::Router::new().route("/v1/traces", axum::routing::post(receive));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, rx)
}

/// With an OTLP endpoint configured the server exports its spans, and one checkout is one
/// trace: the request, its commands, the process-manager steps and the read-model writes it
/// caused (which run later, in other tasks) share one trace id, and that id is the
/// correlation id recorded in every event of the checkout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_trace_follows_one_checkout_from_the_request_to_the_read_models() {
    let (collector, mut spans) = otlp_collector().await;
    let mut app = spawn_app().await;
    let admin = Shop::new(&app).await.admin;
    let shop = Shop {
        app: &app,
        admin: admin.clone(),
    };
    shop.product("OTLP-1", 1_500, 5).await;
    app.stop().await;
    let db_url = app.db.url();
    let port = support::smtp::free_port();
    let mut cmd = purser_command(&db_url);
    cmd.env("PURSER_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("PURSER_JWT_SECRET", TEST_JWT_SECRET)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
        .env("OTEL_SERVICE_NAME", "purser-under-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .arg("serve");
    let _server = Binary::spawn(cmd);
    app.addr = format!("127.0.0.1:{port}").parse().unwrap();
    app.wait_until_ready().await;
    let shop = Shop {
        app: &app,
        admin: admin.clone(),
    };
    // No correlation header: the request's own trace id becomes the correlation id.
    let order = shop.order_from(&[("OTLP-1", 2)], CARD_OK).await;
    shop.wait_for_status(&order, &["CONFIRMED"]).await;

    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    let correlation: String = sqlx::query_scalar(
        "select metadata->>'correlation_id' from es.events where event_type = 'OrderConfirmed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let correlation = Uuid::parse_str(&correlation).unwrap();
    let events_of_checkout: i64 =
        sqlx::query_scalar("select count(*) from es.events where metadata->>'correlation_id' = $1")
            .bind(correlation.to_string())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(events_of_checkout >= 8, "{events_of_checkout} events");

    // Collect the trace until it reaches the confirmation in the orders read model.
    let trace = correlation.as_bytes().to_vec();
    let mut in_trace: Vec<ExportedSpan> = Vec::new();
    let reached = |spans: &[ExportedSpan]| {
        spans.iter().any(|s| {
            s.name == "project"
                && s.attributes.get("projection").map(String::as_str) == Some("orders")
                && s.attributes.get("event_type").map(String::as_str) == Some("OrderConfirmed")
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !reached(&in_trace) {
        let span = tokio::time::timeout_at(deadline, spans.recv())
            .await
            .unwrap_or_else(|_| {
                let names: Vec<_> = in_trace.iter().map(|s| &s.name).collect();
                panic!("the trace never reached the orders read model; got {names:?}")
            })
            .expect("collector running");
        assert_eq!(span.service, "purser-under-test");
        if span.trace_id == trace {
            in_trace.push(span);
        }
    }
    let named =
        |name: &str| -> Vec<&ExportedSpan> { in_trace.iter().filter(|s| s.name == name).collect() };
    // The mutation's request span is the trace's root, and the order was placed inside it.
    let request = named("request")
        .into_iter()
        .find(|s| s.attributes.get("path").map(String::as_str) == Some("/graphql"))
        .unwrap_or_else(|| panic!("no request span in {in_trace:#?}"));
    assert!(request.parent_span_id.is_empty(), "{request:?}");
    let place = named("command")
        .into_iter()
        .find(|s| s.attributes.get("command").map(String::as_str) == Some("place"))
        .unwrap_or_else(|| panic!("no place command in {in_trace:#?}"));
    assert_eq!(place.parent_span_id, request.span_id);
    assert_eq!(place.attributes["aggregate"], "order");
    // Process-manager steps ran later, outside the request, and still joined its trace.
    assert!(
        !named("process_step").is_empty(),
        "no process-manager step in {in_trace:#?}"
    );
    // Every span that names a correlation id names this one.
    for span in &in_trace {
        if let Some(c) = span.attributes.get("correlation_id") {
            assert_eq!(c, &correlation.to_string(), "{span:?}");
        }
    }
}

/// Plays the replication a real replica does, all at once: copies every read-model table and
/// the projection checkpoints from `primary` (one snapshot) to `replica` (one transaction), as
/// a streaming replica that has replayed up to now would show them.
async fn replicate(primary: &sqlx::PgPool, replica: &sqlx::PgPool) {
    use futures::TryStreamExt;
    let mut source = primary.begin().await.unwrap();
    sqlx::query("set transaction isolation level repeatable read")
        .execute(&mut *source)
        .await
        .unwrap();
    let tables: Vec<(String, String)> = sqlx::query_as(
        "select format('%I.%I', n.nspname, c.relname),
                (select string_agg(quote_ident(a.attname), ', ' order by a.attnum)
                   from pg_attribute a
                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                    and a.attgenerated = '')
           from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind = 'r'
            and (n.nspname in ('catalog', 'sales', 'analytics')
                 or (n.nspname = 'purser' and c.relname = 'projection_checkpoints'))",
    )
    .fetch_all(&mut *source)
    .await
    .unwrap();
    let mut target = replica.begin().await.unwrap();
    let all: Vec<&str> = tables.iter().map(|(t, _)| t.as_str()).collect();
    sqlx::query(&format!("truncate {}", all.join(", ")))
        .execute(&mut *target)
        .await
        .unwrap();
    for (table, columns) in &tables {
        let rows: Vec<u8> = source
            .copy_out_raw(&format!("copy {table} ({columns}) to stdout"))
            .await
            .unwrap()
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .unwrap();
        let mut copy = target
            .copy_in_raw(&format!("copy {table} ({columns}) from stdin"))
            .await
            .unwrap();
        copy.send(rows).await.unwrap();
        copy.finish().await.unwrap();
    }
    target.commit().await.unwrap();
}

/// An app whose queries read from a database of their own (`DATABASE_READ_URL`), which
/// nothing fills unless the test calls `replicate`. Returns that database too, to keep it.
async fn app_reading_from_another_database(
    consistency_timeout_ms: u64,
) -> (purser_testkit::TestDb, support::TestApp) {
    let replica = purser_testkit::TestDb::new().await;
    let (url, timeout) = (replica.url(), consistency_timeout_ms.to_string());
    let app = support::spawn_app_with(
        purser::app::Role::All,
        &[
            ("DATABASE_READ_URL", url.as_str()),
            ("PURSER_CONSISTENCY_TIMEOUT_MS", timeout.as_str()),
        ],
    )
    .await;
    (replica, app)
}

/// Creates a product through the mutation; returns the position it was appended at.
async fn created_at(shop: &Shop<'_>, sku: &str, name: &str, price: i64) -> String {
    let created = shop
        .admin(
            "mutation($i: ProductCreateInput!) { productCreate(input: $i) { position userErrors { code } } }",
            json!({ "i": { "sku": sku, "name": name, "brand": "Acme", "category": "Tests",
                           "price": { "amount": price, "currency": "USD" } } }),
        )
        .await;
    created["data"]["productCreate"]["position"]
        .as_str()
        .expect("a position")
        .to_owned()
}

/// Queries read from `DATABASE_READ_URL` while commands write the primary. Read-your-writes
/// still holds when that database lags: a query given a mutation's position waits until the
/// read database has it (by its own checkpoints, which move in the same transaction as the
/// rows), and answers `CONSISTENCY_TIMEOUT` rather than stale data if it never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_on_a_lagging_read_database_wait_for_the_position_they_were_given() {
    let (replica, mut app) = app_reading_from_another_database(20_000).await;
    let shop = Shop::new(&app).await;
    let position = created_at(&shop, "READ-1", "Replica lamp", 4_200).await;
    let read = |at: Option<String>| {
        let (app, admin) = (&app, shop.admin.clone());
        async move {
            app.graphql_as(
                &admin,
                "query($at: String) { product(sku: \"READ-1\", minPosition: $at) { name price { amount } } }",
                json!({ "at": at }),
            )
            .await
        }
    };
    // The primary's catalog has it; the read database has nothing yet.
    let primary = app.db.pool().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sqlx::query_scalar::<_, i64>("select count(*) from catalog.products where sku = 'READ-1'")
        .fetch_one(&primary)
        .await
        .unwrap()
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the primary's catalog never had it"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(read(None).await["data"]["product"], json!(null));
    let replica_pool = replica.pool().await;
    let before: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(&replica_pool)
        .await
        .unwrap();

    // A query for that position waits while the read database lags, and answers once it has
    // replayed up to it.
    let waiting = tokio::spawn({
        let url = app.url("/graphql");
        let admin = shop.admin.clone();
        let position = position.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(admin)
                .json(&json!({
                    "query": "query($at: String) { product(sku: \"READ-1\", minPosition: $at) { name price { amount } } }",
                    "variables": { "at": position } }))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    });
    // The query is in: its wait shows in the GraphQL metrics only when it ends, so watch the
    // read database's sessions for the checkpoint poll instead.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let polling: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_stat_activity
                            where datname = current_database() and pid <> pg_backend_pid()
                              and query like '%projection_checkpoints%'
                              and query not like '%pg_stat_activity%'
                              and query_start > $1)",
        )
        .bind(before)
        .fetch_one(&replica_pool)
        .await
        .unwrap();
        if polling {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the query never asked the read database"
        );
        tokio::task::yield_now().await;
    }
    assert!(
        !waiting.is_finished(),
        "answered before the read database had the write"
    );
    replicate(&primary, &replica_pool).await;
    let answer = waiting.await.unwrap();
    assert_eq!(
        answer["data"]["product"],
        json!({ "name": "Replica lamp", "price": { "amount": 4_200 } }),
        "{answer}"
    );
    assert_eq!(
        read(Some(position)).await["data"]["product"]["name"],
        "Replica lamp"
    );
    // Both pools are sampled.
    let metrics = app.metrics().await;
    for pool in ["primary", "read"] {
        assert!(
            sample(
                &metrics,
                "purser_db_pool_max_connections",
                &[&format!("pool=\"{pool}\"")]
            )
            .is_some(),
            "{pool} pool not sampled"
        );
    }
    // Stopped before the databases are dropped, so no connection races their removal.
    app.stop().await;
}

/// A read database that never catches up: the query with a position fails with a clear
/// `CONSISTENCY_TIMEOUT` instead of answering from stale data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_database_that_never_catches_up_gives_a_consistency_timeout_not_stale_data() {
    let (_replica, mut app) = app_reading_from_another_database(300).await;
    let shop = Shop::new(&app).await;
    let position = created_at(&shop, "READ-2", "Stale lamp", 100).await;
    let r = app
        .graphql_as(
            &shop.admin,
            "query($at: String) { product(sku: \"READ-2\", minPosition: $at) { name } }",
            json!({ "at": position }),
        )
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "CONSISTENCY_TIMEOUT",
        "{r}"
    );
    assert_eq!(r["data"]["product"], json!(null), "{r}");
    app.stop().await;
}

/// Runs `purser seed` twice on `db` (and the event store `env` selects) and checks that the
/// second run appends nothing to the streams seeding writes, in particular no stock receipt
/// twice: they carry fixed event ids, which the event store must recognise when they are sent
/// again, whatever version the stream is at by then.
async fn seed_twice(db: &purser_testkit::TestDb, env: &[(&str, &str)], store: &dyn EventStore) {
    let (url, env): (String, Vec<(String, String)>) = (
        db.url(),
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let seed = move || {
        let mut cmd = purser_command(&url);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.args(["seed", "--products", "12", "--orders", "0"]);
        support::run_with_timeout(cmd, Duration::from_secs(120))
    };
    let seeded = EventFilter::categories(["product", "inventory", "customer"]);
    let receipts = EventFilter {
        categories: vec!["inventory".into()],
        event_types: vec!["StockReceived".into()],
    };
    let count = |filter: &EventFilter| {
        let filter = filter.clone();
        async move {
            store
                .backlog(Position::START, &filter, u64::MAX)
                .await
                .unwrap()
                .0
        }
    };
    let (code, first, err) = tokio::task::spawn_blocking(seed.clone()).await.unwrap();
    assert_eq!(code, Some(0), "{err}");
    let (stocked, events) = (count(&receipts).await, count(&seeded).await);
    assert!(stocked > 0, "{first}");
    let (code, _, err) = tokio::task::spawn_blocking(seed).await.unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(count(&receipts).await, stocked, "stock received twice");
    assert_eq!(
        count(&seeded).await,
        events,
        "the second run appended events"
    );
}

/// The compose setup runs `purser seed` on every start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_twice_appends_nothing_the_second_time() {
    let db = purser_testkit::TestDb::new().await;
    let store = PgEventStore::new(db.pool().await);
    seed_twice(&db, &[], &store).await;
}

/// The same on KurrentDB (the compose default), where `KURRENTDB_URL` points at a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_twice_on_kurrentdb_appends_nothing_the_second_time() {
    let Ok(url) = std::env::var("KURRENTDB_URL") else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "seeding on KurrentDB not tested: KURRENTDB_URL is not set"
        );
        return;
    };
    let db = purser_testkit::TestDb::new().await;
    let store = KurrentEventStore::from_url(&url).unwrap();
    let env = [("PURSER_EVENT_STORE", "kurrentdb"), ("KURRENTDB_URL", &url)];
    seed_twice(&db, &env, &store).await;
}
