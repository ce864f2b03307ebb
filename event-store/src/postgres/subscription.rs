//! Feeding one subscriber: from the shared tail window while its position lies inside it,
//! from its own pages of the log otherwise (see the module docs of `postgres`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::PgEventStore;
use super::log_walk::Page;
use super::tail::TailWindow;
use crate::{EventFilter, Head, Position, RecordedEvent, StoreError, SubscriptionItem};

/// The subscription ends: its consumer has gone (or the store's wake-ups have).
struct Stop;

/// One step of a subscriber's loop; `Err(Stop)` ends it.
type Step = Result<(), Stop>;

/// The state of one subscription's feeding task.
struct Subscriber {
    store: PgEventStore,
    filter: EventFilter,
    tx: mpsc::Sender<Result<SubscriptionItem, StoreError>>,
    /// Everything up to here has been delivered (or left out by the filter).
    position: Position,
    ticks: watch::Receiver<u64>,
    /// The shared tail window; `None` once its reader has stopped for good.
    tail: Option<watch::Receiver<Arc<TailWindow>>>,
    error_backoff: Duration,
    held_backoff: Duration,
}

impl PgEventStore {
    /// Feeds one subscriber. Runs until the receiver is dropped. Database errors are retried
    /// with backoff: a subscriber sees a pause, never a gap.
    pub(super) async fn run_subscription(
        self,
        after: Position,
        filter: EventFilter,
        tx: mpsc::Sender<Result<SubscriptionItem, StoreError>>,
    ) {
        self.ensure_listener().await;
        let mut subscriber = Subscriber {
            ticks: self.wake.tick.subscribe(),
            tail: Some(self.tail_window()),
            store: self,
            filter,
            tx,
            position: after,
            error_backoff: Duration::from_millis(50),
            held_backoff: Duration::from_millis(2),
        };
        while subscriber.step().await.is_ok() {}
    }
}

impl Subscriber {
    async fn step(&mut self) -> Step {
        match self.covering_window() {
            Some(window) => self.serve_from_window(&window).await,
            None => self.read_own_page().await,
        }
    }

    /// The shared tail window, if the subscriber's position lies inside it.
    fn covering_window(&mut self) -> Option<Arc<TailWindow>> {
        let window = self.tail.as_mut()?.borrow_and_update().clone();
        window.covers(self.position).then_some(window)
    }

    /// Inside the shared tail window: take the events from there, not from a query; then wait
    /// for the window to move.
    async fn serve_from_window(&mut self, window: &TailWindow) -> Step {
        for event in window.after(self.position) {
            if self.filter.matches(&event.stream, &event.event_type) {
                self.position = event.position;
                self.send(SubscriptionItem::Event(Box::new((**event).clone())))
                    .await?;
            }
        }
        if window.end > self.position {
            self.position = window.end;
            self.send(SubscriptionItem::Checkpoint(self.position))
                .await?;
        }
        let Some(rx) = self.tail.as_mut() else {
            return Ok(());
        };
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { self.tail = None },
            _ = self.tx.closed() => return Err(Stop),
        }
        Ok(())
    }

    /// Outside the window: read the next page of the log with the subscriber's own query,
    /// deliver it, and wait when there is nothing more to read yet.
    async fn read_own_page(&mut self) -> Step {
        // Mark the current tick as seen before reading, so an append that lands while we
        // read wakes the wait below instead of being missed.
        self.ticks.borrow_and_update();
        let batch_size = self.store.opts.batch_size;
        let page = match self
            .store
            .fetch_page(self.position, batch_size, &self.filter)
            .await
        {
            Ok(page) => page,
            Err(e) => return self.back_off_after_error(e).await,
        };
        self.error_backoff = Duration::from_millis(50);
        let full = page.events.len() >= batch_size;
        if !page.events.is_empty() {
            // Progress: a held-back horizon is moving, so look again soon.
            self.held_backoff = Duration::from_millis(2);
        }
        let Page {
            events,
            tail,
            held_back,
        } = page;
        self.deliver_page(events).await?;
        if full {
            return Ok(());
        }
        self.checkpoint_past_filtered(tail).await?;
        if held_back {
            return self.wait_for_held_back_horizon().await;
        }
        self.held_backoff = Duration::from_millis(2);
        self.wait_when_caught_up().await
    }

    async fn back_off_after_error(&mut self, e: StoreError) -> Step {
        tracing::warn!(error = %e, "subscription read failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(self.error_backoff) => {}
            _ = self.tx.closed() => return Err(Stop),
        }
        self.error_backoff = (self.error_backoff * 2).min(Duration::from_secs(5));
        Ok(())
    }

    /// The page goes into the channel at once (one wait for room, not one per event), so a
    /// consumer that wakes on its first event finds the rest of the page there.
    async fn deliver_page(&mut self, events: Vec<RecordedEvent>) -> Step {
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(());
        };
        let Ok(permits) = self.tx.reserve_many(events.len()).await else {
            return Err(Stop);
        };
        for (permit, event) in permits.zip(events) {
            permit.send(Ok(SubscriptionItem::Event(Box::new(event))));
        }
        self.position = last;
        Ok(())
    }

    /// Everything visible has been delivered; let the consumer checkpoint past the events the
    /// filter left out.
    async fn checkpoint_past_filtered(&mut self, tail: Option<Head>) -> Step {
        if let Some(tail) = tail
            && tail.position > self.position
        {
            self.position = tail.position;
            self.send(SubscriptionItem::Checkpoint(self.position))
                .await?;
        }
        Ok(())
    }

    /// A slower, older transaction holds the horizon back; it will commit or abort soon, and
    /// its commit may not be announced, so look again shortly.
    async fn wait_for_held_back_horizon(&mut self) -> Step {
        tokio::select! {
            _ = tokio::time::sleep(self.held_backoff) => {}
            _ = self.tx.closed() => return Err(Stop),
        }
        self.held_backoff = (self.held_backoff * 2).min(Duration::from_millis(100));
        Ok(())
    }

    /// Caught up. Inside the window, or behind a window that moved on while this page was
    /// read: go round again. Ahead of it (or before the reader has found the head): wait for
    /// the tail reader, which reads on the same wake-ups, to bring it here. Without a tail
    /// reader, wait for a wake-up or the idle poll.
    async fn wait_when_caught_up(&mut self) -> Step {
        let idle_poll = self.store.opts.idle_poll;
        if let Some(rx) = self.tail.as_mut() {
            let window = rx.borrow_and_update().clone();
            let known = window.start <= window.end;
            if known && self.position <= window.end {
                return Ok(());
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { self.tail = None },
                _ = tokio::time::sleep(idle_poll) => {}
                _ = self.tx.closed() => return Err(Stop),
            }
            return Ok(());
        }
        tokio::select! {
            changed = self.ticks.changed() => if changed.is_err() { return Err(Stop) },
            _ = tokio::time::sleep(idle_poll) => {}
            _ = self.tx.closed() => return Err(Stop),
        }
        Ok(())
    }

    async fn send(&self, item: SubscriptionItem) -> Step {
        self.tx.send(Ok(item)).await.map_err(|_| Stop)
    }
}
