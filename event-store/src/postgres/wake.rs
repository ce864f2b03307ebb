//! Waking readers: in-process wake-ups after an append, one outgoing `NOTIFY` at a time for
//! other processes, and a listener that turns their notifications into wake-ups (see the
//! module docs of `postgres`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{Notify, OnceCell, watch};

use super::tail::TailWindow;
use super::{EVENTS_CHANNEL, PgEventStore};

/// The shortest gap between two NOTIFYs from one process: caps the extra transactions at
/// 200/s however fast appends come, for at most 5 ms more cross-process latency.
const NOTIFY_MIN_INTERVAL: Duration = Duration::from_millis(5);

/// In-process wake-ups and the cross-process NOTIFY machinery.
pub(super) struct Wake {
    /// Bumped whenever new events may be visible.
    pub(super) tick: watch::Sender<u64>,
    /// Set when an outgoing NOTIFY is wanted; cleared by the sender task.
    notify_wanted: AtomicBool,
    notify_kick: Notify,
    sender_started: OnceCell<()>,
    listener_started: OnceCell<()>,
    /// The shared tail window, while a reader task keeps it (see [`TailWindow`]).
    pub(super) tail: Mutex<Option<watch::Receiver<Arc<TailWindow>>>>,
}

impl Wake {
    pub(super) fn new() -> Wake {
        let (tick, _) = watch::channel(0);
        Wake {
            tick,
            notify_wanted: AtomicBool::new(false),
            notify_kick: Notify::new(),
            sender_started: OnceCell::new(),
            listener_started: OnceCell::new(),
            tail: Mutex::new(None),
        }
    }

    fn bump(&self) {
        self.tick.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl PgEventStore {
    /// Called after a successful commit: wake local readers now, and other processes soon.
    pub(super) async fn announce(&self) {
        self.wake.bump();
        self.wake.notify_wanted.store(true, Ordering::Release);
        self.wake
            .sender_started
            .get_or_init(|| async {
                let store = self.clone();
                tokio::spawn(async move { store.run_notify_sender().await });
            })
            .await;
        self.wake.notify_kick.notify_one();
    }

    /// Sends at most one NOTIFY at a time; appends that happen meanwhile share the next one.
    async fn run_notify_sender(self) {
        loop {
            self.wake.notify_kick.notified().await;
            while self.wake.notify_wanted.swap(false, Ordering::AcqRel) {
                let sent = sqlx::query("select pg_notify($1, '')")
                    .bind(EVENTS_CHANNEL)
                    .execute(&self.pool)
                    .await;
                if let Err(e) = sent {
                    // Other processes fall back to their idle poll; nothing is lost.
                    tracing::debug!(error = %e, "could not send event notification");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                } else {
                    // Under load a NOTIFY right after the last one would be a transaction of
                    // its own competing with the appends for every few events; one every few
                    // milliseconds wakes other processes just as well (in-process subscribers
                    // were woken directly already).
                    tokio::time::sleep(NOTIFY_MIN_INTERVAL).await;
                }
            }
        }
    }

    /// Starts (once) the task that turns notifications from other processes into wake-ups.
    pub(super) async fn ensure_listener(&self) {
        self.wake
            .listener_started
            .get_or_init(|| async {
                let store = self.clone();
                tokio::spawn(async move { store.run_listener().await });
            })
            .await;
    }

    async fn run_listener(self) {
        loop {
            // The store's pool was closed (the process or a benchmark is done with it).
            if self.pool.is_closed() {
                return;
            }
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "event listener cannot connect; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(EVENTS_CHANNEL).await {
                tracing::warn!(error = %e, "event listener cannot LISTEN; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Anything may have been appended while we were not listening.
            self.wake.bump();
            loop {
                match listener.recv().await {
                    Ok(_) => self.wake.bump(),
                    Err(_) if self.pool.is_closed() => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener lost its connection");
                        self.wake.bump();
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
        }
    }
}
