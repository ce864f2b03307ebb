//! The SQL migrations in this folder, embedded into the binary.
//!
//! Migrations are append-only: never edit one that has shipped; add a new one (expand, then
//! contract) instead.

/// Every migration, in order.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// True when every migration this build knows is applied to the database behind `pool`
/// (a process refuses to start on an older schema, and `/ready` reports it).
pub async fn applied(pool: &sqlx::PgPool) -> Result<bool, sqlx::Error> {
    let table: Option<String> =
        sqlx::query_scalar("select to_regclass('public._sqlx_migrations')::text")
            .fetch_one(pool)
            .await?;
    if table.is_none() {
        return Ok(false);
    }
    let applied: Vec<i64> =
        sqlx::query_scalar("select version from _sqlx_migrations where success")
            .fetch_all(pool)
            .await?;
    Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
}
