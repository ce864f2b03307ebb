//! One reader for the live tail: a task per store keeps the newest stretch of the log in a
//! shared window that subscribers near the head are served from (see the module docs of
//! `postgres`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::PgEventStore;
use super::log_walk::Page;
use crate::{EventFilter, EventStore, Position, RecordedEvent, StoreError};

/// How many of the newest events the shared tail window keeps (see the module docs).
const TAIL_WINDOW: usize = 4_000;

/// The newest stretch of the log, as one reader task last read it: every visible event after
/// `start` up to and including `end`, in log order, with nothing left out.
#[derive(Clone)]
pub(super) struct TailWindow {
    pub(super) start: Position,
    pub(super) end: Position,
    events: Vec<Arc<RecordedEvent>>,
}

impl TailWindow {
    /// An empty window at `position`: it covers that position and nothing after it yet.
    fn at(position: Position) -> TailWindow {
        TailWindow {
            start: position,
            end: position,
            events: Vec::new(),
        }
    }

    pub(super) fn covers(&self, position: Position) -> bool {
        self.start <= position && position <= self.end
    }

    /// The events after `position`, which the window covers.
    pub(super) fn after(&self, position: Position) -> &[Arc<RecordedEvent>] {
        let from = self.events.partition_point(|e| e.position <= position);
        &self.events[from..]
    }

    /// Adds a page that follows `end`, dropping the oldest events beyond [`TAIL_WINDOW`]; the
    /// window stays contiguous because `start` moves up to the last event dropped.
    fn extend(&mut self, page: Vec<RecordedEvent>) {
        let Some(last) = page.last() else {
            return;
        };
        self.end = last.position;
        self.events.extend(page.into_iter().map(Arc::new));
        if self.events.len() > TAIL_WINDOW {
            let cut = self.events.len() - TAIL_WINDOW;
            self.start = self.events[cut - 1].position;
            self.events.drain(..cut);
        }
    }
}

impl PgEventStore {
    /// The shared tail window, starting its reader task when none is running.
    pub(super) fn tail_window(&self) -> watch::Receiver<Arc<TailWindow>> {
        let mut slot = self.wake.tail.lock().expect("tail lock");
        if let Some(rx) = slot.as_ref()
            && rx.has_changed().is_ok()
        {
            return rx.clone();
        }
        // Covers no position until the reader has found where the log ends.
        let unknown = TailWindow {
            start: Position {
                commit: u64::MAX,
                prepare: u64::MAX,
            },
            end: Position::START,
            events: Vec::new(),
        };
        let (window, rx) = watch::channel(Arc::new(unknown));
        *slot = Some(rx.clone());
        let store = self.clone();
        tokio::spawn(async move { store.run_tail_reader(window).await });
        rx
    }

    /// Keeps the shared tail window: reads every event after it (one query for the whole
    /// process) whenever new events may be visible. Stops when no subscriber holds the window.
    async fn run_tail_reader(self, window: watch::Sender<Arc<TailWindow>>) {
        let mut ticks = self.wake.tick.subscribe();
        let mut error_backoff = Duration::from_millis(50);
        let mut held_backoff = Duration::from_millis(2);
        let mut started = false;
        let mut kept = TailWindow::at(Position::START);
        loop {
            if self.release_unused_tail(&window) {
                return;
            }
            ticks.borrow_and_update();
            let page = match self.read_tail_page(&window, &mut kept, &mut started).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "log tail read failed; retrying");
                    tokio::time::sleep(error_backoff).await;
                    error_backoff = (error_backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            error_backoff = Duration::from_millis(50);
            let full = page.events.len() >= self.opts.batch_size;
            if !page.events.is_empty() {
                held_backoff = Duration::from_millis(2);
                kept.extend(page.events);
                window.send_replace(Arc::new(kept.clone()));
            }
            if full {
                continue;
            }
            if page.held_back {
                tokio::time::sleep(held_backoff).await;
                held_backoff = (held_backoff * 2).min(Duration::from_millis(100));
                continue;
            }
            held_backoff = Duration::from_millis(2);
            tokio::select! {
                changed = ticks.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(self.opts.idle_poll) => {}
            }
        }
    }

    /// True (and the window is given up) when no subscriber holds it any more, or the pool is
    /// closed.
    fn release_unused_tail(&self, window: &watch::Sender<Arc<TailWindow>>) -> bool {
        // The store's own receiver is the one left when every subscriber has gone; checked
        // under the lock that hands out receivers, so none is handed out from a reader that
        // is stopping.
        let mut slot = self.wake.tail.lock().expect("tail lock");
        if window.receiver_count() <= 1 || self.pool.is_closed() {
            *slot = None;
            return true;
        }
        false
    }

    /// The page after the window; the first time round, places the window at the head first.
    async fn read_tail_page(
        &self,
        window: &watch::Sender<Arc<TailWindow>>,
        kept: &mut TailWindow,
        started: &mut bool,
    ) -> Result<Page, StoreError> {
        if !*started {
            // The window starts at the newest visible event; subscribers behind it read their
            // own pages until they reach it.
            let head = self.head().await?.map_or(Position::START, |h| h.position);
            *kept = TailWindow::at(head);
            *started = true;
            window.send_replace(Arc::new(kept.clone()));
        }
        self.fetch_page(kept.end, self.opts.batch_size, &EventFilter::all())
            .await
    }
}
