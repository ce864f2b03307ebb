//! Sends due webhook deliveries.
//!
//! A round claims due deliveries with a lease (no transaction stays open while it waits on a
//! receiver), skipping any whose ordering key has an earlier delivery still pending for the
//! same endpoint: an order's events reach a receiver one at a time and in order, and one slow
//! or failing order does not hold up the others. Sends run side by side, one per key.
//!
//! A 2xx answer delivers. Anything else (another status, a timeout, a refused connection, a
//! target that now resolves to a private address) schedules the next attempt by
//! [`super::retry_delay`]; after the retry window the delivery is given up (`failed`). An
//! endpoint with no success for `disable_after` while failing is disabled, and `on_disabled`
//! is told (the binary emails the admins).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::signature::{self, HEADER};
use super::{WebhookConfig, retry_delay, ssrf};

/// The most deliveries one round claims.
const ROUND: i64 = 32;
/// How long a claim lasts: longer than any send (the timeout) with room to record it.
const LEASE_SLACK: Duration = Duration::from_secs(30);
/// How often the worker looks when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);
/// How often finished deliveries past their retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Told when an endpoint is disabled: (endpoint id, URL, reason).
pub type OnDisabled = Arc<dyn Fn(Uuid, String, String) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Debug, sqlx::FromRow)]
struct Due {
    id: i64,
    endpoint_id: Uuid,
    event_id: Uuid,
    event_type: String,
    body: String,
    attempts: i32,
    window_from: DateTime<Utc>,
    url: String,
    secret: String,
}

/// What one attempt came to.
enum Outcome {
    Delivered(u16),
    Failed { status: Option<u16>, error: String },
}

pub struct DeliveryWorker {
    pool: PgPool,
    config: WebhookConfig,
    wake: watch::Receiver<u64>,
    on_disabled: Option<OnDisabled>,
}

impl DeliveryWorker {
    /// `wake` changes when the fan-out commits.
    pub fn new(pool: PgPool, config: WebhookConfig, wake: watch::Receiver<u64>) -> DeliveryWorker {
        DeliveryWorker {
            pool,
            config,
            wake,
            on_disabled: None,
        }
    }

    pub fn on_disabled(mut self, f: OnDisabled) -> DeliveryWorker {
        self.on_disabled = Some(f);
        self
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut last_prune = tokio::time::Instant::now() - PRUNE_EVERY;
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            self.wake.borrow_and_update();
            let wait = match self.round().await {
                Ok(0) => {
                    backoff = Duration::from_millis(200);
                    POLL
                }
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook delivery round failed");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                if let Err(e) = self.prune().await {
                    tracing::warn!(error = %e, "cannot prune the webhook delivery log");
                }
            }
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.changed() => {}
            }
        }
    }

    /// Claims, sends and records one round. Returns how many deliveries it attempted.
    pub async fn round(&self) -> Result<usize, sqlx::Error> {
        let lease = self.config.timeout + LEASE_SLACK;
        let due: Vec<Due> = sqlx::query_as(
            "with due as (
                 select d.id from integrations.webhook_deliveries d
                 join integrations.webhook_endpoints e on e.id = d.endpoint_id and e.enabled
                 where d.status = 'pending' and d.next_attempt_at <= now()
                   and (d.claimed_until is null or d.claimed_until < now())
                   and not exists (
                       select 1 from integrations.webhook_deliveries p
                       where p.endpoint_id = d.endpoint_id and p.ordering_key = d.ordering_key
                         and p.status = 'pending' and p.id < d.id)
                 order by d.id limit $1
                 for update of d skip locked)
             update integrations.webhook_deliveries d
             set claimed_until = now() + make_interval(secs => $2)
             from due, integrations.webhook_endpoints e
             where d.id = due.id and e.id = d.endpoint_id
             returning d.id, d.endpoint_id, d.event_id, d.event_type, d.body, d.attempts,
                       d.window_from, e.url, e.secret",
        )
        .bind(ROUND)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let n = due.len();
        let sends = due.into_iter().map(|d| async move {
            let outcome = self.send(&d).await;
            self.record(&d, outcome).await
        });
        for result in futures::future::join_all(sends).await {
            result?;
        }
        Ok(n)
    }

    async fn send(&self, d: &Due) -> Outcome {
        let target = match ssrf::check(&d.url, self.config.allow_private).await {
            Ok(t) => t,
            Err(e) => {
                return Outcome::Failed {
                    status: None,
                    error: e.to_string(),
                };
            }
        };
        // Connect to the address just checked, whatever the name resolves to next; follow no
        // redirect (it could point anywhere).
        let client = reqwest::Client::builder()
            .resolve(&target.host, target.addr)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.config.timeout)
            .connect_timeout(self.config.timeout.min(Duration::from_secs(5)))
            .user_agent("Purser-Webhooks/1")
            .build();
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                return Outcome::Failed {
                    status: None,
                    error: e.to_string(),
                };
            }
        };
        let now = Utc::now().timestamp();
        let sent = client
            .post(target.url)
            .header("content-type", "application/json")
            .header(HEADER, signature::sign(&d.secret, now, d.body.as_bytes()))
            .header("Purser-Event-Id", d.event_id.to_string())
            .header("Purser-Event-Type", &d.event_type)
            .header("Purser-Delivery", d.id.to_string())
            .body(d.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Outcome::Delivered(r.status().as_u16()),
            Ok(r) => Outcome::Failed {
                status: Some(r.status().as_u16()),
                error: format!("HTTP {}", r.status()),
            },
            Err(e) => Outcome::Failed {
                status: None,
                error: if e.is_timeout() {
                    "timed out".into()
                } else {
                    short(&e)
                },
            },
        }
    }

    async fn record(&self, d: &Due, outcome: Outcome) -> Result<(), sqlx::Error> {
        let attempts = d.attempts + 1;
        match outcome {
            Outcome::Delivered(status) => {
                metrics::counter!("purser_webhook_deliveries_total", "outcome" => "delivered")
                    .increment(1);
                sqlx::query(
                    "with d as (
                         update integrations.webhook_deliveries
                         set status = 'delivered', attempts = $2, last_status = $3, last_error = null,
                             last_attempt_at = now(), delivered_at = now(), claimed_until = null
                         where id = $1 returning endpoint_id)
                     update integrations.webhook_endpoints set failing_since = null
                     where id = (select endpoint_id from d)",
                )
                .bind(d.id)
                .bind(attempts)
                .bind(i32::from(status))
                .execute(&self.pool)
                .await?;
            }
            Outcome::Failed { status, error } => self.failed(d, attempts, status, &error).await?,
        }
        Ok(())
    }

    async fn failed(
        &self,
        d: &Due,
        attempts: i32,
        status: Option<u16>,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        let delay = retry_delay(self.config.retry_base, attempts as u32);
        let give_up = Utc::now() - d.window_from
            > chrono::Duration::from_std(self.config.retry_window).unwrap_or(chrono::Duration::MAX);
        let outcome = if give_up { "given_up" } else { "failed" };
        metrics::counter!("purser_webhook_deliveries_total", "outcome" => outcome).increment(1);
        tracing::info!(delivery = d.id, endpoint = %d.endpoint_id, attempts, error, give_up, "webhook delivery failed");
        let disabled: Option<(String,)> = sqlx::query_as(
            "with d as (
                 update integrations.webhook_deliveries
                 set status = case when $6 then 'failed' else 'pending' end, attempts = $2,
                     last_status = $3, last_error = $4, last_attempt_at = now(), claimed_until = null,
                     next_attempt_at = now() + make_interval(secs => $5)
                 where id = $1 returning endpoint_id),
             e as (
                 update integrations.webhook_endpoints
                 set failing_since = coalesce(failing_since, now())
                 where id = (select endpoint_id from d)
                 returning id, failing_since)
             update integrations.webhook_endpoints ep
             set enabled = false, disabled_at = now(),
                 disabled_reason = 'every delivery failed for ' || $7 || ' seconds'
             from e
             where ep.id = e.id and ep.enabled and e.failing_since < now() - make_interval(secs => $7)
             returning ep.url",
        )
        .bind(d.id)
        .bind(attempts)
        .bind(status.map(i32::from))
        .bind(error.chars().take(500).collect::<String>())
        .bind(delay.as_secs_f64())
        .bind(give_up)
        .bind(self.config.disable_after.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        if let Some((url,)) = disabled {
            let reason = format!(
                "every delivery failed for {} s; last error: {error}",
                self.config.disable_after.as_secs()
            );
            tracing::warn!(endpoint = %d.endpoint_id, "webhook endpoint disabled: {reason}");
            if let Some(f) = &self.on_disabled {
                f(d.endpoint_id, url, reason).await;
            }
        }
        Ok(())
    }

    async fn prune(&self) -> Result<(), sqlx::Error> {
        sqlx::query(
            "delete from integrations.webhook_deliveries
             where status <> 'pending' and created_at < now() - make_interval(secs => $1)",
        )
        .bind(self.config.retention.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// An error's message without the URL (it may carry a token in its query) .
fn short(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_request() {
        "request failed"
    } else {
        "failed"
    };
    match std::error::Error::source(e) {
        Some(s) => format!("{kind}: {s}"),
        None => kind.to_owned(),
    }
}
