//! The SQL migrations in this folder, embedded into the binary.
//!
//! Migrations are append-only: never edit one that has shipped; add a new one (expand, then
//! contract) instead.

/// Every migration, in order.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
