//! The background work of a process: what each role runs next to HTTP, and the set of tasks
//! that a shutdown stops together.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use purser_command_api::actions::{ActionExecutor, RetryPolicy};
use purser_command_api::deadlines::{DeadlineProjection, DeadlineWorker};
use purser_command_api::notifications::{NotificationQueueProjection, NotificationWorker};
use purser_command_api::outbox::{Dispatcher, DispatcherOptions};
use purser_command_api::retention;
use purser_integrations::webhooks::fanout::WebhookFanout;
use purser_integrations::webhooks::worker::DeliveryWorker;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::StoreKind;
use crate::services::Services;

/// Tasks that run until one shutdown token is cancelled.
pub struct TaskSet {
    pub shutdown: CancellationToken,
    pub handles: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl TaskSet {
    pub fn new(shutdown: CancellationToken) -> TaskSet {
        TaskSet {
            shutdown,
            handles: Vec::new(),
        }
    }

    /// Spawns a worker that is handed the shutdown token and ends when it sees it cancelled.
    pub fn spawn<F, Fut>(&mut self, worker: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let run = worker(self.shutdown.clone());
        self.handles.push(tokio::spawn(async move {
            run.await;
            Ok(())
        }));
    }
}

/// The command side's background work: the command-side projections (checkout process,
/// deadlines, notification queue), the outbox dispatcher, the deadline and email workers, and
/// on Postgres the sealer.
pub fn spawn_command_side(services: &Services, tasks: &mut TaskSet) -> anyhow::Result<()> {
    let signer = services.license_signer()?;
    let projector = services.command_projector();
    tasks.spawn(|stop| async move { projector.run(stop).await });
    let config = &services.config;
    let executor = ActionExecutor::new(
        services.bus.clone(),
        services.gateway.clone(),
        signer,
        RetryPolicy {
            max_charge_attempts: config.charge_attempts,
            base_backoff: config.retry_base,
            ..RetryPolicy::default()
        },
    );
    let executor = match &services.trace {
        Some(trace) => executor.with_trace(trace.clone()),
        None => executor,
    };
    let dispatcher = Dispatcher::new(
        services.pool.clone(),
        Arc::new(executor),
        services.checkpoints.subscribe(),
        DispatcherOptions {
            lease: config.outbox_lease,
            ..DispatcherOptions::default()
        },
    );
    tasks.spawn(|stop| async move { dispatcher.run(stop).await });
    // Tamper evidence: seal the committed log in blocks (Postgres only). The sealer only
    // reads events and inserts seals, so appends never wait for it.
    if config.event_store == StoreKind::Postgres {
        let sealer = crate::audit::Sealer::new(services.pool.clone(), Default::default());
        tasks.spawn(|stop| async move { sealer.run(stop).await });
    }
    let cart_idle =
        chrono::Duration::from_std(config.cart_idle).unwrap_or(chrono::Duration::days(7));
    let deadlines = DeadlineWorker::new(
        services.pool.clone(),
        services.bus.clone(),
        cart_idle,
        services.checkpoints.subscribe_to(DeadlineProjection::NAME),
    );
    tasks.spawn(|stop| async move { deadlines.run(stop).await });
    let notifications = NotificationWorker::new(
        services.pool.clone(),
        services.bus.clone(),
        config.notifications.clone(),
        services
            .checkpoints
            .subscribe_to(NotificationQueueProjection::NAME),
    )
    .map_err(|e| anyhow!("{e}"))?
    .with_links(services.tokens.clone());
    tasks.spawn(|stop| async move { notifications.run(stop).await });
    let webhooks = DeliveryWorker::new(
        services.pool.clone(),
        config.integrations.webhooks.clone(),
        services.checkpoints.subscribe_to(WebhookFanout::NAME),
    );
    tasks.spawn(|stop| webhooks.run(stop));
    let pool = services.pool.clone();
    tasks.spawn(|stop| {
        purser_command_api::sessions::prune_every(pool, Duration::from_secs(600), stop)
    });
    // Finished rows kept only for operators: deleted after their retention.
    let pool = services.pool.clone();
    let rules = vec![
        (retention::TRACE_EVENTS, config.budgets.trace_retention),
        (
            retention::OUTBOX_REJECTIONS,
            config.budgets.rejection_retention,
        ),
    ];
    tasks.spawn(|stop| retention::run(pool, rules, Duration::from_secs(600), stop));
    Ok(())
}
