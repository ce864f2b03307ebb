//! Scratch databases next to the live one, and projectors that write into another database
//! while reading the live event log: what `purser replay` and the online rebuild build on.

use std::sync::Arc;

use anyhow::Context;
use purser_projections::{Checkpoints, Projection, Projector};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection};

use crate::services::{self, Services};

/// A scratch database next to the live one, dropped on request.
pub(crate) struct Scratch {
    pub(crate) name: String,
    admin: PgConnectOptions,
}

impl Scratch {
    /// Creates `<live name>_<purpose>_<unix time>` on the live database's server.
    pub(crate) async fn create(
        live: &PgConnectOptions,
        live_pool: &PgPool,
        purpose: &str,
    ) -> anyhow::Result<Scratch> {
        let current: String = sqlx::query_scalar("select current_database()")
            .fetch_one(live_pool)
            .await?;
        // Postgres cuts names at 63 bytes; keep the live name recognisable within that.
        let prefix: String = current.chars().take(40).collect();
        let stamp = chrono::Utc::now().timestamp();
        let name = format!("{prefix}_{purpose}_{stamp}");
        let mut conn = PgConnection::connect_with(live).await?;
        conn.execute(format!(r#"create database "{name}""#).as_str())
            .await
            .with_context(|| {
                format!("cannot create the scratch database {name} (the role needs CREATEDB, or pass --into URL)")
            })?;
        conn.close().await?;
        Ok(Scratch {
            name,
            admin: live.clone(),
        })
    }

    /// Connection options for the scratch database.
    pub(crate) fn options(&self) -> PgConnectOptions {
        self.admin.clone().database(&self.name)
    }

    pub(crate) async fn drop_now(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect_with(&self.admin).await?;
        conn.execute(format!(r#"drop database if exists "{}" with (force)"#, self.name).as_str())
            .await?;
        conn.close().await?;
        Ok(())
    }
}

/// Connects to `target`, migrates it, and returns a projector that reads the live event log
/// and writes `projections` (and their checkpoints) into `target`. `what` names the database
/// in errors.
pub(crate) async fn projector_over(
    services: &Services,
    target: &PgConnectOptions,
    projections: Vec<Arc<dyn Projection>>,
    what: &str,
) -> anyhow::Result<(PgPool, Projector)> {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(target.clone())
        .await
        .with_context(|| format!("cannot connect to {what}"))?;
    services::migrate(&pool).await?;
    // Events the live projections were told to pass over are passed over here too.
    purser_projections::dead_letters::copy(&services.pool, &pool).await?;
    let projector = Projector::new(
        services.store.clone(),
        pool.clone(),
        projections,
        Checkpoints::new(pool.clone()),
    );
    Ok((pool, projector))
}
