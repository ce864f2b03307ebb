//! Wiring: connect, assemble, serve, shut down.
//!
//! One process can play any role: `All` (command side, projectors and GraphQL together),
//! or one of `CommandApi`, `Projector`, `QueryApi` to scale out. Every role serves HTTP
//! (health, readiness, GraphQL) on its address.
//!
//! Shutdown (SIGTERM or Ctrl-C): stop accepting connections, let in-flight requests finish,
//! let each projector finish the batch it is applying, then exit. A restarted process picks up
//! from the checkpoints.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::{HttpState, router};
use crate::services::{Services, connect};
use crate::workers::TaskSet;

/// What a process runs besides HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    CommandApi,
    Projector,
    QueryApi,
    /// Publishes integration events to RabbitMQ (and serves health and GraphQL like any role).
    Publisher,
}

impl Role {
    /// Runs the read-model projectors.
    pub fn runs_projectors(self) -> bool {
        matches!(self, Role::All | Role::Projector)
    }

    /// The RabbitMQ publisher, when one is configured.
    pub fn runs_publisher(self) -> bool {
        matches!(self, Role::All | Role::Publisher)
    }

    /// Process managers, their outbox dispatcher and deadlines.
    pub fn runs_command_side(self) -> bool {
        matches!(self, Role::All | Role::CommandApi)
    }
}

/// A started process: its address and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub services: Services,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Asks everything to stop and waits until it has.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until every task has ended (after a shutdown, or a failure).
    pub async fn wait(self) -> anyhow::Result<()> {
        let mut first_error = None;
        for t in self.tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(anyhow!("a task panicked: {e}"));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Connects, checks the schema is migrated, binds, and starts the role's work. Returns once
/// the process is serving.
pub async fn start(config: Config, role: Role) -> anyhow::Result<Running> {
    let mut services = connect(&config).await?;
    // Metrics and trace events belong to the process: install the recorder before anything
    // records, and start the trace writer.
    crate::observability::prometheus();
    services.trace = Some(purser_command_api::trace::TraceLog::start(
        services.pool.clone(),
    ));
    if !purser_migrations::applied(&services.pool).await? {
        return Err(anyhow!(
            "the database at {} is not migrated to this version; run `purser migrate` first",
            config.database_display()
        ));
    }
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| {
            anyhow!(
                "cannot listen on {} (PURSER_HTTP_ADDR): {e}",
                config.http_addr
            )
        })?;
    let addr = listener.local_addr()?;
    let publisher = services.publisher();
    if role == Role::Publisher && publisher.is_none() {
        return Err(anyhow!(
            "`purser publisher` publishes to RabbitMQ: set PURSER_AMQP_URL (like amqp://user:password@127.0.0.1:5672/%2f)"
        ));
    }
    let mut tasks = TaskSet::new(CancellationToken::new());
    if let Some(publisher) = publisher.filter(|_| role.runs_publisher()) {
        tasks.spawn(|stop| async move { publisher.run(stop).await });
    }
    if role.runs_projectors() {
        let projector = services.projector();
        tasks.spawn(|stop| async move { projector.run(stop).await });
    }
    if role.runs_command_side() {
        crate::workers::spawn_command_side(&services, &mut tasks)?;
    }
    if services.config.jwt_secret_is_ephemeral {
        tracing::warn!(
            "PURSER_JWT_SECRET is not set: tokens are signed with a random key and stop working when this process restarts"
        );
    }
    let sampler = crate::observability::sample_gauges(
        services.pool.clone(),
        services
            .config
            .database_read_url
            .is_some()
            .then(|| services.read_pool.clone()),
        role.runs_command_side().then(|| services.bus.clone()),
        Duration::from_secs(5),
        tasks.shutdown.clone(),
    );
    tasks.spawn(|_| sampler);
    let app = router(http_state(&services, role));
    let stop = tasks.shutdown.clone();
    tasks.handles.push(tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .context("the HTTP server failed")
    }));
    tracing::info!(%addr, ?role, event_store = services.store.kind(), "purser is serving");
    Ok(Running {
        addr,
        services,
        shutdown: tasks.shutdown,
        tasks: tasks.handles,
    })
}

/// What the HTTP layer needs of the services.
fn http_state(services: &Services, role: Role) -> HttpState {
    let schema = services.build_schema(role == Role::QueryApi);
    let limits = services.config.budgets.admission.clone();
    HttpState {
        ws: crate::websocket::WsState::new(
            schema.clone(),
            services.tokens.clone(),
            services.sessions.clone(),
            limits.clone(),
            services.config.budgets.websocket.clone(),
        ),
        limiter: crate::ratelimit::RateLimiter::new(
            services.config.budgets.rate_limit,
            services.config.budgets.client_ip_header.clone(),
        ),
        limits,
        schema,
        pool: services.pool.clone(),
        store: services.store.clone(),
        tokens: services.tokens.clone(),
        sessions: services.sessions.clone(),
        bus: services.bus.clone(),
        stripe_webhook_secret: match &services.config.payment_gateway {
            purser_command_api::gateway::GatewayConfig::Stripe(c) => {
                Some(c.webhook_secret.expose().to_owned())
            }
            purser_command_api::gateway::GatewayConfig::Simulated(_) => None,
        },
        cors_origins: services.config.integrations.cors_origins.clone(),
        apq: Default::default(),
    }
}

/// Runs until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn serve(config: Config, role: Role) -> anyhow::Result<()> {
    let deadline = config.budgets.shutdown_timeout;
    let running = start(config, role).await?;
    let token = running.shutdown_token();
    let stopping = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(
            deadline_secs = deadline.as_secs(),
            "shutting down: draining requests and finishing projection batches"
        );
        token.cancel();
        // A second signal means "now".
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(130);
    });
    // Nothing a client sends may keep the process alive: after the deadline whatever is left
    // (a slow request, an open WebSocket) is dropped. A projection batch still in flight then
    // never commits, and Postgres rolls it back with the connection.
    let wait = running.wait();
    tokio::pin!(wait);
    tokio::select! {
        outcome = &mut wait => outcome,
        _ = async { stopping.cancelled().await; tokio::time::sleep(deadline).await } => {
            tracing::warn!(
                deadline_secs = deadline.as_secs(),
                "shutdown deadline passed; dropping the requests still in flight"
            );
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
