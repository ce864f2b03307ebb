//! Subscriptions to `$all`, with checkpoints that reach the head of a quiet log.
//!
//! A filtered `$all` subscription on KurrentDB sends a checkpoint only every 32 events the
//! server considered (matching or not: `SubscriptionsService.ProcessEventCommitted`, with the
//! window `Enumerator.DefaultReadBatchSize`), plus one when catch-up ends, at the last position
//! catch-up read, not at the head (`Enumerator.AllSubscriptionFiltered`, KurrentDB v26.1.0).
//! On a quiet log the newest events may not match a consumer's filter, and its checkpoint
//! would then stay short of the head until 32 more events arrive: `minPosition` waits time out
//! and a catch-up to the head (rebuilds, `purser replay`) never ends.
//!
//! So when the subscription has delivered nothing for a second (or the server says it has
//! caught up), the adapter reads the head and the first matching event after what it last
//! delivered; if nothing matching lies up to the head, it sends a checkpoint at the head.
//! Every event at or before the head was committed and indexed before the head was read, so
//! the read after it would have found any such event ([`synthetic_checkpoint`]).

use std::time::Duration;

use kurrentdb::{RetryOptions, StreamPosition, SubscribeToAllOptions, SubscriptionEvent};
use tokio::sync::mpsc;

use super::KurrentEventStore;
use super::codec::{decode, from_kurrent, server_filter, to_kurrent};
use super::errors::map_error;
use super::reads::LastRecord;
use crate::{EventFilter, Position, StoreError, SubscriptionItem};

/// How long a subscription waits without anything from the server before it checks whether
/// it can checkpoint at the head.
const IDLE: Duration = Duration::from_secs(1);

type Sender = mpsc::Sender<Result<SubscriptionItem, StoreError>>;

/// The checkpoint a subscription may send after delivering everything up to `last`, given
/// the log's `head` and the first event matching its filter after `last` (if any): the head,
/// when it lies beyond `last` and no matching event lies at or before it.
pub(super) fn synthetic_checkpoint(
    last: Position,
    head: Option<Position>,
    next_match: Option<Position>,
) -> Option<Position> {
    let head = head.filter(|h| *h > last)?;
    match next_match {
        Some(p) if p <= head => None,
        _ => Some(head),
    }
}

/// Whether a subscription's start lies beyond the end of the log, as it does when the
/// checkpoints (kept in Postgres) outlived the KurrentDB log they were taken on. The server
/// would then skip every new event up to that position without a word. A checkpoint the
/// server sent during catch-up is the end position of the last record it read (a log offset
/// with a prepare position of 0: `AllReader` sets `NextPos` so), so it may lie a little past
/// the last record's start, but never past its end.
pub(super) fn past_the_end(after: Position, last: Option<LastRecord>) -> bool {
    if after == Position::START {
        return false;
    }
    match last {
        None => true,
        Some(r) => after.commit > r.position.commit.saturating_add(r.size_bound),
    }
}

impl KurrentEventStore {
    /// Feeds one subscriber until it goes away: when the receiver is dropped, the gRPC
    /// subscription is dropped with this task, at once rather than at the next event.
    pub(super) async fn feed(self, after: Position, filter: EventFilter, tx: Sender) {
        tokio::select! {
            _ = tx.closed() => {}
            _ = self.deliver(after, &filter, &tx) => {}
        }
    }

    async fn deliver(&self, after: Position, filter: &EventFilter, tx: &Sender) {
        if let Err(e) = self.check_start(after).await {
            let _ = tx.send(Err(e)).await;
            return;
        }
        let start = if after == Position::START {
            StreamPosition::Start
        } else {
            StreamPosition::Position(to_kurrent(after))
        };
        let options = SubscribeToAllOptions::default()
            .position(start)
            .filter(server_filter(filter))
            .retry_options(RetryOptions::default().retry_forever());
        // The crate's `next_subscription_event` is not cancel-safe (a call dropped mid-way
        // loses the gRPC stream and subscribes again), so a task of its own pumps it and the
        // idle timer waits on the channel instead.
        let (events_tx, mut events) = mpsc::channel(256);
        let client = self.client.clone();
        let pump = tokio::spawn(async move {
            let mut sub = client.subscribe_to_all(&options).await;
            loop {
                let next = sub.next_subscription_event().await;
                let failed = next.is_err();
                if events_tx.send(next).await.is_err() || failed {
                    return;
                }
            }
        });
        let _pump = AbortOnDrop(pump);
        let mut last = after;
        loop {
            let idle = match tokio::time::timeout(IDLE, events.recv()).await {
                Err(_) => true,
                Ok(None) => return,
                Ok(Some(Ok(SubscriptionEvent::CaughtUp(_)))) => true,
                Ok(Some(Ok(event))) => {
                    match passes(event, &mut last, filter) {
                        Ok(Some(item)) => {
                            if tx.send(Ok(item)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                    false
                }
                Ok(Some(Err(e))) => {
                    let _ = tx.send(Err(map_error(e))).await;
                    return;
                }
            };
            if idle {
                match self.idle_checkpoint(last, filter).await {
                    Ok(Some(p)) => {
                        last = p;
                        if tx.send(Ok(SubscriptionItem::Checkpoint(p))).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    // The subscription itself reconnects; a failed check is tried next time.
                    Err(e) => tracing::debug!(error = %e, "cannot check for a checkpoint"),
                }
            }
        }
    }

    async fn idle_checkpoint(
        &self,
        last: Position,
        filter: &EventFilter,
    ) -> Result<Option<Position>, StoreError> {
        let head = self.newest().await?.map(|h| h.position);
        if head.is_none_or(|h| h <= last) {
            return Ok(None);
        }
        let next = self.read_all_events(last, 1, filter).await?;
        Ok(synthetic_checkpoint(
            last,
            head,
            next.first().map(|e| e.position),
        ))
    }

    async fn check_start(&self, after: Position) -> Result<(), StoreError> {
        if after == Position::START {
            return Ok(());
        }
        let last = self.last_record().await?;
        if past_the_end(after, last) {
            return Err(StoreError::Backend(format!(
                "asked to resume after {after}, beyond the end of the KurrentDB log ({}): the \
                 checkpoints were taken on another log (was KurrentDB wiped?); reset the \
                 projections (`purser projector --rebuild`) to start again from the beginning",
                last.map_or("empty".to_string(), |r| format!(
                    "last event at {}",
                    r.position
                ))
            )));
        }
        Ok(())
    }
}

/// What a server message becomes for the consumer, if anything. `last` is the position
/// delivered last (event or checkpoint); nothing at or before it is delivered again, which
/// also drops the repeats the crate's reconnects produce.
fn passes(
    event: SubscriptionEvent,
    last: &mut Position,
    filter: &EventFilter,
) -> Result<Option<SubscriptionItem>, StoreError> {
    match event {
        SubscriptionEvent::EventAppeared(resolved) => match decode(&resolved)? {
            Some(e) if e.position > *last && filter.matches(&e.stream, &e.event_type) => {
                *last = e.position;
                Ok(Some(SubscriptionItem::Event(Box::new(e))))
            }
            _ => Ok(None),
        },
        SubscriptionEvent::Checkpoint(p) => {
            let p = from_kurrent(p);
            if p <= *last {
                return Ok(None);
            }
            *last = p;
            Ok(Some(SubscriptionItem::Checkpoint(p)))
        }
        _ => Ok(None),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> Position {
        Position::new(n, n)
    }

    #[test]
    fn a_quiet_log_checkpoints_at_the_head_when_nothing_matching_is_pending() {
        // Delivered up to 100; the log's head is 250; nothing matching after 100.
        assert_eq!(
            synthetic_checkpoint(p(100), Some(p(250)), None),
            Some(p(250))
        );
        // A matching event after the head (written since the head was read) is no obstacle.
        assert_eq!(
            synthetic_checkpoint(p(100), Some(p(250)), Some(p(300))),
            Some(p(250))
        );
    }

    #[test]
    fn no_checkpoint_past_a_matching_event_not_yet_delivered() {
        assert_eq!(
            synthetic_checkpoint(p(100), Some(p(250)), Some(p(180))),
            None
        );
        assert_eq!(
            synthetic_checkpoint(p(100), Some(p(250)), Some(p(250))),
            None
        );
    }

    #[test]
    fn no_checkpoint_when_the_head_is_not_ahead() {
        assert_eq!(synthetic_checkpoint(p(250), Some(p(250)), None), None);
        assert_eq!(synthetic_checkpoint(p(300), Some(p(250)), None), None);
        assert_eq!(synthetic_checkpoint(Position::START, None, None), None);
        // A server checkpoint (commit offset, prepare 0) just before the head's record.
        assert_eq!(
            synthetic_checkpoint(Position::new(250, 0), Some(p(250)), None),
            Some(p(250))
        );
    }

    #[test]
    fn a_start_beyond_the_last_record_means_a_different_log() {
        let last = Some(LastRecord {
            position: p(10_000),
            size_bound: 5_000,
        });
        assert!(!past_the_end(Position::START, None));
        assert!(!past_the_end(p(10_000), last));
        // The server's catch-up checkpoints point at the end of the record they read.
        assert!(!past_the_end(Position::new(10_300, 0), last));
        assert!(!past_the_end(Position::new(15_000, 0), last));
        assert!(past_the_end(Position::new(15_001, 0), last));
        assert!(past_the_end(p(2_000_000), last));
        // Any position but the start is beyond an empty log.
        assert!(past_the_end(p(64), None));
    }

    #[test]
    fn nothing_is_delivered_twice_or_out_of_order() {
        let filter = EventFilter::all();
        let mut last = p(100);
        let chk = |n: u64| SubscriptionEvent::Checkpoint(to_kurrent(p(n)));
        assert_eq!(passes(chk(90), &mut last, &filter).unwrap(), None);
        assert_eq!(passes(chk(100), &mut last, &filter).unwrap(), None);
        assert_eq!(
            passes(chk(120), &mut last, &filter).unwrap(),
            Some(SubscriptionItem::Checkpoint(p(120)))
        );
        assert_eq!(last, p(120));
        assert_eq!(
            passes(SubscriptionEvent::Confirmed("x".into()), &mut last, &filter).unwrap(),
            None
        );
    }
}
