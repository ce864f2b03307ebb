//! The event store contract, written once and run against every adapter.
//!
//! Each test gets a store and a category of its own, so tests can share one server (KurrentDB)
//! as well as run on a fresh database each (Postgres). Subscriptions start at the log's head
//! when the test begins and filter on the test's category. Where the adapters differ on
//! purpose, [`Traits`] says how, and the test checks each side of the difference.

pub(crate) mod appends;
pub(crate) mod multi;
pub(crate) mod reads;
pub(crate) mod subscriptions;

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use purser_event_store::{
    EventStore, Metadata, NewEvent, Position, RecordedEvent, StreamName, SubscriptionItem,
    SubscriptionStream,
};
use serde_json::json;
use uuid::Uuid;

/// How long a test waits for something it expects before failing.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

pub(crate) fn category() -> String {
    format!("t{}", &Uuid::new_v4().simple().to_string()[..12])
}

pub(crate) fn stream(cat: &str, id: impl std::fmt::Display) -> StreamName {
    StreamName::of(cat, id).unwrap()
}

pub(crate) fn event(n: u64) -> NewEvent {
    NewEvent {
        id: Uuid::now_v7(),
        event_type: "ThingHappened".into(),
        schema_version: 1,
        data: json!({ "n": n, "note": "ünïcødé ✓" }),
        metadata: Metadata {
            correlation_id: Some(Uuid::now_v7()),
            causation_id: Some(Uuid::now_v7()),
            actor: Some("system:test".into()),
            idempotency_key: Some(format!("key-{n}")),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        },
    }
}

pub(crate) async fn start_position(store: &dyn EventStore) -> Position {
    store
        .head()
        .await
        .unwrap()
        .map(|h| h.position)
        .unwrap_or(Position::START)
}

/// Collects events from a subscription until `done` says stop, failing after PATIENCE.
pub(crate) async fn collect_until(
    sub: &mut SubscriptionStream,
    mut done: impl FnMut(&[RecordedEvent]) -> bool,
) -> Vec<RecordedEvent> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done(&got) {
        let item = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| panic!("subscription stalled after {} events", got.len()))
            .expect("subscription ended")
            .expect("subscription failed");
        if let SubscriptionItem::Event(e) = item {
            got.push(*e);
        }
    }
    got
}

pub(crate) fn assert_strictly_increasing(events: &[RecordedEvent]) {
    for w in events.windows(2) {
        assert!(
            w[0].position < w[1].position,
            "log order broken: {} then {}",
            w[0].position,
            w[1].position
        );
    }
    let ids: HashSet<Uuid> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), events.len(), "an event was delivered twice");
}

/// How an adapter differs from the others, on purpose.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Traits {
    /// Whether an append whose event id is already used in another stream is refused. Postgres
    /// has a unique index on event ids; KurrentDB has no index by event id, so the adapter
    /// cannot see ids outside the stream it appends to.
    pub(crate) refuses_ids_of_other_streams: bool,
    /// Whether `append_many` is atomic across streams. The KurrentDB client this build uses
    /// has no multi-stream append, so that adapter answers `Unsupported`.
    pub(crate) atomic_multi_stream: bool,
}

/// Generates one `#[tokio::test]` per contract test for an adapter. `$make` is an async fn
/// returning `Option<(Arc<dyn EventStore>, Guard)>`; None skips the suite (no server).
/// `$restart` is an async fn taking `&Guard` that drops every connection the store has (a
/// server restart, or its effect), returning false when it cannot (the test is then skipped).
#[macro_export]
macro_rules! contract_suite {
    ($make:path, $restart:path, $traits:expr) => {
        $crate::contract_tests!(
            $make,
            appends,
            [
                append_and_read_back,
                expected_versions_are_enforced,
                idempotent_retry_appends_nothing,
                a_retry_with_the_current_version_is_a_duplicate,
                ids_partly_stored_are_a_mismatch,
            ]
        );
        $crate::contract_tests!(
            $make,
            appends,
            arc,
            [
                concurrent_appenders_one_winner_per_version,
                concurrent_any_appends_all_land,
            ]
        );
        $crate::contract_tests!(
            $make,
            reads,
            [
                head_last_committed_and_backlog,
                event_type_filters_select_by_type,
                schema_versions_round_trip,
                recording_times_keep_sub_second_precision,
            ]
        );
        $crate::contract_tests!(
            $make,
            subscriptions,
            arc,
            [
                subscription_catches_up_then_goes_live,
                filtered_subscription_can_checkpoint_past_other_events,
                a_quiet_log_reaches_a_checkpoint_at_the_head,
                resubscribing_from_checkpoints_never_skips_or_repeats,
            ]
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_id_used_in_another_stream() {
            let Some((store, _guard)) = $make().await else {
                return;
            };
            contract::appends::an_id_used_in_another_stream(&*store, $traits).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn multi_stream_appends_are_all_or_nothing() {
            let Some((store, _guard)) = $make().await else {
                return;
            };
            contract::multi::multi_stream_appends_are_all_or_nothing(&*store, $traits).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_retried_multi_stream_append_is_a_duplicate() {
            let Some((store, _guard)) = $make().await else {
                return;
            };
            contract::multi::a_retried_multi_stream_append_is_a_duplicate(&*store, $traits).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn crossing_multi_stream_appends_all_land() {
            let Some((store, _guard)) = $make().await else {
                return;
            };
            contract::multi::crossing_multi_stream_appends_all_land(store, $traits).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn reconnects_after_the_server_drops_it() {
            let Some((store, guard)) = $make().await else {
                return;
            };
            contract::subscriptions::reconnects_after_the_server_drops_it(store, || {
                $restart(&guard)
            })
            .await;
        }
    };
}

/// One `#[tokio::test]` per name, calling `contract::<module>::<name>` with the store (`&dyn`,
/// or the `Arc` after `arc`).
#[macro_export]
macro_rules! contract_tests {
    ($make:path, $module:ident, [$($name:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                contract::$module::$name(&*store).await;
            }
        )*
    };
    ($make:path, $module:ident, arc, [$($name:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                contract::$module::$name(store).await;
            }
        )*
    };
}
