//! Change data capture: the `purser_read_models` publication covers the read models without
//! personal data, and a real logical replication slot following it sees a read-model row
//! change (needs `wal_level = logical`; skipped with a line saying so when the server has less).

mod support;

use std::time::Duration;

use support::shop::Shop;
use support::spawn_app;

#[tokio::test]
async fn the_publication_covers_the_read_models_and_leaves_personal_data_out() {
    let app = spawn_app().await;
    let pool = &app.services().pool;
    let tables: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "select schemaname::text, tablename::text, attnames::text[] from pg_publication_tables
         where pubname = 'purser_read_models' order by 1, 2",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let names: Vec<String> = tables.iter().map(|(s, t, _)| format!("{s}.{t}")).collect();
    for expected in [
        "analytics.fact_orders",
        "analytics.fact_payments",
        "catalog.products",
        "sales.orders",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} in {names:?}"
        );
    }
    assert!(!names.contains(&"sales.customers".to_owned()), "{names:?}");
    let (_, _, order_columns) = tables
        .iter()
        .find(|(s, t, _)| s == "sales" && t == "orders")
        .unwrap();
    for personal in [
        "email",
        "shipping_address",
        "payment_reference",
        "failure_message",
    ] {
        assert!(
            !order_columns.contains(&personal.to_owned()),
            "{personal} published"
        );
    }
    assert!(order_columns.contains(&"status".to_owned()));
}

#[tokio::test]
async fn a_logical_replication_slot_sees_a_read_model_change() {
    let app = spawn_app().await;
    let pool = app.services().pool.clone();
    let wal_level: String = sqlx::query_scalar("show wal_level")
        .fetch_one(&pool)
        .await
        .unwrap();
    if wal_level != "logical" {
        eprintln!(
            "SKIPPED a_logical_replication_slot_sees_a_read_model_change: the server's wal_level is \
             {wal_level}, logical decoding needs `ALTER SYSTEM SET wal_level = logical` and a restart \
             (scripts/lib/postgres.sh sets it on a server it starts)"
        );
        return;
    }
    let may_replicate: bool = sqlx::query_scalar(
        "select rolreplication or rolsuper from pg_roles where rolname = current_user",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    if !may_replicate {
        eprintln!(
            "SKIPPED a_logical_replication_slot_sees_a_read_model_change: the test role may not use \
             replication slots (`ALTER ROLE … REPLICATION`; scripts/lib/postgres.sh grants it to \
             the purser role it creates)"
        );
        return;
    }
    let slot = format!("purser_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query("select pg_create_logical_replication_slot($1, 'pgoutput')")
        .bind(&slot)
        .execute(&pool)
        .await
        .unwrap();
    let shop = Shop::new(&app).await;
    shop.product("CDC-1", 1234, 7).await;
    app.settle().await;
    // pgoutput's binary stream names each relation it sends rows of (schema, then table).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let found = loop {
        let changes: Vec<Vec<u8>> = sqlx::query_scalar(
            "select data from pg_logical_slot_get_binary_changes($1, null, null,
                 'proto_version', '1', 'publication_names', 'purser_read_models')",
        )
        .bind(&slot)
        .fetch_all(&pool)
        .await
        .unwrap();
        seen.extend(changes.into_iter().flatten());
        let has = |needle: &[u8]| seen.windows(needle.len()).any(|w| w == needle);
        if has(b"catalog\0products\0") && has(b"CDC-1") {
            break true;
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    sqlx::query("select pg_drop_replication_slot($1)")
        .bind(&slot)
        .execute(&pool)
        .await
        .unwrap();
    assert!(found, "no catalog.products change came through the slot");
}
