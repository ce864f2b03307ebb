//! What a process is connected to: the pools, the event store, the command bus, the gateway,
//! tokens, and the projections it can run. Every role and every CLI command starts here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use purser_api_core::ReadContext;
use purser_api_core::auth::Tokens;
use purser_command_api::CommandBus;
use purser_command_api::deadlines::DeadlineProjection;
use purser_command_api::gateway::PaymentGateway;
use purser_command_api::licensing::LicenseSigner;
use purser_command_api::notifications::NotificationQueueProjection;
use purser_command_api::process::CheckoutProcess;
use purser_domain::checkout::CheckoutConfig;
use purser_event_store::{EventStore, KurrentEventStore, PgEventStore};
use purser_integrations::amqp::AmqpPublisher;
use purser_integrations::webhooks::fanout::WebhookFanout;
use purser_projections::{Checkpoints, Projection, Projector};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::{Config, StoreKind};
use crate::schema::{self, PurserSchema};

/// Connections and shared services.
#[derive(Clone)]
pub struct Services {
    pub config: Config,
    /// Writes (and the event store, when it is Postgres).
    pub pool: PgPool,
    /// Reads: the replica when one is configured, else the same pool.
    pub read_pool: PgPool,
    pub store: Arc<dyn EventStore>,
    pub checkpoints: Checkpoints,
    pub bus: CommandBus,
    pub gateway: Arc<dyn PaymentGateway>,
    pub tokens: Tokens,
    /// Sign-up, sign-in, sessions, roles.
    pub accounts: purser_command_api::accounts::Accounts,
    /// The request-time session check every transport authenticates through.
    pub sessions: Arc<purser_api_core::sessions::SessionCheck>,
    /// Operational trace events, written in the background.
    pub trace: Option<purser_command_api::trace::TraceLog>,
}

/// Every projection this build has.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    purser_projections::all()
}

async fn connect_pool(
    options: sqlx::postgres::PgConnectOptions,
    size: u32,
    what: &str,
    shown: &str,
) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|e| {
            anyhow!(
                "cannot connect to the {what} at {shown}: {}",
                one_line(&e.to_string())
            )
        })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How long startup waits for a KurrentDB leader to answer before giving up.
const KURRENTDB_LEADER_PATIENCE: Duration = Duration::from_secs(30);

/// Connects to Postgres and the event store; fails with one clear sentence (at once, or
/// after waiting for a KurrentDB leader).
pub async fn connect(config: &Config) -> anyhow::Result<Services> {
    let pool = connect_pool(
        config.pg_options(),
        config.db_pool_size,
        "database",
        &config.database_display(),
    )
    .await?;
    let read_pool = match config.pg_read_options() {
        Some(opts) => {
            let shown = purser_api_core::config::redact_url(
                config.database_read_url.as_ref().expect("set").expose(),
            );
            connect_pool(opts, config.db_pool_size, "read replica", &shown).await?
        }
        None => pool.clone(),
    };
    let store: Arc<dyn EventStore> = match config.event_store {
        StoreKind::Postgres => Arc::new(PgEventStore::new(pool.clone())),
        StoreKind::KurrentDb => {
            let k = KurrentEventStore::from_url(config.kurrentdb_url.expose())?;
            // A cluster electing a leader, or a node still starting, answers "not ready" for
            // a few seconds: wait for a leader rather than fail (and be restarted) meanwhile.
            k.wait_for_leader(KURRENTDB_LEADER_PATIENCE)
                .await
                .map_err(|e| {
                    anyhow!(
                        "cannot reach KurrentDB at {}: {e}",
                        purser_api_core::config::redact_url(config.kurrentdb_url.expose())
                    )
                })?;
            Arc::new(k)
        }
    };
    let checkpoints = Checkpoints::new(read_pool.clone());
    let bus = CommandBus::with_cache(store.clone(), config.budgets.state_cache);
    let gateway = purser_command_api::gateway::build(config.payment_gateway.clone(), pool.clone())
        .map_err(|e| anyhow!("{e}"))?;
    let tokens = Tokens::new(config.jwt_secret.expose().as_bytes(), config.token_ttl);
    let accounts = purser_command_api::accounts::Accounts {
        bus: bus.clone(),
        pool: pool.clone(),
        hasher: config.identity.hasher(),
        sessions: config.identity.sessions,
        throttle: config.identity.throttle,
    };
    let sessions = Arc::new(purser_api_core::sessions::SessionCheck::new(
        pool.clone(),
        config.identity.session_check,
        purser_api_core::sessions::SessionCheck::DEFAULT_CAPACITY,
    ));
    Ok(Services {
        config: config.clone(),
        pool,
        read_pool,
        store,
        checkpoints,
        bus,
        gateway,
        tokens,
        accounts,
        sessions,
        trace: None,
    })
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    purser_migrations::MIGRATOR
        .run(pool)
        .await
        .context("migration failed")?;
    Ok(())
}

impl Services {
    pub fn schema(&self) -> PurserSchema {
        self.build_schema(false)
    }

    /// The GraphQL schema; `read_only` refuses mutations (what a query-api process serves).
    pub fn build_schema(&self, read_only: bool) -> PurserSchema {
        let read = ReadContext::new(
            self.read_pool.clone(),
            self.checkpoints.clone(),
            self.config.consistency_timeout,
            self.config.budgets.max_waiters,
        );
        let parts = schema::Parts {
            read,
            bus: self.bus.clone(),
            gateway: self.gateway.clone(),
            tokens: self.tokens.clone(),
            accounts: self.accounts.clone(),
            sessions: self.sessions.clone(),
            trace: self.trace.clone(),
            webhooks: purser_command_api::graphql::webhooks::WebhookAdmin {
                pool: self.pool.clone(),
                allow_private: self.config.integrations.webhooks.allow_private,
            },
        };
        schema::build(parts, read_only)
    }

    /// The license signer: `PURSER_LICENSE_SIGNING_KEY`, else the key file, which is created
    /// with a fresh key on first use (convenient in development; set the variable in
    /// production so every process signs with the same key).
    pub fn license_signer(&self) -> anyhow::Result<Option<LicenseSigner>> {
        load_license_signer(&self.config)
    }

    /// The command side's own projections: process managers and deadlines.
    pub fn command_projector(&self) -> Projector {
        let checkout = CheckoutConfig {
            reservation_ttl: chrono::Duration::from_std(self.config.reservation_ttl)
                .unwrap_or(chrono::Duration::minutes(10)),
        };
        let cart_idle =
            chrono::Duration::from_std(self.config.cart_idle).unwrap_or(chrono::Duration::days(7));
        let projections: Vec<Arc<dyn Projection>> = vec![
            Arc::new(CheckoutProcess { config: checkout }),
            Arc::new(DeadlineProjection { cart_idle }),
            Arc::new(NotificationQueueProjection),
            Arc::new(WebhookFanout {
                mapper: self.config.integrations.webhooks.mapper,
            }),
        ];
        Projector::new(
            self.store.clone(),
            self.pool.clone(),
            projections,
            self.checkpoints.clone(),
        )
        .with_options(purser_projections::ProjectorOptions {
            batch_max: self.config.projector_batch,
            ..Default::default()
        })
    }

    /// The RabbitMQ publisher, when `PURSER_AMQP_URL` is set: a projector of its own, so a
    /// broker outage holds up nothing but publishing.
    pub fn publisher(&self) -> Option<Projector> {
        let amqp = self.config.integrations.amqp.clone()?;
        Some(
            Projector::new(
                self.store.clone(),
                self.pool.clone(),
                vec![Arc::new(AmqpPublisher::new(amqp))],
                self.checkpoints.clone(),
            )
            .with_options(purser_projections::ProjectorOptions {
                batch_max: self.config.projector_batch,
                ..Default::default()
            }),
        )
    }

    pub fn projector(&self) -> Projector {
        Projector::new(
            self.store.clone(),
            self.pool.clone(),
            projections(),
            self.checkpoints.clone(),
        )
        .with_options(purser_projections::ProjectorOptions {
            batch_max: self.config.projector_batch,
            ..Default::default()
        })
    }
}

/// See [`Services::license_signer`]. With `PURSER_LICENSE_SIGNING_KEY_FILE` set to an empty
/// string and no key, there is no signer: signed licenses then fail and their orders are
/// refunded and cancelled.
pub fn load_license_signer(config: &Config) -> anyhow::Result<Option<LicenseSigner>> {
    if let Some(seed) = &config.license_signing_key {
        return LicenseSigner::from_base64(seed.expose())
            .map(Some)
            .map_err(|e| anyhow!("PURSER_LICENSE_SIGNING_KEY is not usable: {e}"));
    }
    let Some(path) = &config.license_key_file else {
        tracing::warn!(
            "no license signing key: orders for signed licenses will be refunded and cancelled"
        );
        return Ok(None);
    };
    match std::fs::read_to_string(path) {
        Ok(seed) => LicenseSigner::from_base64(&seed).map(Some).map_err(|e| {
            anyhow!(
                "the license signing key in {} is not usable: {e}",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (signer, seed) = LicenseSigner::generate();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow!(
                        "cannot create {} for the license signing key: {e}",
                        dir.display()
                    )
                })?;
            }
            write_secret_file(path, &seed).map_err(|e| {
                anyhow!(
                    "cannot write the license signing key to {}: {e}",
                    path.display()
                )
            })?;
            tracing::warn!(
                file = %path.display(),
                public_key = %signer.public_key_base64(),
                "generated a license signing key; set PURSER_LICENSE_SIGNING_KEY in production"
            );
            Ok(Some(signer))
        }
        Err(e) => Err(anyhow!(
            "cannot read the license signing key from {}: {e}",
            path.display()
        )),
    }
}

fn write_secret_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(contents.as_bytes())
}
