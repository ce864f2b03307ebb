//! The clients of one measurement: each owns its streams and appends to them in turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use purser_event_store::StreamName;
use uuid::Uuid;

use super::STREAMS_PER_CLIENT;
use super::sides::append_once;
use super::workload::Workload;
use crate::Sizes;

/// One round of one side: (events appended in the measured window, window seconds).
pub(super) async fn measure(target: &Arc<Workload>, sizes: &Sizes) -> anyhow::Result<(u64, f64)> {
    let clients = sizes.append_clients;
    let warmup = Duration::from_secs_f64((sizes.append_secs * 0.2).min(0.5));
    let start = Instant::now();
    let measured_from = start + warmup;
    let end = measured_from + crate::secs(sizes.append_secs);
    let counted = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let window = Window {
            measured_from,
            end,
            counted: counted.clone(),
        };
        tasks.spawn(run_client(target.clone(), client, window));
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let window = end.duration_since(measured_from).as_secs_f64();
    Ok((counted.load(Ordering::Relaxed), window))
}

/// When a round counts, and the count of events appended within it.
struct Window {
    measured_from: Instant,
    end: Instant,
    counted: Arc<AtomicU64>,
}

/// One client: commands to its own streams in turn until the round ends, counting the
/// events of those that finish inside the measured window.
async fn run_client(target: Arc<Workload>, client: usize, window: Window) -> anyhow::Result<()> {
    let mut streams: Vec<(Uuid, StreamName, Option<u64>)> = (0..STREAMS_PER_CLIENT)
        .map(|_| {
            let id = Uuid::now_v7();
            (
                id,
                StreamName::new(format!("order-{id}")).expect("valid"),
                None,
            )
        })
        .collect();
    let mut n = client * 7919;
    let mut cmd = 0usize;
    loop {
        let now = Instant::now();
        if now >= window.end {
            return Ok(());
        }
        let slot = cmd % STREAMS_PER_CLIENT;
        cmd += 1;
        let (id, stream, version) = &mut streams[slot];
        append_once(&target, *id, stream, *version, &mut n).await?;
        let next = version.map_or(target.per_command as u64 - 1, |v| {
            v + target.per_command as u64
        });
        *version = Some(next);
        let done = Instant::now();
        if done >= window.measured_from && done < window.end {
            window
                .counted
                .fetch_add(target.per_command as u64, Ordering::Relaxed);
        }
    }
}
