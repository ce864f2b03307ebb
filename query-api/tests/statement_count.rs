//! Dataloaders against N+1: a page of 50 orders, each with its lines, each line's product and
//! each order's timeline, costs a fixed, small number of SQL statements.
//!
//! How statements are counted: the schema's pool connects to Postgres through a small TCP proxy
//! in this test that reads the frontend protocol stream and counts `Execute` messages (one per
//! statement run with the extended protocol, which sqlx always uses for queries) and `Query`
//! messages (simple protocol). Nothing else talks through the proxy, so the count is exactly
//! the statements the resolvers sent; no server extension or log access is needed.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use purser_testkit::TestDb;
use serde_json::json;
use sqlx::postgres::{PgPoolOptions, PgSslMode};
use support::scenario::{OrderSpec, Outcome, Scenario, catch_up_all, digital, physical};
use support::{admin, run, schema_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Counts the statements clients send through it to `upstream`.
struct CountingProxy {
    port: u16,
    statements: Arc<AtomicUsize>,
}

impl CountingProxy {
    async fn start(upstream: String) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let statements = Arc::new(AtomicUsize::new(0));
        let counter = statements.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.unwrap();
                let counter = counter.clone();
                tokio::spawn(async move { relay(client, server, counter).await });
            }
        });
        CountingProxy { port, statements }
    }

    fn take(&self) -> usize {
        self.statements.swap(0, Ordering::SeqCst)
    }
}

/// Copies server → client untouched, and client → server message by message, counting.
async fn relay(client: TcpStream, server: TcpStream, counter: Arc<AtomicUsize>) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
    });
    // The startup message has no type byte: a length, then the body.
    let mut len = [0u8; 4];
    if client_rx.read_exact(&mut len).await.is_err() {
        return;
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
    if client_rx.read_exact(&mut body).await.is_err() {
        return;
    }
    if server_tx.write_all(&len).await.is_err() || server_tx.write_all(&body).await.is_err() {
        return;
    }
    // Every later message: a type byte, a length that counts itself, the body.
    loop {
        let mut head = [0u8; 5];
        if client_rx.read_exact(&mut head).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        if client_rx.read_exact(&mut body).await.is_err() {
            return;
        }
        if matches!(head[0], b'E' | b'Q') {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        if std::env::var("COUNT_DEBUG").is_ok() {
            eprintln!(
                "{} {:?}",
                head[0] as char,
                String::from_utf8_lossy(&body[..body.len().min(90)])
            );
        }
        if server_tx.write_all(&head).await.is_err() || server_tx.write_all(&body).await.is_err() {
            return;
        }
    }
}

const PAGE: &str = "query($first: Int) { orders(first: $first) { edges { node {
    id status total { amount formatted } placedAt
    lines { sku quantity lineTotal { amount } product { name brand stock { available } } }
    timeline { seq status event at }
} } } }";

/// The orders page; the page's lines (one statement) with their products (one statement); the
/// page's timelines (one statement).
const BOUND: usize = 4;

// The page loads its lines and timelines with one `load_many` each, so the count does not
// depend on how the runtime interleaves resolvers: a multi-threaded runtime is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_fifty_orders_with_lines_products_and_timelines_is_four_statements() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let s = Scenario::new(pool.clone());
    let products = [
        ("LAP-13", "Laptop 13", false),
        ("MUG-1", "Mug", false),
        ("KB-1", "Keyboard", false),
        ("AV-1Y", "Antivirus", true),
        ("VPN-1Y", "VPN", true),
    ];
    for (code, name, is_digital) in products {
        s.product(code)
            .name(name)
            .brand("Acme")
            .category("Stuff")
            .price(1_000)
            .digital(is_digital)
            .stock(1_000)
            .at(-60)
            .create()
            .await;
    }
    let customers = ["ann@example.com", "bob@example.com", "cy@example.com"];
    for i in 0..50usize {
        let (p1, p2, d) = (products[i % 3], products[(i + 1) % 3], products[3 + i % 2]);
        s.order(&OrderSpec::new(
            customers[i % 3],
            vec![
                physical(p1.0, p1.1, 1, 1_000),
                physical(p2.0, p2.1, 2, 1_000),
                digital(d.0, d.1, 1_000),
            ],
            i as i64,
            Outcome::Paid,
        ))
        .await;
    }
    catch_up_all(&s).await;

    let options = db.connect_options();
    let proxy =
        CountingProxy::start(format!("{}:{}", options.get_host(), options.get_port())).await;
    let counted = PgPoolOptions::new()
        .max_connections(8)
        // A health check before each checkout would be a statement of its own.
        .test_before_acquire(false)
        .connect_with(
            options
                .clone()
                .host("127.0.0.1")
                .port(proxy.port)
                .ssl_mode(PgSslMode::Disable),
        )
        .await
        .unwrap();
    // Checkpoints read on a pool of their own, so only resolver statements go through the proxy.
    let schema = schema_with(&counted, purser_projections::Checkpoints::new(pool.clone()));

    for first in [50, 5] {
        // The first run warms the pool up; the second is measured.
        let warm = run(&schema, &admin(), PAGE, json!({ "first": first })).await;
        assert!(warm["errors"].is_null(), "{warm}");
        proxy.take();
        let r = run(&schema, &admin(), PAGE, json!({ "first": first })).await;
        let statements = proxy.take();
        assert!(r["errors"].is_null(), "{r}");
        let orders = r["data"]["orders"]["edges"].as_array().unwrap();
        assert_eq!(orders.len(), first);
        for o in orders {
            let lines = o["node"]["lines"].as_array().unwrap();
            assert_eq!(lines.len(), 3);
            assert!(lines.iter().all(|l| l["product"]["brand"] == "Acme"));
            assert_eq!(o["node"]["timeline"].as_array().unwrap().len(), 6);
        }
        assert_eq!(
            statements, BOUND,
            "{first} orders with lines, products and timelines"
        );
    }

    // One order on its own: the order, its lines, their products, its timeline.
    let page = run(&schema, &admin(), PAGE, json!({ "first": 1 })).await;
    let id = page["data"]["orders"]["edges"][0]["node"]["id"].clone();
    proxy.take();
    let r = run(
        &schema,
        &admin(),
        "query($id: ID!) { order(id: $id) { lines { product { name } } timeline { seq } } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(
        r["data"]["order"]["lines"].as_array().unwrap().len(),
        3,
        "{r}"
    );
    assert_eq!(proxy.take(), 4);
}
