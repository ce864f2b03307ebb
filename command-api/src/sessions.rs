//! Signed-in sessions: created at sign-in, refreshed with a rotating refresh token, ended by
//! sign-out, a password change or a disabled account.
//!
//! A refresh token is `<session id>.<32 random bytes, base64url>`; only its SHA-256 digest is
//! stored. Each refresh replaces it, and presenting a replaced token again (someone copied it)
//! ends the session for both holders.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use purser_domain::CustomerId;
use purser_event_store::Position;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::failure::Failure;

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// Lifetime of an access token (a JWT); short, because a token itself cannot be recalled.
    pub access_ttl: Duration,
    /// How long a session lives without being refreshed.
    pub refresh_ttl: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 86_400),
        }
    }
}

/// A live session and the refresh token that continues it (shown to the client once).
pub struct Opened {
    pub session_id: Uuid,
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
}

fn new_secret() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let digest = Sha256::digest(secret.as_bytes()).to_vec();
    (secret, digest)
}

fn expiry(policy: &SessionPolicy) -> DateTime<Utc> {
    Utc::now()
        + chrono::Duration::from_std(policy.refresh_ttl).unwrap_or(chrono::Duration::days(30))
}

pub async fn open(
    pool: &PgPool,
    policy: &SessionPolicy,
    customer_id: CustomerId,
    guest: bool,
    account_at: Option<Position>,
) -> Result<Opened, Failure> {
    let session_id = Uuid::new_v4();
    let (secret, digest) = new_secret();
    let expires_at = expiry(policy);
    sqlx::query(
        "insert into purser.sessions
             (id, customer_id, refresh_hash, expires_at, guest, account_commit, account_prepare)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(session_id)
    .bind(customer_id.as_uuid())
    .bind(&digest)
    .bind(expires_at)
    .bind(guest)
    .bind(account_at.map(|p| p.commit as i64))
    .bind(account_at.map(|p| p.prepare as i64))
    .execute(pool)
    .await
    .map_err(Failure::database)?;
    Ok(Opened {
        session_id,
        refresh_token: format!("{session_id}.{secret}"),
        refresh_expires_at: expires_at,
    })
}

fn invalid_refresh() -> Failure {
    Failure::rejected(
        Some("refresh_token"),
        "INVALID_TOKEN",
        "the refresh token is not valid; sign in again",
    )
}

/// Replaces a session's refresh token; answers the session's owner and the new token.
pub async fn refresh(
    pool: &PgPool,
    policy: &SessionPolicy,
    token: &str,
) -> Result<(CustomerId, Opened), Failure> {
    let (id, secret) = token.trim().split_once('.').ok_or_else(invalid_refresh)?;
    let session_id = Uuid::parse_str(id).map_err(|_| invalid_refresh())?;
    let presented = Sha256::digest(secret.as_bytes()).to_vec();
    let (next_secret, next_digest) = new_secret();
    let expires_at = expiry(policy);
    // One statement: the row is rotated only if the presented digest is the current one, so
    // two refreshes racing with one token cannot both win.
    let rotated: Option<(Uuid,)> = sqlx::query_as(
        "update purser.sessions
         set previous_hash = refresh_hash, refresh_hash = $3, refreshed_at = now(), expires_at = $4
         where id = $1 and refresh_hash = $2 and revoked_at is null and expires_at > now()
         returning customer_id",
    )
    .bind(session_id)
    .bind(&presented)
    .bind(&next_digest)
    .bind(expires_at)
    .fetch_optional(pool)
    .await
    .map_err(Failure::database)?;
    if let Some((customer,)) = rotated {
        let opened = Opened {
            session_id,
            refresh_token: format!("{session_id}.{next_secret}"),
            refresh_expires_at: expires_at,
        };
        return Ok((CustomerId::from(customer), opened));
    }
    // A replaced token presented again: whoever holds the current one may be a thief.
    sqlx::query(
        "update purser.sessions set revoked_at = now(), revoked_reason = 'refresh token reused'
         where id = $1 and previous_hash = $2 and revoked_at is null",
    )
    .bind(session_id)
    .bind(&presented)
    .execute(pool)
    .await
    .map_err(Failure::database)?;
    Err(invalid_refresh())
}

/// Records where the account stood when a refresh read it (see `open`).
pub async fn note_account(
    pool: &PgPool,
    session_id: Uuid,
    at: Option<Position>,
) -> Result<(), Failure> {
    sqlx::query(
        "update purser.sessions set account_commit = $2, account_prepare = $3 where id = $1",
    )
    .bind(session_id)
    .bind(at.map(|p| p.commit as i64))
    .bind(at.map(|p| p.prepare as i64))
    .execute(pool)
    .await
    .map_err(Failure::database)?;
    Ok(())
}

pub async fn revoke(pool: &PgPool, session_id: Uuid, reason: &str) -> Result<(), Failure> {
    sqlx::query(
        "update purser.sessions set revoked_at = now(), revoked_reason = $2
         where id = $1 and revoked_at is null",
    )
    .bind(session_id)
    .bind(reason)
    .execute(pool)
    .await
    .map_err(Failure::database)?;
    Ok(())
}

/// Ends every session of `customer_id` except `keep`; answers how many ended.
pub async fn revoke_all(
    pool: &PgPool,
    customer_id: CustomerId,
    keep: Option<Uuid>,
    reason: &str,
) -> Result<u64, Failure> {
    let done = sqlx::query(
        "update purser.sessions set revoked_at = now(), revoked_reason = $3
         where customer_id = $1 and revoked_at is null and id is distinct from $2",
    )
    .bind(customer_id.as_uuid())
    .bind(keep)
    .bind(reason)
    .execute(pool)
    .await
    .map_err(Failure::database)?;
    Ok(done.rows_affected())
}

/// Prunes every `every` until `stop`: ended sessions and stale throttle rows.
pub async fn prune_every(pool: PgPool, every: Duration, stop: tokio_util::sync::CancellationToken) {
    loop {
        match prune(&pool).await {
            Ok(n) => metrics::counter!("purser_sessions_pruned_total").increment(n),
            Err(e) => tracing::debug!(error = %e, "could not prune sessions"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Deletes sessions that ended more than a day ago, and throttle rows untouched for a day.
pub async fn prune(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let sessions = sqlx::query(
        "delete from purser.sessions
         where coalesce(revoked_at, expires_at) < now() - interval '1 day'",
    )
    .execute(pool)
    .await?
    .rows_affected();
    let throttle = sqlx::query(
        "delete from purser.sign_in_throttle where updated_at < now() - interval '1 day'",
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(sessions + throttle)
}
