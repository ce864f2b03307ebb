//! Sign-in throttling, per account and per client address, in Postgres so that every process
//! serving GraphQL counts the same attempts.
//!
//! A key may fail `limit` times in a rolling minute; the failure that reaches the limit blocks
//! the key for `base_block`, doubled for every earlier block in the last day (capped at
//! `max_block`). A blocked key is refused before any password is hashed. Keys of unknown and
//! known addresses are treated alike, so the answers do not tell them apart.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::failure::Failure;

#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures per minute for one account.
    pub per_account: i32,
    /// Failures per minute from one client address (higher: offices and phones share one).
    pub per_client: i32,
    pub base_block: Duration,
    pub max_block: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            per_account: 10,
            per_client: 100,
            base_block: Duration::from_secs(60),
            max_block: Duration::from_secs(3600),
        }
    }
}

/// The refusal every throttled caller gets.
pub fn too_many(retry_after: Duration) -> Failure {
    let secs = retry_after.as_secs().max(1);
    Failure::rejected(
        None,
        "TOO_MANY_ATTEMPTS",
        format!("too many attempts; try again in {secs} seconds (retryAfter={secs})"),
    )
}

/// Refuses when any of `keys` is blocked now.
pub async fn check(pool: &PgPool, keys: &[String]) -> Result<(), Failure> {
    let until: Option<DateTime<Utc>> = sqlx::query_scalar(
        "select max(blocked_until) from purser.sign_in_throttle
         where key = any($1) and blocked_until > now()",
    )
    .bind(keys)
    .fetch_one(pool)
    .await
    .map_err(Failure::database)?;
    match until {
        Some(until) => Err(too_many((until - Utc::now()).to_std().unwrap_or_default())),
        None => Ok(()),
    }
}

/// Counts one failure against `key`, blocking it when it reaches `limit` in a minute.
pub async fn fail(
    pool: &PgPool,
    policy: &ThrottlePolicy,
    key: &str,
    limit: i32,
) -> Result<(), Failure> {
    let base = policy.base_block.as_secs_f64();
    let max = policy.max_block.as_secs_f64();
    // One statement, so concurrent failures count exactly.
    sqlx::query(
        "insert into purser.sign_in_throttle as t (key, failures, window_start, updated_at)
         values ($1, 1, now(), now())
         on conflict (key) do update set
             failures = case when t.window_start < now() - interval '1 minute' then 1
                             else t.failures + 1 end,
             window_start = case when t.window_start < now() - interval '1 minute' then now()
                                 else t.window_start end,
             blocks = case when t.updated_at < now() - interval '1 day' then 0 else t.blocks end,
             updated_at = now()",
    )
    .bind(key)
    .execute(pool)
    .await
    .map_err(Failure::database)?;
    sqlx::query(
        "update purser.sign_in_throttle
         set blocked_until = now() + make_interval(secs => least($3, $2 * power(2, blocks))),
             blocks = blocks + 1, failures = 0, window_start = now()
         where key = $1 and failures >= $4",
    )
    .bind(key)
    .bind(base)
    .bind(max)
    .bind(limit)
    .execute(pool)
    .await
    .map_err(Failure::database)?;
    Ok(())
}

/// A successful sign-in clears the account's count (not the client's: one good password does
/// not excuse a hundred guesses at other accounts).
pub async fn succeed(pool: &PgPool, key: &str) -> Result<(), Failure> {
    sqlx::query("delete from purser.sign_in_throttle where key = $1 and blocked_until is null")
        .bind(key)
        .execute(pool)
        .await
        .map_err(Failure::database)?;
    Ok(())
}

pub fn account_key(email: &purser_domain::Email) -> String {
    format!("account:{}", purser_domain::CustomerId::for_email(email))
}

pub fn client_key(client: Option<std::net::IpAddr>) -> Option<String> {
    client.map(|ip| format!("client:{ip}"))
}
