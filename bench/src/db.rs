//! Fresh databases for the bench, created on the server of `DATABASE_URL`, migrated, and
//! dropped at the end. Ones left behind by a killed run are swept by the next run after a few
//! hours (their names carry their creation time).

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

const PREFIX: &str = "purser_bench_";

pub(crate) struct Databases {
    base: PgConnectOptions,
    admin: PgConnectOptions,
    created: Mutex<Vec<String>>,
}

/// One fresh, migrated database.
pub(crate) struct BenchDb {
    pub(crate) name: String,
    pub(crate) opts: PgConnectOptions,
}

impl BenchDb {
    pub(crate) async fn pool(&self, size: u32) -> anyhow::Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(self.opts.clone())
            .await
            .with_context(|| format!("cannot connect to {}", self.name))
    }

    /// A pool whose commits do not wait for the WAL flush (`synchronous_commit = off`), for
    /// writing fixtures that no measured side's durability depends on: the log row 4 rebuilds
    /// from is generated before either side's clock starts, and a server crash would fail the
    /// run anyway.
    pub(crate) async fn fixture_pool(&self, size: u32) -> anyhow::Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(self.opts.clone().options([("synchronous_commit", "off")]))
            .await
            .with_context(|| format!("cannot connect to {}", self.name))
    }

    /// A URL for a child process.
    pub(crate) fn url(&self) -> String {
        self.opts.to_url_lossy().to_string()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Databases {
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Databases> {
        let base: PgConnectOptions = url.parse().context("DATABASE_URL is not a Postgres URL")?;
        // As the binary does (see purser's config): the role may be named like a schema.
        let base = base.options([("search_path", "public")]);
        // sqlx logs every statement at debug and slow ones at warn; under load that floods.
        let base = base.disable_statement_logging();
        let admin = base.clone().database("postgres");
        let mut conn = PgConnection::connect_with(&admin)
            .await
            .context("cannot reach the Postgres server of DATABASE_URL (database `postgres`)")?;
        // Sweep databases of runs that were killed more than six hours ago.
        let stale: Vec<String> =
            sqlx::query_scalar("select datname from pg_database where datname like $1")
                .bind(format!("{PREFIX}%"))
                .fetch_all(&mut conn)
                .await?;
        let cutoff = now_secs().saturating_sub(6 * 3600);
        for name in stale {
            let born = name[PREFIX.len()..]
                .split('_')
                .next()
                .and_then(|s| s.parse::<u64>().ok());
            if born.is_some_and(|b| b < cutoff) {
                let _ = conn
                    .execute(format!(r#"drop database if exists "{name}" with (force)"#).as_str())
                    .await;
            }
        }
        let _ = conn.close().await;
        Ok(Databases {
            base,
            admin,
            created: Mutex::new(vec![]),
        })
    }

    pub(crate) async fn server_version(&self) -> anyhow::Result<String> {
        let mut conn = PgConnection::connect_with(&self.admin).await?;
        let v: String = sqlx::query_scalar("select version()")
            .fetch_one(&mut conn)
            .await?;
        let _ = conn.close().await;
        // "PostgreSQL 15.20 (Debian …) on x86_64-pc-linux-gnu, compiled by …": keep the first part.
        Ok(v.split(" on ").next().unwrap_or(&v).to_owned())
    }

    /// Creates and migrates a database of its own.
    pub(crate) async fn create(&self, label: &str) -> anyhow::Result<BenchDb> {
        let name = format!(
            "{PREFIX}{}_{}_{label}_{}",
            now_secs(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut conn = PgConnection::connect_with(&self.admin).await?;
        conn.execute(format!(r#"create database "{name}""#).as_str())
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        let _ = conn.close().await;
        self.created.lock().expect("lock").push(name.clone());
        let db = BenchDb {
            opts: self.base.clone().database(&name),
            name,
        };
        let pool = db.pool(2).await?;
        purser_migrations::MIGRATOR
            .run(&pool)
            .await
            .with_context(|| format!("cannot migrate {}", db.name))?;
        pool.close().await;
        Ok(db)
    }

    pub(crate) async fn drop(&self, db: BenchDb) {
        self.drop_named(&db.name).await;
        self.created.lock().expect("lock").retain(|n| *n != db.name);
    }

    async fn drop_named(&self, name: &str) {
        if let Ok(mut conn) = PgConnection::connect_with(&self.admin).await {
            let _ = conn
                .execute(format!(r#"drop database if exists "{name}" with (force)"#).as_str())
                .await;
            let _ = conn.close().await;
        }
    }

    /// Drops every database this run created and has not dropped yet.
    pub(crate) async fn drop_all(&self) {
        let names = std::mem::take(&mut *self.created.lock().expect("lock"));
        for name in names {
            self.drop_named(&name).await;
        }
    }
}
