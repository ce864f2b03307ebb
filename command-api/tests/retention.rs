//! The retention worker deletes finished operational rows older than their retention, in
//! batches, and leaves younger ones. Real Postgres.

use std::time::Duration;

use purser_command_api::retention::{self, OUTBOX_REJECTIONS, TRACE_EVENTS};
use purser_testkit::TestDb;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

async fn rejections(pool: &PgPool, n: i32, age: &str) {
    sqlx::query(
        "insert into purser.outbox_rejections (id, process, key, command, code, message, rejected_at)
         select gen_random_uuid(), 'checkout', 'k' || i, '{}', 'RESERVATION_NOT_FOUND', 'gone',
                now() - $2::interval
         from generate_series(1, $1) i",
    )
    .bind(n)
    .bind(age)
    .execute(pool)
    .await
    .unwrap();
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn old_rejections_are_pruned_in_batches_and_recent_ones_kept() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    // More than one batch of old rows, and a few recent ones.
    rejections(&pool, 10_050, "31 days").await;
    rejections(&pool, 7, "29 days").await;
    let pruned = retention::prune_once(&pool, OUTBOX_REJECTIONS, 30 * DAY)
        .await
        .unwrap();
    assert_eq!(pruned, 10_050);
    assert_eq!(count(&pool, "purser.outbox_rejections").await, 7);
    // Nothing older left: a second round deletes nothing.
    let again = retention::prune_once(&pool, OUTBOX_REJECTIONS, 30 * DAY)
        .await
        .unwrap();
    assert_eq!(again, 0);
}

#[tokio::test]
async fn the_worker_prunes_every_table_it_is_given_until_stopped() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    rejections(&pool, 3, "3 days").await;
    rejections(&pool, 2, "1 hour").await;
    sqlx::query(
        "insert into purser.trace_events (at, kind, status) values
             (now() - interval '10 days', 'login', 'success'),
             (now(), 'login', 'failed')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let rules = vec![(TRACE_EVENTS, 7 * DAY), (OUTBOX_REJECTIONS, 2 * DAY)];
    let worker = tokio::spawn(retention::run(
        pool.clone(),
        rules,
        Duration::from_secs(3_600),
        stop.clone(),
    ));
    // The first round runs at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count(&pool, "purser.outbox_rejections").await > 2
        || count(&pool, "purser.trace_events").await > 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not prune"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker stops when told")
        .unwrap();
    assert_eq!(count(&pool, "purser.outbox_rejections").await, 2);
    assert_eq!(count(&pool, "purser.trace_events").await, 1);
}
