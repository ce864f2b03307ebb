//! Registered endpoints and their delivery log: what the admin GraphQL reads and changes.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::ssrf::{self, TargetError};
use crate::contract::EventType;

/// At most this many endpoints: each multiplies every event's deliveries.
pub const MAX_ENDPOINTS: i64 = 50;
/// The most deliveries one page of the log returns.
pub const MAX_PAGE: i64 = 200;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub failing_since: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("the description is longer than 500 characters")]
    Description,
    #[error("at most {MAX_ENDPOINTS} endpoints can be registered")]
    TooMany,
    #[error("no such endpoint or delivery")]
    NotFound,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

const ENDPOINT_COLUMNS: &str = "id, url, event_types, description, enabled, failing_since, \
     disabled_at, disabled_reason, created_at";
const DELIVERY_COLUMNS: &str = "id, endpoint_id, event_id, event_type, status, attempts, \
     last_status, last_error, last_attempt_at, next_attempt_at, delivered_at, created_at";

/// Registers an endpoint. Returns it with its signing secret, which is shown this once.
pub async fn register(
    pool: &PgPool,
    url: &str,
    event_types: &[String],
    description: &str,
    allow_private: bool,
    actor: Option<&str>,
) -> Result<(Endpoint, String), EndpointError> {
    ssrf::check(url, allow_private).await?;
    let types = parse_types(event_types)?;
    if description.chars().count() > 500 {
        return Err(EndpointError::Description);
    }
    let secret = new_secret();
    let mut tx = pool.begin().await?;
    // Serialises registrations, so the bound holds under concurrent calls.
    sqlx::query("lock table integrations.webhook_endpoints in share row exclusive mode")
        .execute(&mut *tx)
        .await?;
    let count: i64 = sqlx::query_scalar("select count(*) from integrations.webhook_endpoints")
        .fetch_one(&mut *tx)
        .await?;
    if count >= MAX_ENDPOINTS {
        return Err(EndpointError::TooMany);
    }
    let endpoint = sqlx::query_as::<_, Endpoint>(&format!(
        "insert into integrations.webhook_endpoints (id, url, event_types, secret, description, created_by)
         values ($1, $2, $3, $4, $5, $6) returning {ENDPOINT_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(url.trim())
    .bind(&types)
    .bind(&secret)
    .bind(description)
    .bind(actor)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((endpoint, secret))
}

fn parse_types(event_types: &[String]) -> Result<Vec<String>, EndpointError> {
    let mut types: Vec<String> = event_types
        .iter()
        .map(|t| {
            EventType::parse(t.trim())
                .map(|t| t.name().to_owned())
                .ok_or_else(|| EndpointError::UnknownType(t.chars().take(60).collect()))
        })
        .collect::<Result<_, _>>()?;
    types.sort();
    types.dedup();
    Ok(types)
}

/// 32 random bytes, hex, with a prefix that makes a leaked secret easy to recognise.
fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", hex::encode(bytes))
}

pub async fn list(pool: &PgPool) -> Result<Vec<Endpoint>, EndpointError> {
    Ok(sqlx::query_as::<_, Endpoint>(&format!(
        "select {ENDPOINT_COLUMNS} from integrations.webhook_endpoints order by created_at"
    ))
    .fetch_all(pool)
    .await?)
}

/// Enables or disables an endpoint. Enabling starts its failure clock afresh; deliveries
/// that waited meanwhile go out again.
pub async fn set_enabled(
    pool: &PgPool,
    id: Uuid,
    enabled: bool,
) -> Result<Endpoint, EndpointError> {
    sqlx::query_as::<_, Endpoint>(&format!(
        "update integrations.webhook_endpoints
         set enabled = $2,
             failing_since = case when $2 then null else failing_since end,
             disabled_at = case when $2 then null else coalesce(disabled_at, now()) end,
             disabled_reason = case when $2 then null else coalesce(disabled_reason, 'disabled by an admin') end
         where id = $1 returning {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(enabled)
    .fetch_optional(pool)
    .await?
    .ok_or(EndpointError::NotFound)
}

/// Deletes an endpoint and its delivery log.
pub async fn delete(pool: &PgPool, id: Uuid) -> Result<(), EndpointError> {
    let n = sqlx::query("delete from integrations.webhook_endpoints where id = $1")
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(EndpointError::NotFound);
    }
    Ok(())
}

/// An endpoint's deliveries, newest first, before the delivery id `before` when given.
pub async fn deliveries(
    pool: &PgPool,
    endpoint_id: Uuid,
    first: i64,
    before: Option<i64>,
) -> Result<Vec<Delivery>, EndpointError> {
    Ok(sqlx::query_as::<_, Delivery>(&format!(
        "select {DELIVERY_COLUMNS} from integrations.webhook_deliveries
         where endpoint_id = $1 and ($2::bigint is null or id < $2)
         order by id desc limit $3"
    ))
    .bind(endpoint_id)
    .bind(before)
    .bind(first.clamp(1, MAX_PAGE))
    .fetch_all(pool)
    .await?)
}

/// Sends a delivery again (delivered, given up or still pending): same event id, so a
/// receiver that already has it recognises it. It starts a new retry window.
pub async fn replay(pool: &PgPool, delivery_id: i64) -> Result<Delivery, EndpointError> {
    sqlx::query_as::<_, Delivery>(&format!(
        "update integrations.webhook_deliveries
         set status = 'pending', next_attempt_at = now(), claimed_until = null, window_from = now()
         where id = $1 returning {DELIVERY_COLUMNS}"
    ))
    .bind(delivery_id)
    .fetch_optional(pool)
    .await?
    .ok_or(EndpointError::NotFound)
}
