//! Test helpers shared by every crate's tests.
//!
//! [`TestDb::new`] gives each test its own database, cloned from a template database that has
//! all migrations applied. The template is built once per set of migrations (its name carries
//! a digest of them) under an advisory lock, so parallel test binaries share it safely.
//! Databases are dropped when the `TestDb` is dropped; ones left behind by killed runs are
//! swept after a few hours.
//!
//! With the `scenario` feature, the `scenario` module appends realistic event histories for
//! read-model tests.

#[cfg(feature = "scenario")]
pub mod scenario;

use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

/// The server tests run against: `PURSER_TEST_DATABASE_URL`, else `DATABASE_URL`, else the
/// default the README's setup creates.
pub fn base_url() -> String {
    std::env::var("PURSER_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://purser:purser@127.0.0.1:5432/purser".to_string())
}

/// Logs to stderr when `TEST_LOG` is set (its value is the filter, e.g. `TEST_LOG=debug`).
pub fn init_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let filter = if filter.is_empty() || filter == "1" {
                "info".to_string()
            } else {
                filter
            };
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// A database of one's own, migrated, dropped on drop.
pub struct TestDb {
    pub name: String,
    options: PgConnectOptions,
}

impl TestDb {
    pub async fn new() -> TestDb {
        init_logging();
        let base: PgConnectOptions = base_url().parse().expect("test database URL parses");
        // As the binary does (see purser's config): the role may be named like a schema.
        let base = base.options([("search_path", "public")]);
        let admin_opts = base.clone().database("postgres");
        let mut admin = PgConnection::connect_with(&admin_opts)
            .await
            .unwrap_or_else(|e| panic!("cannot reach Postgres for tests ({}): {e}", base_url()));
        let mut template = ensure_template(&mut admin, &admin_opts).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let name = format!("purser_t_{now}_{}", uuid::Uuid::new_v4().simple());
        let mut attempts = 0;
        loop {
            let created = admin
                .execute(format!(r#"create database "{name}" template "{template}""#).as_str())
                .await;
            match created {
                Ok(_) => break,
                // A run of another checkout (other migrations) swept our template away
                // between the check and the copy: build it again.
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("3D000") && attempts < 50 =>
                {
                    attempts += 1;
                    template = ensure_template(&mut admin, &admin_opts).await;
                }
                // Another session may be touching the template for a moment.
                Err(e) if attempts < 50 => {
                    attempts += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot create test database: {e}"),
            }
        }
        let _ = admin.close().await;
        TestDb {
            options: base.database(&name),
            name,
        }
    }

    /// A connection URL for this database (for spawning the real binary).
    pub fn url(&self) -> String {
        self.options.to_url_lossy().to_string()
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// A small pool on this database.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(8)
            .connect_with(self.options.clone())
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop is synchronous and may run inside a runtime, so do the async work on a thread
        // of its own.
        let name = self.name.clone();
        let admin = self.options.clone().database("postgres");
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(mut c) = PgConnection::connect_with(&admin).await {
                        let _ = c
                            .execute(
                                format!(r#"drop database if exists "{name}" with (force)"#)
                                    .as_str(),
                            )
                            .await;
                        let _ = c.close().await;
                    }
                });
            }
        })
        .join();
    }
}

/// The template's name: a digest of every migration's checksum.
fn template_name() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for m in purser_migrations::MIGRATOR.iter() {
        for b in m.version.to_le_bytes().iter().chain(m.checksum.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("purser_tpl_{h:016x}")
}

async fn ensure_template(admin: &mut PgConnection, admin_opts: &PgConnectOptions) -> String {
    let template = template_name();
    if database_exists(admin, &template).await {
        return template;
    }
    sqlx::query("select pg_advisory_lock(727274)")
        .execute(&mut *admin)
        .await
        .expect("lock");
    if !database_exists(admin, &template).await {
        sweep_stale(admin).await;
        let building = format!("{template}_build");
        admin
            .execute(format!(r#"drop database if exists "{building}" with (force)"#).as_str())
            .await
            .expect("drop half-built template");
        admin
            .execute(format!(r#"create database "{building}""#).as_str())
            .await
            .expect("create template");
        {
            let mut c = PgConnection::connect_with(&admin_opts.clone().database(&building))
                .await
                .expect("connect to template");
            purser_migrations::MIGRATOR
                .run(&mut c)
                .await
                .expect("migrate template");
            c.close().await.expect("close template connection");
        }
        // When it was built, so a sweep by another checkout's tests leaves it alone while it
        // may still be in use.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        admin
            .execute(format!(r#"comment on database "{building}" is 'built {now}'"#).as_str())
            .await
            .expect("stamp template");
        // Renaming makes the finished template appear atomically.
        admin
            .execute(format!(r#"alter database "{building}" rename to "{template}""#).as_str())
            .await
            .expect("publish template");
    }
    sqlx::query("select pg_advisory_unlock(727274)")
        .execute(&mut *admin)
        .await
        .expect("unlock");
    template
}

async fn database_exists(admin: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar::<_, bool>("select exists(select 1 from pg_database where datname = $1)")
        .bind(name)
        .fetch_one(admin)
        .await
        .expect("query pg_database")
}

/// Drops test databases older than three hours (left by killed runs), and templates of other
/// migration sets built more than a day ago (other checkouts may still be testing with them).
async fn sweep_stale(admin: &mut PgConnection) {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "select datname, shobj_description(oid, 'pg_database') from pg_database
         where datname like 'purser\\_t\\_%' or datname like 'purser\\_tpl\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let current = template_name();
    for (name, comment) in rows {
        let built = comment
            .as_deref()
            .and_then(|c| c.strip_prefix("built "))
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        let stale = if let Some(rest) = name.strip_prefix("purser_t_") {
            rest.split('_')
                .next()
                .and_then(|t| t.parse::<u64>().ok())
                .is_some_and(|t| now > t + 3 * 3600)
        } else {
            !name.starts_with(&current) && now > built + 24 * 3600
        };
        if stale {
            let _ = admin
                .execute(format!(r#"drop database if exists "{name}" with (force)"#).as_str())
                .await;
        }
    }
}
