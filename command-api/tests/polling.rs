//! The workers that poll a table (deadlines here; the outbox and the notification queue use the
//! same shape of statement) learn in their claim when the next row falls due, and "no other
//! row" must come back as none, not as "due now": otherwise an idle worker would poll without
//! pause.

use std::sync::Arc;
use std::time::Duration;

use purser_command_api::CommandBus;
use purser_command_api::deadlines::DeadlineWorker;
use purser_event_store::PgEventStore;
use purser_testkit::TestDb;
use tokio::sync::watch;
use uuid::Uuid;

#[tokio::test]
async fn a_round_reports_when_the_next_deadline_falls_due_and_none_when_there_is_none() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let bus = CommandBus::new(Arc::new(PgEventStore::new(pool.clone())));
    let (_tx, wake) = watch::channel(0u64);
    let worker = DeadlineWorker::new(pool.clone(), bus, chrono::Duration::hours(1), wake);

    let (claimed, next_due) = worker.round().await.unwrap();
    assert_eq!(
        (claimed, next_due),
        (0, None),
        "nothing waiting: no due time"
    );

    sqlx::query(
        "insert into purser.deadlines (id, kind, target, due_at, payload)
         values ($1, 'cart_abandonment', 'cart-x', now() + interval '1 hour', '{}')",
    )
    .bind(Uuid::new_v4())
    .execute(&pool)
    .await
    .unwrap();
    let (claimed, next_due) = worker.round().await.unwrap();
    assert_eq!(claimed, 0, "not due yet");
    let next_due = next_due.expect("a deadline is waiting");
    assert!(
        next_due > Duration::from_secs(3590) && next_due <= Duration::from_secs(3600),
        "due in an hour, got {next_due:?}"
    );
}
