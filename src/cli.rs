//! The command line.

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::{self, Role};
use crate::config::Config;
use crate::services;

/// An error that ends the process with a particular exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitWith {
    pub code: u8,
    pub message: String,
}

#[derive(Parser, Debug)]
#[command(
    name = "purser",
    version,
    about = "Purser: an event-sourced CQRS commerce backend",
    after_help = "Configuration comes from the environment: DATABASE_URL, PURSER_EVENT_STORE \
                  (postgres | kurrentdb), KURRENTDB_URL, PURSER_HTTP_ADDR, PURSER_LOG. See the README."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Run everything in one process: command side, projectors and the GraphQL API.
    Serve,
    /// Run the command side: GraphQL (mutations and queries), process managers and deadlines.
    CommandApi,
    /// Run the projectors that keep the read models current, or rebuild one, or skip a
    /// poison event on purpose.
    Projector(crate::projector_cli::ProjectorArgs),
    /// Serve GraphQL queries and subscriptions only (mutations are refused with READ_ONLY).
    QueryApi,
    /// Publish integration events to RabbitMQ (needs PURSER_AMQP_URL); `serve` does this too.
    Publisher,
    /// Apply database migrations (event store and read models).
    Migrate,
    /// Load demo data through the real command path (safe to run again): a catalog, demo
    /// staff accounts, and once, weeks of customer and order history.
    Seed {
        /// How many products the demo catalog has.
        #[arg(long, default_value_t = 300)]
        products: usize,
        /// How many customers the history has.
        #[arg(long, default_value_t = 250)]
        customers: usize,
        /// How many historical orders (0: none).
        #[arg(long, default_value_t = 2000)]
        orders: usize,
        /// How many days back the history goes.
        #[arg(long, default_value_t = 42)]
        days: i64,
    },
    /// Show each projection's position, lag and health.
    Status,
    /// Auditors: export or import the event log, verify its hash chains and seals.
    Audit {
        #[command(subcommand)]
        action: crate::audit::cli::AuditAction,
    },
    /// Auditors: rebuild every read model from position zero into a scratch database and
    /// compare it table by table with the live one. Exits 1 when a table differs, 2 when the
    /// live read models could not be lined up with the replay.
    Replay {
        /// Replay into this existing, empty database instead of creating a scratch one.
        #[arg(long, value_name = "URL")]
        into: Option<String>,
        /// Keep the scratch database afterwards, for inspection.
        #[arg(long)]
        keep: bool,
        /// Seconds to wait for the live projections to reach the replay's position.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        live_wait: u64,
    },
    /// Benchmark against raw SQL and cqrs-es on fresh databases (created on the server of
    /// DATABASE_URL, dropped after) and print the table.
    Bench {
        /// The big sizes (a 1M-event log; about 5 minutes on 2 vCPU) instead of the quick ones.
        #[arg(long)]
        full: bool,
        /// Also write the rows as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
        /// Run only these rows (1 to 8).
        #[arg(long, value_name = "ROW", num_args = 1..)]
        only: Vec<u8>,
        /// Instead of the rows: a steady mixed load (4 clients browsing, 2 checking out) for
        /// MINUTES, printing the server's RSS and p99 latencies every minute.
        #[arg(long, value_name = "MINUTES", conflicts_with_all = ["full", "json", "only"])]
        soak: Option<u32>,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Signed license keys: verify one offline, show the public key, make a key pair.
    License {
        #[command(subcommand)]
        action: LicenseAction,
    },
}

#[derive(Subcommand, Debug)]
enum LicenseAction {
    /// Check a license key's signature offline and print what it grants.
    Verify {
        /// The license key (PSR1.…).
        key: String,
        /// The base64 Ed25519 public key; defaults to PURSER_LICENSE_PUBLIC_KEY, then to the
        /// public half of the configured signing key.
        #[arg(long, env = "PURSER_LICENSE_PUBLIC_KEY")]
        public_key: Option<String>,
    },
    /// Print the public key that verifies this installation's licenses.
    PublicKey,
    /// Generate a new signing key (for PURSER_LICENSE_SIGNING_KEY) and print both halves.
    Keygen,
}

#[derive(Subcommand, Debug)]
enum UserAction {
    /// Create an account (or keep an existing one) and grant it roles.
    Add {
        #[arg(long)]
        email: String,
        /// The password; read from PURSER_USER_PASSWORD when omitted, so it stays out of
        /// shell history.
        #[arg(long, env = "PURSER_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Roles to grant: admin, analyst, auditor (repeatable).
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<purser_domain::customer::Role>,
    },
}

fn parse_role(s: &str) -> Result<purser_domain::customer::Role, String> {
    use purser_domain::customer::Role;
    match s.trim().to_ascii_lowercase().as_str() {
        "admin" => Ok(Role::Admin),
        "analyst" => Ok(Role::Analyst),
        "auditor" => Ok(Role::Auditor),
        "customer" => Ok(Role::Customer),
        other => Err(format!(
            "unknown role {other:?}: use admin, analyst, auditor or customer"
        )),
    }
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    // Dropped after the runtime, so the last spans are flushed outside async code.
    let _telemetry = crate::telemetry::init(&config.telemetry)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(dispatch(cli.command, config));
    // Tasks still running (after a shutdown deadline) are cancelled, not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    outcome
}

async fn dispatch(command: Action, config: Config) -> anyhow::Result<()> {
    match command {
        Action::Serve => app::serve(config, Role::All).await,
        Action::CommandApi => app::serve(config, Role::CommandApi).await,
        Action::QueryApi => app::serve(config, Role::QueryApi).await,
        Action::Publisher => app::serve(config, Role::Publisher).await,
        Action::Projector(args) => crate::projector_cli::run(args, config).await,
        Action::Migrate => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(std::time::Duration::from_secs(5))
                .connect_with(config.pg_options())
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot connect to the database at {}: {e}",
                        config.database_display()
                    )
                })?;
            services::migrate(&pool).await?;
            println!("database at {} is migrated", config.database_display());
            Ok(())
        }
        Action::Seed {
            products,
            customers,
            orders,
            days,
        } => {
            if products == 0 || days < 1 {
                anyhow::bail!("--products and --days must be at least 1");
            }
            let services = services::connect(&config).await?;
            let history = crate::seed::HistoryOptions {
                customers: customers.max(1),
                orders,
                days,
            };
            let report =
                crate::seed::seed_all(&services, crate::seed::SeedOptions { products, history })
                    .await?;
            println!("{report}");
            Ok(())
        }
        Action::User {
            action:
                UserAction::Add {
                    email,
                    password,
                    name,
                    roles,
                },
        } => {
            let services = services::connect(&config).await?;
            let created =
                crate::users::ensure_user(&services, &email, &password, &name, &roles).await?;
            println!("{} {email}", if created { "created" } else { "updated" });
            Ok(())
        }
        Action::License { action } => license(action, &config),
        Action::Audit { action } => crate::audit::cli::run(action, &config).await,
        Action::Replay {
            into,
            keep,
            live_wait,
        } => {
            let into = match into {
                Some(url) => Some(
                    url.parse::<sqlx::postgres::PgConnectOptions>()
                        .map_err(|_| anyhow::anyhow!("--into must be a Postgres URL"))?,
                ),
                None => None,
            };
            let services = services::connect(&config).await?;
            let report = crate::audit::replay(
                &services,
                &crate::audit::ReplayOptions {
                    into,
                    keep,
                    live_wait: std::time::Duration::from_secs(live_wait),
                },
            )
            .await?;
            print!("{report}");
            let code = report.exit_code();
            if code != 0 {
                let message = if code == 2 {
                    "replay: the live read models could not be lined up with the replay".into()
                } else {
                    format!("replay: {} table(s) differ", report.differing())
                };
                return Err(ExitWith { code, message }.into());
            }
            Ok(())
        }
        Action::Bench {
            full,
            json,
            only,
            soak,
        } => bench(&config, full, json, only, soak).await,
        Action::Status => crate::projector_cli::status(config).await,
    }
}

/// `purser bench`, when this binary was built with the `bench` feature.
#[cfg(feature = "bench")]
async fn bench(
    config: &Config,
    full: bool,
    json: Option<std::path::PathBuf>,
    only: Vec<u8>,
    soak: Option<u32>,
) -> anyhow::Result<()> {
    if let Some(minutes) = soak {
        return purser_bench::soak(config.database_url.expose(), minutes).await;
    }
    let options = purser_bench::Options::from_cli(config.database_url.expose(), full, json, only);
    purser_bench::run(options).await.map(|_| ())
}

#[cfg(not(feature = "bench"))]
async fn bench(
    _: &Config,
    _: bool,
    _: Option<std::path::PathBuf>,
    _: Vec<u8>,
    _: Option<u32>,
) -> anyhow::Result<()> {
    Err(ExitWith {
        code: 2,
        message: "this build of purser has no benchmarks; build it with \
                  `cargo build --release --features bench`"
            .into(),
    }
    .into())
}

fn license(action: LicenseAction, config: &Config) -> anyhow::Result<()> {
    use purser_command_api::licensing::{self, LicenseSigner};
    let configured_public_key = || -> anyhow::Result<String> {
        match services::load_license_signer(config)? {
            Some(signer) => Ok(signer.public_key_base64()),
            None => anyhow::bail!("no signing key is configured; pass --public-key"),
        }
    };
    match action {
        LicenseAction::Verify { key, public_key } => {
            let public_key = match public_key {
                Some(p) => p,
                None => configured_public_key()?,
            };
            let claims = licensing::verify(&key, &public_key)
                .map_err(|e| anyhow::anyhow!("invalid license key: {e}"))?;
            println!("valid license key");
            for field in ["license_id", "sku", "customer_id", "seats", "expires_at"] {
                let value = &claims[field];
                let shown = value
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| value.to_string());
                println!("  {field:<12} {shown}");
            }
            Ok(())
        }
        LicenseAction::PublicKey => {
            println!("{}", configured_public_key()?);
            Ok(())
        }
        LicenseAction::Keygen => {
            let (signer, seed) = LicenseSigner::generate();
            println!("PURSER_LICENSE_SIGNING_KEY={seed}");
            println!("PURSER_LICENSE_PUBLIC_KEY={}", signer.public_key_base64());
            Ok(())
        }
    }
}
