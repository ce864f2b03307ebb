//! The sales and analytics read models against a real Postgres: real domain events appended
//! through the event store, folded by the real projector, rows asserted; and every read model
//! rebuilt from zero equal to the live one.

use std::time::Duration;

use purser_domain::cart::CartEvent;
use purser_domain::customer::Role;
use purser_domain::payment::PaymentFailureReason;
use purser_domain::{CartId, OrderId};
use purser_projections::{Checkpoints, Projector, ProjectorOptions, table_checksum};
use purser_testkit::TestDb;
use purser_testkit::scenario::{
    OrderSpec, Outcome, Scenario, catch_up_all, customer_of, digital, physical, qty, sku, t, usd,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

async fn setup() -> (TestDb, PgPool, Scenario) {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let scenario = Scenario::new(pool.clone());
    (db, pool, scenario)
}

async fn project(_pool: &PgPool, s: &Scenario) {
    catch_up_all(s).await;
}

/// The products the tests order, with enough stock for all of them.
async fn stock_up(s: &Scenario) {
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

type TimelineStep = (i32, String, String, Value);

async fn timeline(pool: &PgPool, order: OrderId) -> Vec<TimelineStep> {
    sqlx::query_as(
        "select seq, status, event, detail from sales.order_timeline
         where order_id = $1 order by seq",
    )
    .bind(order.as_uuid())
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_summarise_lines_timeline_payment_tracking_and_refunds() {
    let (_db, pool, s) = setup().await;
    stock_up(&s).await;
    let mixed = OrderSpec::new(
        "ann@example.com",
        vec![
            physical("LAP-13", "Laptop 13", 2, 100_000),
            digital("AV-1Y", "Antivirus", 4_999),
        ],
        0,
        Outcome::Delivered,
    );
    let retried = OrderSpec::new(
        "bob@example.com",
        vec![digital("AV-1Y", "Antivirus", 4_999)],
        30,
        Outcome::PaidAfterRetry,
    );
    let failed = OrderSpec::new(
        "cy@example.com",
        vec![physical("MUG-1", "Mug", 1, 1_500)],
        60,
        Outcome::PaymentFailed(PaymentFailureReason::InsufficientFunds),
    );
    let refunded = OrderSpec::new(
        "ann@example.com",
        vec![physical("MUG-1", "Mug", 2, 1_500)],
        90,
        Outcome::Refunded(500),
    );
    for o in [&mixed, &retried, &failed, &refunded] {
        s.order(o).await;
    }
    project(&pool, &s).await;

    // The mixed order: delivered, with tracking, its license on the digital line.
    type Summary = (
        String,
        i64,
        i32,
        i32,
        Option<String>,
        Option<String>,
        Option<String>,
        bool,
        bool,
    );
    let row: Summary = sqlx::query_as(
        "select status, total_minor, item_count, line_count, payment_reference,
                    tracking_number, carrier, has_digital, has_physical
             from sales.orders where order_id = $1",
    )
    .bind(mixed.order_id.as_uuid())
    .fetch_one(&pool)
    .await
    .unwrap();
    let reference = format!("ch_{}", &mixed.order_id.to_string()[..8]);
    assert_eq!(
        row,
        (
            "DELIVERED".to_string(),
            204_999,
            3,
            2,
            Some(reference.clone()),
            Some("1Z999".to_string()),
            Some("UPS".to_string()),
            true,
            true
        )
    );
    type LineRow = (i32, String, String, i32, i64, i64, Option<Uuid>);
    let lines: Vec<LineRow> = sqlx::query_as(
        "select line_no, sku, kind, qty, unit_price_minor, line_total_minor, license_id
         from sales.order_lines where order_id = $1 order by line_no",
    )
    .bind(mixed.order_id.as_uuid())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        lines,
        vec![
            (
                1,
                "LAP-13".into(),
                "physical".into(),
                2,
                100_000,
                200_000,
                None
            ),
            (
                2,
                "AV-1Y".into(),
                "digital".into(),
                1,
                4_999,
                4_999,
                Some(mixed.license_id("AV-1Y").as_uuid())
            ),
        ]
    );
    let steps = timeline(&pool, mixed.order_id).await;
    let shape: Vec<(i32, &str, &str)> = steps
        .iter()
        .map(|(seq, status, event, _)| (*seq, status.as_str(), event.as_str()))
        .collect();
    assert_eq!(
        shape,
        vec![
            (1, "PENDING", "OrderPlaced"),
            (2, "PAYMENT_PROCESSING", "OrderPaymentStarted"),
            (3, "PAID", "OrderPaid"),
            (4, "CONFIRMED", "OrderConfirmed"),
            // A mixed order records its licenses and fulfilment but stays on the physical path.
            (5, "CONFIRMED", "OrderLicenseAttached"),
            (6, "CONFIRMED", "OrderFulfilled"),
            (7, "PROCESSING", "OrderProcessingStarted"),
            (8, "SHIPPED", "OrderShipped"),
            (9, "DELIVERED", "OrderDelivered"),
        ]
    );
    assert_eq!(steps[2].3["payment_reference"], json!(reference));
    assert_eq!(steps[4].3["sku"], json!("AV-1Y"));
    assert_eq!(steps[7].3["tracking_number"], json!("1Z999"));
    assert_eq!(steps[7].3["carrier"], json!("UPS"));
    assert!(steps[7].3["estimated_delivery"].is_string());

    // A digital-only order is FULFILLED; the retried gateway timeout is a step, not a status.
    let steps = timeline(&pool, retried.order_id).await;
    let shape: Vec<(&str, &str)> = steps
        .iter()
        .map(|(_, status, event, _)| (status.as_str(), event.as_str()))
        .collect();
    assert_eq!(
        shape,
        vec![
            ("PENDING", "OrderPlaced"),
            ("PAYMENT_PROCESSING", "OrderPaymentStarted"),
            ("PAYMENT_PROCESSING", "PaymentAttemptFailed"),
            ("PAID", "OrderPaid"),
            ("PAID", "OrderLicenseAttached"),
            ("FULFILLED", "OrderFulfilled"),
        ]
    );
    assert_eq!(steps[2].3["attempt"], json!(1));
    assert_eq!(steps[2].3["error"], json!("gateway timeout"));

    // A failed payment: the reason from the payment, then cancelled by the system.
    let row: (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<Uuid>,
    ) = sqlx::query_as(
        "select status, failure_reason, cancel_reason, cancelled_by, payment_id
             from sales.orders where order_id = $1",
    )
    .bind(failed.order_id.as_uuid())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "CANCELLED".into(),
            Some("insufficient_funds".into()),
            Some("payment failed".into()),
            Some("system".into()),
            Some(failed.payment_id().as_uuid())
        )
    );
    let steps = timeline(&pool, failed.order_id).await;
    assert_eq!(steps[2].1, "PAYMENT_FAILED");
    assert_eq!(steps[2].3["failure_reason"], json!("insufficient_funds"));
    assert_eq!(steps.last().unwrap().1, "CANCELLED");

    // A partial refund.
    let row: (String, i64, Option<i64>) = sqlx::query_as(
        "select status, refunded_minor, captured_minor from sales.orders where order_id = $1",
    )
    .bind(refunded.order_id.as_uuid())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row, ("REFUNDED".into(), 500, Some(3_000)));
    let last = timeline(&pool, refunded.order_id).await.pop().unwrap();
    assert_eq!(last.3["refund_minor"], json!(500));
    assert_eq!(last.3["reason"], json!("customer request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_keep_lines_totals_and_outcome() {
    let (_db, pool, s) = setup().await;
    let kept = CartId::new();
    let order_id = OrderId::new();
    s.cart(
        kept,
        Some("ann@example.com"),
        &[
            physical("LAP-13", "Laptop 13", 1, 100_000),
            physical("MUG-1", "Mug", 2, 1_500),
            digital("AV-1Y", "Antivirus", 4_999),
        ],
        0,
    )
    .await;
    s.cart_event(CartEvent::CartItemQuantityChanged {
        cart_id: kept,
        sku: sku("MUG-1"),
        old_qty: qty(2),
        new_qty: qty(4),
        at: t(10),
    })
    .await;
    s.cart_event(CartEvent::CartItemRemoved {
        cart_id: kept,
        sku: sku("LAP-13"),
        at: t(11),
    })
    .await;
    s.cart_event(CartEvent::CartCheckedOut {
        cart_id: kept,
        order_id,
        total: usd(4 * 1_500 + 4_999),
        item_count: 5,
        at: t(12),
    })
    .await;
    let guest = CartId::new();
    s.cart(guest, None, &[physical("MUG-1", "Mug", 1, 1_500)], 20)
        .await;
    s.cart_event(CartEvent::CartAbandoned {
        cart_id: guest,
        last_activity_at: t(21),
        at: t(21 + 7 * 24 * 60),
    })
    .await;
    project(&pool, &s).await;

    type CartSummary = (
        String,
        Option<Uuid>,
        Option<Uuid>,
        i32,
        i32,
        i64,
        chrono::DateTime<chrono::Utc>,
    );
    let row: CartSummary = sqlx::query_as(
        "select status, customer_id, order_id, item_count, line_count, subtotal_minor,
                last_activity_at
         from sales.carts where cart_id = $1",
    )
    .bind(kept.as_uuid())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "checked_out".into(),
            Some(customer_of("ann@example.com").as_uuid()),
            Some(order_id.as_uuid()),
            5,
            2,
            10_999,
            t(12)
        )
    );
    let lines: Vec<(String, i32, i32, i64)> = sqlx::query_as(
        "select sku, line_no, qty, line_total_minor from sales.cart_lines
         where cart_id = $1 order by line_no",
    )
    .bind(kept.as_uuid())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        lines,
        vec![("MUG-1".into(), 2, 4, 6_000), ("AV-1Y".into(), 3, 1, 4_999)]
    );
    let row: (String, Option<Uuid>, i64) = sqlx::query_as(
        "select status, customer_id, subtotal_minor from sales.carts where cart_id = $1",
    )
    .bind(guest.as_uuid())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row, ("abandoned".into(), None, 1_500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_have_roles_orders_spend_and_licenses_but_no_password_hash() {
    let (_db, pool, s) = setup().await;
    stock_up(&s).await;
    s.register("ann@example.com", "Ann", 0).await;
    s.grant("ann@example.com", Role::Analyst, 1).await;
    s.grant("ann@example.com", Role::Admin, 2).await;
    let ann_order = OrderSpec::new(
        "ann@example.com",
        vec![physical("MUG-1", "Mug", 2, 1_500)],
        10,
        Outcome::Refunded(1_000),
    );
    s.order(&ann_order).await;
    let bob_order = OrderSpec::new(
        "bob@example.com",
        vec![digital("AV-1Y", "Antivirus", 4_999)],
        20,
        Outcome::Paid,
    );
    s.order(&bob_order).await;
    // Bob signs up later: the guest account becomes a registered one.
    s.register("bob@example.com", "Bob", 30).await;
    let cy_order = OrderSpec::new(
        "cy@example.com",
        vec![physical("MUG-1", "Mug", 1, 1_500)],
        40,
        Outcome::Placed,
    );
    s.order(&cy_order).await;
    project(&pool, &s).await;

    type CustomerSummary = (String, Option<String>, bool, bool, bool, Vec<String>, i32);
    let ann: CustomerSummary = sqlx::query_as(
        "select email, name, registered, guest, provisioned, roles, orders_count
         from sales.customers where customer_id = $1",
    )
    .bind(customer_of("ann@example.com").as_uuid())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        ann,
        (
            "ann@example.com".into(),
            Some("Ann".into()),
            true,
            false,
            false,
            vec!["admin".into(), "analyst".into(), "customer".into()],
            1
        )
    );
    let bob: CustomerSummary = sqlx::query_as(
        "select email, name, registered, guest, provisioned, roles, orders_count
         from sales.customers where customer_id = $1",
    )
    .bind(customer_of("bob@example.com").as_uuid())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        bob,
        (
            "bob@example.com".into(),
            Some("Bob".into()),
            true,
            false,
            true,
            vec!["customer".into()],
            1
        )
    );
    let cy: (bool, bool, i32, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
        "select registered, guest, orders_count, first_order_at from sales.customers
         where customer_id = $1",
    )
    .bind(customer_of("cy@example.com").as_uuid())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(cy, (false, true, 1, Some(t(40))));

    let spend: Vec<(Uuid, String, i64, i64, i64)> = sqlx::query_as(
        "select customer_id, currency, paid_minor, refunded_minor, spent_minor
         from sales.customer_spend order by spent_minor",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        spend,
        vec![
            (
                customer_of("cy@example.com").as_uuid(),
                "USD".into(),
                0,
                0,
                0
            ),
            (
                customer_of("ann@example.com").as_uuid(),
                "USD".into(),
                3_000,
                1_000,
                2_000
            ),
            (
                customer_of("bob@example.com").as_uuid(),
                "USD".into(),
                4_999,
                0,
                4_999
            ),
        ]
    );

    let licenses: Vec<(Uuid, Uuid, String, i32, String, String)> = sqlx::query_as(
        "select license_id, customer_id, sku, seats, license_key, status
         from sales.customer_licenses",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        licenses,
        vec![(
            bob_order.license_id("AV-1Y").as_uuid(),
            customer_of("bob@example.com").as_uuid(),
            "AV-1Y".into(),
            3,
            format!("KEY-AV-1Y-{}", &bob_order.order_id.to_string()[..8]),
            "attached".into()
        )]
    );

    // The hash is in the log but in no read-model row.
    let leaked: i64 = sqlx::query_scalar(
        "select (select count(*) from sales.customers c where c::text like '%argon2%')
              + (select count(*) from sales.customer_orders c where c::text like '%argon2%')
              + (select count(*) from sales.customer_licenses c where c::text like '%argon2%')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0);
    let in_log: i64 =
        sqlx::query_scalar("select count(*) from es.events where data::text like '%argon2%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(in_log, 2, "the test really had hashes to leak");
}

/// The funnel the analytics tests and the rebuild test use: two paid orders (one refunded in
/// part), one failed payment, one order without stock, carts checked out and abandoned, and a
/// stock adjustment.
async fn shop_history(s: &Scenario) {
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
    let carts: Vec<CartId> = (0..4).map(|_| CartId::new()).collect();
    for (i, c) in carts.iter().enumerate() {
        s.cart(
            *c,
            Some("ann@example.com"),
            &[physical("MUG-1", "Mug", 1, 1_500)],
            i as i64,
        )
        .await;
    }
    let mut first = OrderSpec::new(
        "ann@example.com",
        vec![
            physical("LAP-13", "Laptop 13", 1, 100_000),
            physical("MUG-1", "Mug", 2, 1_500),
        ],
        10,
        Outcome::Delivered,
    );
    first.cart_id = Some(carts[0]);
    s.cart_event(CartEvent::CartCheckedOut {
        cart_id: carts[0],
        order_id: first.order_id,
        total: usd(103_000),
        item_count: 3,
        at: t(10),
    })
    .await;
    s.order(&first).await;
    let second = OrderSpec::new(
        "bob@example.com",
        vec![
            physical("MUG-1", "Mug", 4, 1_500),
            digital("AV-1Y", "Antivirus", 4_999),
        ],
        70,
        Outcome::Refunded(1_500),
    );
    s.order(&second).await;
    let declined = OrderSpec::new(
        "cy@example.com",
        vec![physical("MUG-1", "Mug", 1, 1_500)],
        130,
        Outcome::PaymentFailed(PaymentFailureReason::Declined),
    );
    s.order(&declined).await;
    let unavailable = OrderSpec::new(
        "cy@example.com",
        vec![physical("LAP-13", "Laptop 13", 20, 100_000)],
        140,
        Outcome::InventoryUnavailable,
    );
    s.order(&unavailable).await;
    let paid = OrderSpec::new(
        "dan@example.com",
        vec![digital("AV-1Y", "Antivirus", 4_999)],
        150,
        Outcome::PaidAfterRetry,
    );
    s.order(&paid).await;
    s.cart_event(CartEvent::CartAbandoned {
        cart_id: carts[1],
        last_activity_at: t(2),
        at: t(2 + 7 * 24 * 60),
    })
    .await;
    s.append(
        sku("MUG-1").inventory_stream(),
        [purser_domain::inventory::InventoryEvent::StockAdjusted {
            sku: sku("MUG-1"),
            delta: -2,
            reason: purser_domain::inventory::AdjustmentReason::Damaged,
            note: "dropped".into(),
            at: t(200),
        }
        .into()],
    )
    .await;
    s.register("ann@example.com", "Ann", -100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_facts_and_views_answer_the_analysts_questions() {
    let (_db, pool, s) = setup().await;
    shop_history(&s).await;
    project(&pool, &s).await;

    let revenue: Vec<(chrono::NaiveDate, String, i64, i64, i64, i32, i32)> = sqlx::query_as(
        "select day, currency, captured_minor, refunded_minor, net_minor, captures, refunds
         from analytics.revenue_by_day order by day",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let day = t(0).date_naive();
    // Captured: 103 000 + (6 000 + 4 999) + 4 999; refunded 1 500.
    assert_eq!(
        revenue,
        vec![(day, "USD".into(), 118_998, 1_500, 117_498, 3, 1)]
    );
    let by_hour: Vec<(chrono::DateTime<chrono::Utc>, i64)> =
        sqlx::query_as("select hour, net_minor from analytics.revenue_by_hour order by hour")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        by_hour,
        vec![(t(0), 103_000), (t(60), 10_999 - 1_500), (t(120), 4_999)]
    );

    let statuses: Vec<(String, i32)> =
        sqlx::query_as("select status, orders from analytics.orders_by_status order by status")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        vec![
            ("CANCELLED".into(), 2),
            ("DELIVERED".into(), 1),
            ("FULFILLED".into(), 1),
            ("REFUNDED".into(), 1),
        ]
    );

    // The refunded order does not count as sold; the delivered and fulfilled ones do.
    let top: Vec<(String, String, i64, i64, i32)> = sqlx::query_as(
        "select sku, name, units_sold, revenue_minor, orders from analytics.top_products
         order by units_sold desc, sku",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        top,
        vec![
            ("MUG-1".into(), "Mug".into(), 2, 3_000, 1),
            ("AV-1Y".into(), "Antivirus".into(), 1, 4_999, 1),
            ("LAP-13".into(), "Laptop 13".into(), 1, 100_000, 1),
        ]
    );

    let aov: (String, i32, i64, i64) = sqlx::query_as(
        "select currency, orders, revenue_minor, average_order_value_minor
         from analytics.average_order_value",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(aov, ("USD".into(), 3, 118_998, 39_666));

    let conversion: (i32, i32, i32, i32, f64, f64) = sqlx::query_as(
        "select carts_created, carts_checked_out, orders_placed, orders_paid,
                conversion_rate::float8, paid_conversion_rate::float8
         from analytics.conversion_rate",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(conversion, (4, 1, 5, 3, 1.25, 0.75));

    let abandonment: (i32, i32, i32, i32, f64) = sqlx::query_as(
        "select carts_created, carts_checked_out, carts_abandoned, carts_open,
                abandonment_rate::float8
         from analytics.cart_abandonment_rate",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(abandonment, (4, 1, 1, 2, 0.5));

    let failures: Vec<(String, i32, f64)> = sqlx::query_as(
        "select reason, failures, share::float8 from analytics.payment_failure_reasons",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(failures, vec![("declined".into(), 1, 1.0)]);
    let failed_amount: (Option<i64>, Option<String>) = sqlx::query_as(
        "select amount_minor, currency from analytics.fact_payments where kind = 'failed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(failed_amount, (Some(1_500), Some("USD".into())));
    let attempts: i64 = sqlx::query_scalar(
        "select count(*) from analytics.fact_payments where kind = 'attempt_failed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(attempts, 1);

    // Cart removals carry the quantity the line held.
    let adds: i64 = sqlx::query_scalar(
        "select coalesce(sum(qty_delta), 0) from analytics.fact_cart_events where kind = 'item_added'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(adds, 4);

    // Inventory movements: MUG-1 received 50, sold 2 + 4 (confirmed), 1 released after the
    // declined payment, 2 damaged.
    let mug: (i64, i64) = sqlx::query_as(
        "select sum(on_hand_delta)::bigint, sum(reserved_delta)::bigint
         from analytics.fact_inventory_movements where sku = 'MUG-1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(mug, (50 - 2 - 4 - 2, 0));
    let reasons: Vec<(String, Option<String>)> = sqlx::query_as(
        "select kind, reason from analytics.fact_inventory_movements
         where sku = 'MUG-1' and kind in ('adjusted', 'released') order by kind",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        reasons,
        vec![
            ("adjusted".into(), Some("damaged".into())),
            ("released".into(), Some("payment_failed".into()))
        ]
    );

    // Turnover over the first 300 minutes: the laptop sold 1 of 10 on hand from t(-60), then
    // 9 from t(12): (10*72 + 9*288)/360 = 9.2 on average, so 1/9.2.
    let turnover: Vec<(String, i64, i64, i64, f64, Option<f64>)> = sqlx::query_as(
        "select sku, units_sold, opening_on_hand, closing_on_hand, average_on_hand::float8,
                turnover::float8
         from analytics.inventory_turnover_between($1, $2)",
    )
    .bind(t(-60))
    .bind(t(300))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(turnover[0].0, "LAP-13");
    assert_eq!(turnover[0].1, 1);
    assert_eq!((turnover[0].2, turnover[0].3), (0, 9));
    assert!((turnover[0].4 - 9.2).abs() < 1e-3, "{turnover:?}");
    assert!(
        (turnover[0].5.unwrap() - 1.0 / 9.2).abs() < 1e-3,
        "{turnover:?}"
    );
    assert_eq!(turnover[1].0, "MUG-1");
    assert_eq!(turnover[1].1, 6);
    // The whole-history view agrees on what was sold.
    let sold: i64 = sqlx::query_scalar(
        "select units_sold from analytics.inventory_turnover where sku = 'LAP-13'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(sold, 1);
}

/// Every table of every projection, with its checksum.
async fn checksums(pool: &PgPool) -> Vec<(String, (i64, String))> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_model_rebuilt_from_zero_equals_the_live_one() {
    let (_db, pool, s) = setup().await;
    let projector = Projector::new(
        s.store.clone(),
        pool.clone(),
        purser_projections::all(),
        Checkpoints::new(pool.clone()),
    )
    .with_options(ProjectorOptions {
        // One event per batch: the live model is written event by event.
        batch_max: 1,
        claim_retry: Duration::from_millis(100),
        status_interval: Duration::from_millis(200),
    });
    let stop = CancellationToken::new();
    let live = tokio::spawn({
        let (p, stop) = (projector.clone(), stop.clone());
        async move { p.run(stop).await }
    });
    // The history is appended while the projections run live, one event per batch.
    shop_history(&s).await;
    let head = s.last();
    let names = projector.names();
    assert!(
        Checkpoints::new(pool.clone())
            .wait_for(&names, head, Duration::from_secs(60))
            .await
            .unwrap(),
        "the live projections caught up"
    );
    stop.cancel();
    live.await.unwrap();
    let before = checksums(&pool).await;
    assert!(
        before.iter().all(|(_, (rows, _))| *rows > 0),
        "every table has rows to compare: {before:?}"
    );

    // Rebuilt in batches as big as the runtime's default (the whole history in one or two),
    // where the live run applied one event at a time: projections that write a batch's rows
    // together must write the same rows as one by one.
    let rebuilder = Projector::new(
        s.store.clone(),
        pool.clone(),
        purser_projections::all(),
        Checkpoints::new(pool.clone()),
    );
    for name in &names {
        let outcome = rebuilder.rebuild(name).await.unwrap();
        assert!(
            matches!(outcome, purser_projections::RebuildOutcome::Rebuilt { .. }),
            "{name}: {outcome:?}"
        );
    }
    // A rebuild stops at the log's visible head, which other transactions of the cluster can
    // hold back; make sure every model has reached the same position again before comparing.
    catch_up_all(&s).await;
    let after = checksums(&pool).await;
    assert_eq!(before, after);
}
