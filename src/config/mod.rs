//! Configuration from the environment, with defaults that work out of the box.
//!
//! Every problem is reported as one sentence naming the variable and what it should look
//! like; secrets are never echoed back.

mod budgets;
mod identity;
mod integrations;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use purser_api_core::config::http_base_url;

pub use budgets::{Budgets, Limits, RateLimit, WsLimits};
pub use integrations::Integrations;
use purser_api_core::config::{ConfigError, Secret, redact_url};
use sqlx::postgres::PgConnectOptions;

pub const DEFAULT_DATABASE_URL: &str = "postgres://purser:purser@127.0.0.1:5432/purser";
pub const DEFAULT_KURRENTDB_URL: &str = "kurrentdb://127.0.0.1:2113?tls=false";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Postgres,
    KurrentDb,
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::Postgres => "postgres",
            StoreKind::KurrentDb => "kurrentdb",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Read models, and the event store when it is Postgres.
    pub database_url: Secret,
    /// Optional replica that queries read from.
    pub database_read_url: Option<Secret>,
    pub event_store: StoreKind,
    pub kurrentdb_url: Secret,
    pub http_addr: SocketAddr,
    pub db_pool_size: u32,
    /// How long a query with `minPosition` waits for the read models.
    pub consistency_timeout: Duration,
    /// Logs and optional OTLP trace export.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The most events a projector applies in one transaction.
    pub projector_batch: usize,
    /// Signs bearer tokens. From `PURSER_JWT_SECRET`; a random one per process otherwise.
    pub jwt_secret: Secret,
    pub jwt_secret_is_ephemeral: bool,
    /// Lifetime of an access token (`PURSER_JWT_TTL_SECS`); sessions outlive it by refreshing.
    pub token_ttl: Duration,
    /// Sessions, password hashing, sign-in throttling.
    pub identity: identity::Identity,
    /// Ed25519 seed (base64) for signed license keys; see `license_key_file`.
    pub license_signing_key: Option<Secret>,
    /// Where the signing key lives when `PURSER_LICENSE_SIGNING_KEY` is unset (None: nowhere).
    pub license_key_file: Option<std::path::PathBuf>,
    pub payment_gateway: purser_command_api::gateway::GatewayConfig,
    /// SMTP and retry settings of email notifications (`PURSER_SMTP_*`, `PURSER_NOTIFY_*`).
    pub notifications: purser_command_api::notifications::NotificationConfig,
    /// How long a reservation holds stock before it is released.
    pub reservation_ttl: Duration,
    /// How long a cart may sit idle before it is abandoned.
    pub cart_idle: Duration,
    /// Gateway timeouts tolerated per charge before the payment fails.
    pub charge_attempts: u32,
    /// First retry delay of process-manager commands; doubles per attempt up to a minute.
    pub retry_base: Duration,
    /// How long a dispatcher's claim on an outbox command lasts; after a crash, commands
    /// the dead process was sending are sent again once it expires.
    pub outbox_lease: Duration,
    /// What a client may cost (request limits, rates, waits) and how long shutdown may take.
    pub budgets: Budgets,
    /// RabbitMQ, webhooks, CORS (`PURSER_AMQP_*`, `PURSER_WEBHOOK_*`, `PURSER_CORS_ORIGINS`).
    pub integrations: Integrations,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        check_pg_url("DATABASE_URL", &database_url)?;
        let mut otlp_endpoint = false;
        for var in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ] {
            if let Some(url) = get(var).filter(|s| !s.trim().is_empty()) {
                // The exporter would fall back to localhost silently on anything else.
                http_base_url(var, &url, "http://otel-collector:4318")?;
                otlp_endpoint = true;
            }
        }
        let database_read_url = get("DATABASE_READ_URL").filter(|s| !s.is_empty());
        if let Some(u) = &database_read_url {
            check_pg_url("DATABASE_READ_URL", u)?;
        }
        let event_store = match get("PURSER_EVENT_STORE").as_deref().map(str::trim) {
            None | Some("") | Some("postgres") => StoreKind::Postgres,
            Some("kurrentdb") | Some("kurrent") => StoreKind::KurrentDb,
            Some(other) => {
                return Err(ConfigError(format!(
                    "PURSER_EVENT_STORE must be `postgres` or `kurrentdb`, not {:?}",
                    other.chars().take(40).collect::<String>()
                )));
            }
        };
        let kurrentdb_url = get("KURRENTDB_URL").unwrap_or_else(|| DEFAULT_KURRENTDB_URL.into());
        if event_store == StoreKind::KurrentDb {
            purser_event_store::kurrent::check_url(&kurrentdb_url).map_err(|e| {
                ConfigError(format!(
                    "KURRENTDB_URL is not a KurrentDB connection string (like {DEFAULT_KURRENTDB_URL}): {e}"
                ))
            })?;
        }
        let http_raw = get("PURSER_HTTP_ADDR").unwrap_or_else(|| DEFAULT_HTTP_ADDR.into());
        let http_addr = http_raw.trim().parse::<SocketAddr>().map_err(|_| {
            ConfigError(format!(
                "PURSER_HTTP_ADDR must be an address and port like {DEFAULT_HTTP_ADDR}, not {:?}",
                http_raw.chars().take(60).collect::<String>()
            ))
        })?;
        let db_pool_size = number(&get, "PURSER_DB_POOL_SIZE", 16, 1, 1000)? as u32;
        let consistency_ms = number(&get, "PURSER_CONSISTENCY_TIMEOUT_MS", 5000, 0, 600_000)?;
        let projector_batch = number(&get, "PURSER_PROJECTOR_BATCH", 500, 1, 100_000)? as usize;
        let (jwt_secret, jwt_secret_is_ephemeral) = match get("PURSER_JWT_SECRET") {
            Some(s) if s.len() >= 32 => (Secret::new(s), false),
            Some(_) => {
                return Err(ConfigError(
                    "PURSER_JWT_SECRET must be at least 32 characters long".into(),
                ));
            }
            None => {
                let random: [u8; 32] = rand::random();
                (
                    Secret::new(
                        random
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>(),
                    ),
                    true,
                )
            }
        };
        let token_ttl =
            Duration::from_secs(number(&get, "PURSER_JWT_TTL_SECS", 15 * 60, 60, 86_400)?);
        let identity = identity::Identity::from_lookup(&get, token_ttl)?;
        let license_signing_key = get("PURSER_LICENSE_SIGNING_KEY")
            .filter(|s| !s.trim().is_empty())
            .map(Secret::new);
        let license_key_file = match get("PURSER_LICENSE_SIGNING_KEY_FILE") {
            None => Some(".purser/license-signing.key".into()),
            Some(p) if p.trim().is_empty() => None,
            Some(p) => Some(p.into()),
        };
        let payment_gateway = purser_command_api::gateway::GatewayConfig::from_lookup(&get)
            .map_err(|e| ConfigError(e.0.trim_end_matches('.').to_owned()))?;
        let notifications =
            purser_command_api::notifications::NotificationConfig::from_lookup(&get)
                .map_err(|e| ConfigError(e.0.trim_end_matches('.').to_owned()))?;
        let reservation_ttl = Duration::from_secs(number(
            &get,
            "PURSER_RESERVATION_TTL_SECS",
            600,
            1,
            7 * 86_400,
        )?);
        let cart_idle = Duration::from_secs(number(
            &get,
            "PURSER_CART_IDLE_SECS",
            7 * 86_400,
            1,
            365 * 86_400,
        )?);
        let charge_attempts = number(&get, "PURSER_CHARGE_ATTEMPTS", 5, 1, 100)? as u32;
        let retry_base =
            Duration::from_millis(number(&get, "PURSER_RETRY_BASE_MS", 500, 1, 60_000)?);
        let outbox_lease =
            Duration::from_secs(number(&get, "PURSER_OUTBOX_LEASE_SECS", 30, 1, 3600)?);
        Ok(Config {
            database_url: Secret::new(database_url),
            database_read_url: database_read_url.map(Secret::new),
            event_store,
            kurrentdb_url: Secret::new(kurrentdb_url),
            http_addr,
            db_pool_size,
            consistency_timeout: Duration::from_millis(consistency_ms),
            telemetry: crate::telemetry::TelemetryConfig {
                log_filter: get("PURSER_LOG").unwrap_or_else(|| "info,sqlx=warn".into()),
                log_json: get("PURSER_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json")),
                otlp: otlp_endpoint
                    && !get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")),
                otlp_filter: get("PURSER_OTLP_FILTER")
                    .unwrap_or_else(|| "info,purser_projections=debug,sqlx=warn".into()),
                service_name: get("OTEL_SERVICE_NAME")
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or_else(|| "purser".into()),
            },
            projector_batch,
            jwt_secret,
            jwt_secret_is_ephemeral,
            token_ttl,
            identity,
            license_signing_key,
            license_key_file,
            payment_gateway,
            notifications,
            reservation_ttl,
            cart_idle,
            charge_attempts,
            retry_base,
            outbox_lease,
            budgets: Budgets::from_lookup(&get)?,
            integrations: Integrations::from_lookup(&get)?,
        })
    }

    pub fn pg_options(&self) -> PgConnectOptions {
        public_search_path(
            self.database_url
                .expose()
                .parse()
                .expect("checked when the config was read"),
        )
    }

    pub fn pg_read_options(&self) -> Option<PgConnectOptions> {
        self.database_read_url
            .as_ref()
            .map(|u| public_search_path(u.expose().parse().expect("checked when read")))
    }

    /// The database URL with its password masked, for messages.
    pub fn database_display(&self) -> String {
        redact_url(self.database_url.expose())
    }
}

fn check_pg_url(var: &str, url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError(format!(
            "{var} must be a Postgres URL like {DEFAULT_DATABASE_URL}, not {:?}",
            redact_url(url)
        )));
    }
    url.parse::<PgConnectOptions>().map(|_| ()).map_err(|e| {
        ConfigError(format!(
            "{var} is not a valid Postgres URL ({})",
            redact_url(url) + ": " + &first_line(&e.to_string())
        ))
    })
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    var: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ConfigError(format!(
                    "{var} must be a whole number from {min} to {max}, not {raw:?}"
                ))
            }),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

/// Pins `search_path` to `public`. Every table Purser uses is schema-qualified, except the
/// migration tool's own `_sqlx_migrations`; with Postgres' default `"$user", public`, a role
/// named like one of our schemas (`purser`) would make the second `migrate` create and read a
/// fresh, empty history table in that schema and try to apply everything again.
pub fn public_search_path(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("search_path", "public")])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_work_out_of_the_box() {
        let c = with(&[]).unwrap();
        assert_eq!(c.event_store, StoreKind::Postgres);
        assert_eq!(c.http_addr.to_string(), DEFAULT_HTTP_ADDR);
        assert_eq!(
            c.database_display(),
            "postgres://purser:***@127.0.0.1:5432/purser"
        );
    }

    #[test]
    fn the_state_cache_and_retention_are_configurable() {
        let c = with(&[]).unwrap();
        assert_eq!(c.budgets.state_cache.max_bytes, 16 * 1024 * 1024);
        assert_eq!(c.budgets.state_cache.max_entries, 50_000);
        let c = with(&[
            ("PURSER_STATE_CACHE_MB", "64"),
            ("PURSER_STATE_CACHE_ENTRIES", "0"),
            ("PURSER_REJECTION_RETENTION_DAYS", "7"),
        ])
        .unwrap();
        assert_eq!(c.budgets.state_cache.max_bytes, 64 * 1024 * 1024);
        assert_eq!(c.budgets.state_cache.max_entries, 0);
        assert_eq!(c.budgets.rejection_retention.as_secs(), 7 * 86_400);
        let e = with(&[("PURSER_STATE_CACHE_MB", "lots")]).unwrap_err().0;
        assert!(e.contains("PURSER_STATE_CACHE_MB"), "{e}");
    }

    #[test]
    fn bad_values_are_one_clear_sentence() {
        let e = with(&[("PURSER_EVENT_STORE", "mongo")]).unwrap_err().0;
        assert!(e.contains("PURSER_EVENT_STORE must be"), "{e}");
        let e = with(&[("PURSER_HTTP_ADDR", "localhost")]).unwrap_err().0;
        assert!(e.contains("PURSER_HTTP_ADDR must be"), "{e}");
        let e = with(&[("DATABASE_URL", "mysql://root:hunter2@db/x")])
            .unwrap_err()
            .0;
        assert!(e.contains("DATABASE_URL must be a Postgres URL"), "{e}");
        assert!(!e.contains("hunter2"), "the password leaked: {e}");
        let e = with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "otel-collector:4318")])
            .unwrap_err()
            .0;
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL"),
            "{e}"
        );
        let c = with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4318")]).unwrap();
        assert!(c.telemetry.otlp);
        assert!(!with(&[]).unwrap().telemetry.otlp, "off by default");
        let off = with(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .unwrap();
        assert!(!off.telemetry.otlp);
        let e = with(&[("PURSER_DB_POOL_SIZE", "0")]).unwrap_err().0;
        assert!(e.contains("PURSER_DB_POOL_SIZE"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn secrets_do_not_print() {
        let c = with(&[("DATABASE_URL", "postgres://u:hunter2@h/db")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
