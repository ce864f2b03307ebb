//! Email notifications: order confirmed, payment failed, license ready, shipped, refunded,
//! order cancelled.
//!
//! The checkout process manager queues a notification (`NotificationQueued` on
//! `notification-<id>`, with a deterministic id). From there:
//!
//! - [`NotificationQueueProjection`] keeps `purser.notification_queue` in step with the log:
//!   a queued notification is a row due at once; a failed attempt moves the row to its next
//!   attempt; a sent notification, or one given up on, removes the row. The row is only an
//!   index of work to do; the notification's stream stays the truth.
//! - [`NotificationWorker`] leases due rows, loads the notification, the order and the license
//!   through the [`CommandBus`] (the command side's own view, never a read model), renders the
//!   email ([`templates`]), sends it over SMTP ([`smtp`]) and records the outcome on the stream
//!   (`MarkSent`, or `MarkFailed` with exponential backoff until `max_attempts`, after which
//!   it gives up).
//!
//! Delivery guarantee: at least once, with an idempotent Message-ID. Each attempt's command id
//! is derived from the notification id and the attempt number, so an attempt is recorded once
//! however often it is retried, and a restart never records anything twice. The one window
//! that cannot be closed is between the SMTP server accepting a message and `MarkSent` being
//! appended: a crash there sends the email again after the lease expires. Both copies carry
//! `Message-ID: <notification-id@purser>`, so receivers that de-duplicate by Message-ID see one.
//!
//! No transaction is ever held open while talking to the SMTP server: claiming is one short
//! `UPDATE … RETURNING` that sets a lease (`claimed_until`), and everything after it runs
//! outside any transaction. An open transaction would hold back the event store's visibility
//! horizon, stalling every subscriber; an expired lease just makes the row claimable again.

pub mod account_mail;
pub mod smtp;
pub mod templates;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use purser_domain::events::AnyEvent;
use purser_domain::license::License;
use purser_domain::notification::{
    Notification, NotificationCommand, NotificationError, NotificationEvent, NotificationKind,
    NotificationState, NotificationStatus,
};
use purser_domain::order::{Order, OrderEvent};
use purser_domain::{Event, Money, NotificationId, OrderId};
use purser_event_store::{EventFilter, RecordedEvent, StoreError, StreamName, read_stream_to_end};
use purser_projections::{Projection, ProjectionError, decode};
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError, stream_of};
use crate::context::CommandContext;
use crate::polling::{due_in, run_rounds, sooner};
use purser_api_core::config::{ConfigError, http_base_url};
use smtp::{Mailer, SendError, SmtpConfig};
use templates::{RenderedEmail, TemplateInput};

// ---------------------------------------------------------------------------------------------
// Configuration

/// Everything the notification worker needs to know.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `PURSER_SMTP_HOST` | SMTP server | `127.0.0.1` |
/// | `PURSER_SMTP_PORT` | its port | `1025` |
/// | `PURSER_SMTP_USERNAME`, `PURSER_SMTP_PASSWORD` | credentials (both or neither) | none |
/// | `PURSER_SMTP_FROM` | the sender | `Purser <shop@purser.local>` |
/// | `PURSER_SMTP_TLS` | `none`, `starttls` or `tls` | `none` |
/// | `PURSER_SMTP_TIMEOUT_MS` | how long one SMTP conversation may take | `10000` |
/// | `PURSER_DOWNLOAD_BASE_URL` | where license download links point | `http://127.0.0.1:8080` |
/// | `PURSER_NOTIFY_MAX_ATTEMPTS` | attempts before giving up on an email | `10` |
/// | `PURSER_NOTIFY_BACKOFF_MS` | wait after the first failure; doubles each time | `1000` |
/// | `PURSER_NOTIFY_MAX_BACKOFF_MS` | the longest wait between attempts | `3600000` |
#[derive(Debug, Clone)]
pub struct NotificationConfig {
    pub smtp: SmtpConfig,
    /// Without a trailing slash.
    pub download_base_url: String,
    /// Attempts (the first included) before the worker gives up on a notification.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles with each further failure.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

pub const DEFAULT_DOWNLOAD_BASE_URL: &str = "http://127.0.0.1:8080";

impl Default for NotificationConfig {
    fn default() -> Self {
        NotificationConfig {
            smtp: SmtpConfig::default(),
            download_base_url: DEFAULT_DOWNLOAD_BASE_URL.into(),
            max_attempts: 10,
            base_backoff: Duration::from_millis(1000),
            max_backoff: Duration::from_secs(3600),
        }
    }
}

impl NotificationConfig {
    /// Reads the variables through `lookup` (the environment, or a map in tests). Empty values
    /// count as unset, so `PURSER_SMTP_USERNAME=` in a compose file means "not given".
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<NotificationConfig, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut config = NotificationConfig {
            smtp: SmtpConfig::from_lookup(&get)?,
            ..Default::default()
        };
        if let Some(raw) = get("PURSER_DOWNLOAD_BASE_URL") {
            config.download_base_url =
                http_base_url("PURSER_DOWNLOAD_BASE_URL", &raw, DEFAULT_DOWNLOAD_BASE_URL)?;
        }
        if let Some(raw) = get("PURSER_NOTIFY_MAX_ATTEMPTS") {
            config.max_attempts =
                raw.parse::<u32>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                    ConfigError(format!(
                        "PURSER_NOTIFY_MAX_ATTEMPTS must be a whole number from 1 to 1000, not {:?}",
                        shorten(&raw)
                    ))
                })?;
        }
        if let Some(raw) = get("PURSER_NOTIFY_BACKOFF_MS") {
            config.base_backoff = millis("PURSER_NOTIFY_BACKOFF_MS", &raw, 1, 86_400_000)?;
        }
        if let Some(raw) = get("PURSER_NOTIFY_MAX_BACKOFF_MS") {
            config.max_backoff = millis("PURSER_NOTIFY_MAX_BACKOFF_MS", &raw, 1, 86_400_000)?;
        }
        if config.max_backoff < config.base_backoff {
            return Err(ConfigError(format!(
                "PURSER_NOTIFY_MAX_BACKOFF_MS ({} ms) must not be less than PURSER_NOTIFY_BACKOFF_MS ({} ms)",
                config.max_backoff.as_millis(),
                config.base_backoff.as_millis()
            )));
        }
        Ok(config)
    }

    /// The wait after the `attempt`-th failure (1-based): `base × 2^(attempt−1)`, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// A duration in whole milliseconds from `min` to `max`.
fn millis(name: &str, raw: &str, min: u64, max: u64) -> Result<Duration, ConfigError> {
    raw.parse::<u64>()
        .ok()
        .filter(|ms| (min..=max).contains(ms))
        .map(Duration::from_millis)
        .ok_or_else(|| {
            ConfigError(format!(
                "{name} must be a whole number of milliseconds from {min} to {max}, not {:?}",
                shorten(raw)
            ))
        })
}

/// Non-secret values are echoed in errors, but never at length.
fn shorten(raw: &str) -> String {
    raw.chars().take(64).collect()
}

// ---------------------------------------------------------------------------------------------
// The queue projection

/// Keeps `purser.notification_queue` in step with the notification streams.
pub struct NotificationQueueProjection;

impl NotificationQueueProjection {
    pub const NAME: &'static str = "notification_queue";
}

#[async_trait]
impl Projection for NotificationQueueProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::categories(["notification"])
    }

    /// The queue is command-side state: a rebuild never truncates it. Replaying the events
    /// re-derives the same rows (inserts that ignore a row already there, updates and deletes
    /// by notification id).
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let AnyEvent::Notification(e) = decode(event)? else {
            return Ok(());
        };
        match e {
            NotificationEvent::NotificationQueued {
                notification_id,
                kind,
                to,
                order_id,
                license_id,
                at,
                ..
            } => {
                // Due as of the moment it was queued: the event's time, not this clock, so a
                // replay writes the same row.
                sqlx::query(
                    "insert into purser.notification_queue
                         (id, kind, recipient, order_id, license_id, attempts, next_attempt_at)
                     values ($1, $2, $3, $4, $5, 0, $6)
                     on conflict (id) do nothing",
                )
                .bind(notification_id.as_uuid())
                .bind(kind.as_str())
                .bind(to.as_str())
                .bind(order_id.map(|o| o.as_uuid()))
                .bind(license_id.map(|l| l.as_uuid()))
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            NotificationEvent::NotificationFailed {
                notification_id,
                attempt,
                error,
                next_attempt_at: Some(next),
                ..
            } => {
                // The attempt is over, so its lease is too; the row waits for `next`.
                sqlx::query(
                    "update purser.notification_queue
                     set attempts = $2, next_attempt_at = $3, last_error = $4, claimed_until = null
                     where id = $1 and attempts <= $2",
                )
                .bind(notification_id.as_uuid())
                .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
                .bind(next)
                .bind(&error)
                .execute(&mut *tx)
                .await?;
            }
            NotificationEvent::NotificationFailed {
                notification_id,
                next_attempt_at: None,
                ..
            }
            | NotificationEvent::NotificationSent {
                notification_id, ..
            } => {
                sqlx::query("delete from purser.notification_queue where id = $1")
                    .bind(notification_id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The worker

/// Why a notification could not be worked on just now (nothing was sent).
#[derive(Debug, thiserror::Error)]
enum Postpone {
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Other(String),
}

/// Sends queued notifications; see the module documentation.
pub struct NotificationWorker {
    pool: PgPool,
    bus: CommandBus,
    mailer: Mailer,
    config: NotificationConfig,
    wake: watch::Receiver<u64>,
    /// Longest sleep between looks at the queue (rows written by other processes, and retries
    /// that fall due, are found by then at the latest).
    poll: Duration,
    /// How long a claim lasts: longer than any SMTP conversation can take, so a row is only
    /// claimed again when its worker has really died.
    lease: Duration,
    /// Most rows claimed at once.
    batch: i64,
    /// Emails sent concurrently.
    concurrency: usize,
    /// Signs the links of account emails; without it those emails cannot be written.
    links: Option<purser_api_core::auth::Tokens>,
}

impl NotificationWorker {
    pub fn new(
        pool: PgPool,
        bus: CommandBus,
        config: NotificationConfig,
        wake: watch::Receiver<u64>,
    ) -> Result<NotificationWorker, ConfigError> {
        let mailer = Mailer::new(&config.smtp)?;
        let lease = (config.smtp.timeout * 3).max(Duration::from_secs(60));
        Ok(NotificationWorker {
            pool,
            bus,
            mailer,
            config,
            wake,
            poll: Duration::from_secs(2),
            lease,
            batch: 32,
            concurrency: 4,
            links: None,
        })
    }

    /// Lets the worker write account emails (verification, password reset), whose links it
    /// signs with `tokens`.
    pub fn with_links(mut self, tokens: purser_api_core::auth::Tokens) -> NotificationWorker {
        self.links = Some(tokens);
        self
    }

    /// Runs until `shutdown`. Emails already being sent are finished first; claimed ones not yet
    /// started are released for the next process.
    pub async fn run(self, shutdown: CancellationToken) {
        let errors = (Duration::from_secs(1), Duration::from_secs(1));
        run_rounds(
            "notification worker",
            self.wake.clone(),
            self.poll,
            errors,
            &shutdown,
            || self.round(&shutdown),
        )
        .await;
    }

    /// Claims what is due and sends it. Returns how many rows it claimed and how long until the
    /// next row not claimed by this round falls due and is not claimed (zero if one already
    /// is; None if the queue holds no other row), learnt in the same statement as the claim,
    /// or sooner if a row of this round was put off.
    pub async fn round(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<(usize, Option<Duration>), sqlx::Error> {
        // One autocommitted statement: the lease replaces a row lock, so no transaction stays
        // open while the SMTP server is talked to. Both parts read one snapshot, so the rows
        // just claimed are left out of the second by id; the last row carries only the time
        // (NULL when there is no other row).
        let rows: Vec<(Option<Uuid>, Option<f64>)> = sqlx::query_as(
            "with claimed as (
                 update purser.notification_queue q
                 set claimed_until = now() + make_interval(secs => $2)
                 from (select id from purser.notification_queue
                       where next_attempt_at <= now() and (claimed_until is null or claimed_until <= now())
                       order by next_attempt_at
                       limit $1
                       for update skip locked) c
                 where q.id = c.id
                 returning q.id
             )
             select id, null::float8 from claimed
             union all
             select null, (select extract(epoch from
                              min(greatest(next_attempt_at, coalesce(claimed_until, next_attempt_at))) - now())::float8
                           from purser.notification_queue where id not in (select id from claimed))",
        )
        .bind(self.batch)
        .bind(self.lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let mut next_due = None;
        let mut ids = Vec::with_capacity(rows.len());
        for (id, due) in rows {
            match id {
                Some(id) => ids.push(id),
                None => next_due = due_in(due),
            }
        }
        let claimed = ids.len();
        let put_off = futures::stream::iter(ids)
            .map(|id| self.handle(id, shutdown))
            .buffer_unordered(self.concurrency)
            .collect::<Vec<Option<Duration>>>()
            .await;
        for retry in put_off.into_iter().flatten() {
            next_due = sooner(next_due, retry);
        }
        Ok((claimed, next_due))
    }

    /// Works on one claimed row. Returns the pause before it is due again if it was put off.
    async fn handle(&self, id: Uuid, shutdown: &CancellationToken) -> Option<Duration> {
        if shutdown.is_cancelled() {
            // Not started: hand it straight back rather than leave it leased until expiry.
            self.hold(id, None).await;
            return None;
        }
        if let Err(e) = self.attempt(NotificationId::from(id)).await {
            tracing::warn!(notification = %id, error = %e, "cannot work on a notification now; will look again");
            let pause = self.config.base_backoff.max(Duration::from_secs(1));
            self.hold(id, Some(Utc::now() + pause)).await;
            return Some(pause);
        }
        None
    }

    /// Sets the row's lease to `until` (`None`: free now).
    async fn hold(&self, id: Uuid, until: Option<DateTime<Utc>>) {
        let r = sqlx::query(
            "update purser.notification_queue set claimed_until = coalesce($2, now()) where id = $1",
        )
        .bind(id)
        .bind(until)
        .execute(&self.pool)
        .await;
        if let Err(e) = r {
            // The lease then simply runs out.
            tracing::warn!(notification = %id, error = %e, "cannot release a notification's lease");
        }
    }

    /// One attempt at one notification. `Err` means nothing was sent and nothing recorded.
    async fn attempt(&self, id: NotificationId) -> Result<(), Postpone> {
        let (state, _, _) = self.bus.load::<Notification>(&id).await?;
        let (Some(kind), Some(to)) = (state.kind, state.to.clone()) else {
            return Err(Postpone::Other(
                "the notification's stream holds no queued event".into(),
            ));
        };
        match state.status {
            // Already done: the row only lingers until the projection sees the event that says
            // so (it deletes the row then).
            Some(NotificationStatus::Sent) => return Ok(()),
            Some(NotificationStatus::Failed { .. }) if state.next_attempt_at.is_none() => {
                return Ok(());
            }
            _ => {}
        }
        if let Some(at) = state.next_attempt_at.filter(|at| *at > Utc::now()) {
            // The stream is ahead of the row (the projection has not applied the last failure
            // yet): wait for the time the stream says.
            self.hold(id.as_uuid(), Some(at)).await;
            return Ok(());
        }
        let attempt = state.attempts + 1;
        let outcome = match self.compose(id, kind, &state).await {
            Ok(email) => self.mailer.send(id, &to, &email).await,
            Err(Compose::Template(message)) => Err(SendError {
                message,
                permanent: true,
            }),
            Err(Compose::Postpone(p)) => return Err(p),
        };
        match outcome {
            Ok(()) => {
                self.record_sent(id, kind, attempt).await;
                Ok(())
            }
            Err(e) => self.record_failed(id, kind, attempt, e).await,
        }
    }

    /// The command context of one attempt's outcome: its id is derived from the notification
    /// and the attempt, so recording the same outcome again appends nothing. The outcome joins
    /// the request that queued the notification (same correlation id, caused by the
    /// `NotificationQueued` event), so an order's history reads as one story.
    async fn context(&self, id: NotificationId, outcome: &str, attempt: u32) -> CommandContext {
        let mut ctx = CommandContext::system("notifications");
        let stream = stream_of::<Notification>(&id);
        match self.bus.store().read_stream(&stream, 0, 1).await {
            Ok(first) => {
                if let Some(queued) = first.first() {
                    ctx.causation_id = Some(queued.id);
                    if let Some(correlation) = queued.metadata.correlation_id {
                        ctx.correlation_id = correlation;
                    }
                }
            }
            // Only the tracing metadata is lost; the outcome is still worth recording.
            Err(e) => {
                tracing::debug!(notification = %id, error = %e, "cannot read the queued event's metadata")
            }
        }
        ctx.command_id = Some(purser_domain::derive_id(&[
            "notification",
            &id.to_string(),
            outcome,
            &attempt.to_string(),
        ]));
        ctx
    }

    /// Records a sent email. The email is already out, so this tries hard: a few retries
    /// in-process, and if the store stays unreachable the row keeps its lease, which expires
    /// into the documented at-least-once resend.
    async fn record_sent(&self, id: NotificationId, kind: NotificationKind, attempt: u32) {
        let ctx = self.context(id, "sent", attempt).await;
        let mut pause = Duration::from_millis(100);
        for tries_left in (0..5).rev() {
            let cmd = NotificationCommand::MarkSent {
                attempt,
                now: Utc::now(),
            };
            match self.bus.execute::<Notification>(&id, &ctx, cmd).await {
                Ok(_) => {
                    tracing::info!(notification = %id, kind = kind.as_str(), attempt, "email sent");
                    return;
                }
                Err(CommandError::Domain(e)) => {
                    tracing::error!(notification = %id, code = %purser_domain::DomainError::code(&e), "a sent email cannot be recorded");
                    return;
                }
                Err(e) if tries_left > 0 => {
                    tracing::warn!(notification = %id, error = %e, "cannot record a sent email yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => {
                    tracing::error!(notification = %id, error = %e, "a sent email could not be recorded; it will be sent again when its lease expires");
                }
            }
        }
    }

    async fn record_failed(
        &self,
        id: NotificationId,
        kind: NotificationKind,
        attempt: u32,
        error: SendError,
    ) -> Result<(), Postpone> {
        let now = Utc::now();
        let give_up = error.permanent || attempt >= self.config.max_attempts;
        let next_attempt_at = (!give_up).then(|| {
            now + chrono::Duration::from_std(self.config.backoff(attempt))
                .unwrap_or(chrono::Duration::hours(1))
        });
        if give_up {
            tracing::error!(notification = %id, kind = kind.as_str(), attempt, error = %error, "giving up on an email");
        } else {
            tracing::warn!(notification = %id, kind = kind.as_str(), attempt, error = %error, "an email could not be sent; will retry");
        }
        let ctx = self.context(id, "failed", attempt).await;
        let cmd = NotificationCommand::MarkFailed {
            attempt,
            error: error.message,
            next_attempt_at,
            now,
        };
        match self.bus.execute::<Notification>(&id, &ctx, cmd).await {
            Ok(_) => Ok(()),
            // Another process sent it meanwhile: nothing left to do.
            Err(CommandError::Domain(NotificationError::AlreadySent)) => Ok(()),
            Err(CommandError::Domain(e)) => Err(Postpone::Other(e.to_string())),
            Err(CommandError::Store(e)) => Err(Postpone::Store(e)),
            Err(e @ CommandError::Conflict { .. }) => Err(Postpone::Other(e.to_string())),
        }
    }

    /// Loads what the template needs and renders the email.
    async fn compose(
        &self,
        id: NotificationId,
        kind: NotificationKind,
        state: &NotificationState,
    ) -> Result<RenderedEmail, Compose> {
        if let Some(link) = state.account {
            return self.compose_account(id, kind, link).await;
        }
        let Some(order_id) = state.order_id else {
            return Err(Compose::Template("an order email without an order".into()));
        };
        let (order, _, _) = self
            .bus
            .load::<Order>(&order_id)
            .await
            .map_err(|e| Compose::Postpone(e.into()))?;
        let license = match (kind, state.license_id) {
            (NotificationKind::LicenseReady, Some(license_id)) => {
                let (license, _, _) = self
                    .bus
                    .load::<License>(&license_id)
                    .await
                    .map_err(|e| Compose::Postpone(e.into()))?;
                if license.revoked {
                    // The customer hears about the refund or cancellation instead; a key that
                    // no longer works would only confuse.
                    return Err(Compose::Template(
                        "the license was revoked before its email went out".into(),
                    ));
                }
                Some(license)
            }
            _ => None,
        };
        let (mut refund, mut payment_failure_message) = (None, None);
        if matches!(
            kind,
            NotificationKind::Refunded | NotificationKind::PaymentFailed
        ) {
            let events = self
                .order_events(&stream_of::<Order>(&order_id))
                .await
                .map_err(Compose::Postpone)?;
            refund = refund_for(id, order_id, &events);
            payment_failure_message = events.iter().rev().find_map(|e| match e {
                OrderEvent::OrderPaymentFailed { message, .. } => Some(message.clone()),
                _ => None,
            });
        }
        templates::render(&TemplateInput {
            notification_id: id,
            kind,
            order: &order,
            license: license.as_ref(),
            refund,
            payment_failure_message,
            download_base_url: &self.config.download_base_url,
        })
        .map_err(|e| Compose::Template(e.to_string()))
    }

    async fn compose_account(
        &self,
        id: NotificationId,
        kind: NotificationKind,
        link: purser_domain::notification::AccountLink,
    ) -> Result<RenderedEmail, Compose> {
        let Some(tokens) = &self.links else {
            return Err(Compose::Template(
                "this process cannot sign account links".into(),
            ));
        };
        let (customer, _, _) = self
            .bus
            .load::<purser_domain::customer::Customer>(&link.customer_id)
            .await
            .map_err(|e| Compose::Postpone(e.into()))?;
        let mail = account_mail::AccountMail {
            notification_id: id,
            kind,
            link,
            name: customer.name.as_deref(),
            base_url: &self.config.download_base_url,
        };
        account_mail::render(&mail, tokens).map_err(|e| Compose::Template(e.to_string()))
    }

    /// The order's events, for details its state folds away (each refund's amount and reason,
    /// the gateway's words for a failed payment).
    async fn order_events(&self, stream: &StreamName) -> Result<Vec<OrderEvent>, Postpone> {
        read_stream_to_end(&**self.bus.store(), stream, 0)
            .await?
            .into_iter()
            .map(|r| {
                OrderEvent::decode(&r.event_type, r.schema_version, r.data).map_err(|e| {
                    Postpone::Other(format!("cannot decode {} in {stream}: {e}", r.id))
                })
            })
            .collect()
    }
}

/// What stopped an email from being composed.
enum Compose {
    /// Loading failed; try again later without counting an attempt.
    Postpone(Postpone),
    /// The order cannot yield this email; retrying will not change that.
    Template(String),
}

/// The refund a `Refunded` notification is about. The checkout derives the notification's id
/// from the refund reference, so the refund whose reference gives this id is the one; should
/// that scheme ever change, the latest refund is the best remaining guess.
fn refund_for(
    id: NotificationId,
    order_id: OrderId,
    events: &[OrderEvent],
) -> Option<(Money, String)> {
    let refunds: Vec<(&Money, &String, &String)> = events
        .iter()
        .filter_map(|e| match e {
            OrderEvent::OrderRefunded {
                amount,
                reason,
                refund_reference,
                ..
            } => Some((amount, reason, refund_reference)),
            _ => None,
        })
        .collect();
    let order = order_id.to_string();
    refunds
        .iter()
        .find(|(_, _, reference)| {
            NotificationId::derived(&[
                "checkout",
                &order,
                "notification",
                NotificationKind::Refunded.as_str(),
                reference,
            ]) == id
        })
        .or(refunds.last())
        .map(|(amount, reason, _)| (**amount, (*reason).clone()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<NotificationConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        NotificationConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_configuration() {
        let c = with(&[]).unwrap();
        assert_eq!(c.smtp.host, "127.0.0.1");
        assert_eq!(c.smtp.port, 1025);
        assert_eq!(c.smtp.tls, smtp::SmtpTls::None);
        assert_eq!(c.smtp.from.to_string(), "Purser <shop@purser.local>");
        assert_eq!(c.download_base_url, "http://127.0.0.1:8080");
        assert_eq!(c.max_attempts, 10);
        assert_eq!(c.base_backoff, Duration::from_millis(1000));
    }

    #[test]
    fn values_are_read_and_checked() {
        let c = with(&[
            ("PURSER_SMTP_HOST", "mail.example.com"),
            ("PURSER_SMTP_PORT", "587"),
            ("PURSER_SMTP_USERNAME", "shop"),
            ("PURSER_SMTP_PASSWORD", "hunter2-secret"),
            ("PURSER_SMTP_TLS", "STARTTLS"),
            ("PURSER_SMTP_FROM", "Shop <noreply@example.com>"),
            ("PURSER_DOWNLOAD_BASE_URL", "https://dl.example.com/"),
            ("PURSER_NOTIFY_MAX_ATTEMPTS", "3"),
            ("PURSER_NOTIFY_BACKOFF_MS", "50"),
        ])
        .unwrap();
        assert_eq!(
            (c.smtp.host.as_str(), c.smtp.port),
            ("mail.example.com", 587)
        );
        assert_eq!(c.smtp.tls, smtp::SmtpTls::StartTls);
        assert_eq!(c.smtp.password.as_ref().unwrap().expose(), "hunter2-secret");
        assert_eq!(c.download_base_url, "https://dl.example.com");
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "the password leaked: {c:?}"
        );
        // Mailer construction accepts every TLS mode for a real host name.
        Mailer::new(&c.smtp).unwrap();
    }

    #[test]
    fn mistakes_are_one_sentence_naming_the_variable() {
        for (var, value) in [
            ("PURSER_SMTP_PORT", "0"),
            ("PURSER_SMTP_PORT", "smtp"),
            ("PURSER_SMTP_TLS", "ssl3"),
            ("PURSER_SMTP_FROM", "not an address"),
            ("PURSER_SMTP_HOST", "two words"),
            ("PURSER_DOWNLOAD_BASE_URL", "ftp://files.example.com"),
            ("PURSER_DOWNLOAD_BASE_URL", "https://user:pw@example.com"),
            ("PURSER_NOTIFY_MAX_ATTEMPTS", "0"),
            ("PURSER_NOTIFY_BACKOFF_MS", "-5"),
            ("PURSER_SMTP_TIMEOUT_MS", "1"),
        ] {
            let e = with(&[(var, value)]).unwrap_err().0;
            assert!(e.contains(var), "{var}={value}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let e = with(&[("PURSER_SMTP_PASSWORD", "hunter2-secret")])
            .unwrap_err()
            .0;
        assert!(e.contains("PURSER_SMTP_USERNAME"), "{e}");
        assert!(!e.contains("hunter2"), "the password leaked: {e}");
        let e = with(&[("PURSER_SMTP_USERNAME", "shop")]).unwrap_err().0;
        assert!(e.contains("PURSER_SMTP_PASSWORD"), "{e}");
        let e = with(&[
            ("PURSER_NOTIFY_BACKOFF_MS", "5000"),
            ("PURSER_NOTIFY_MAX_BACKOFF_MS", "10"),
        ])
        .unwrap_err()
        .0;
        assert!(e.contains("PURSER_NOTIFY_MAX_BACKOFF_MS"), "{e}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = NotificationConfig {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            ..Default::default()
        };
        let waits: Vec<u128> = (1..=5).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        assert_eq!(
            NotificationConfig::default().backoff(1000),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn a_refund_notification_finds_its_own_refund() {
        let order_id = OrderId::derived(&["refund-order"]);
        let usd = purser_domain::Currency::parse("USD").unwrap();
        let refund = |minor: i64, reference: &str| OrderEvent::OrderRefunded {
            order_id,
            amount: Money::new(minor, usd),
            reason: format!("reason {reference}"),
            refund_reference: reference.into(),
            at: Utc::now(),
        };
        let events = vec![refund(500, "admin-1"), refund(700, "admin-2")];
        let id_for = |reference: &str| {
            NotificationId::derived(&[
                "checkout",
                &order_id.to_string(),
                "notification",
                "refunded",
                reference,
            ])
        };
        assert_eq!(
            refund_for(id_for("admin-1"), order_id, &events),
            Some((Money::new(500, usd), "reason admin-1".into()))
        );
        assert_eq!(
            refund_for(id_for("admin-2"), order_id, &events)
                .unwrap()
                .0
                .minor,
            700
        );
        // An id from another scheme falls back to the latest refund.
        assert_eq!(
            refund_for(NotificationId::new(), order_id, &events)
                .unwrap()
                .0
                .minor,
            700
        );
        assert_eq!(refund_for(id_for("x"), order_id, &[]), None);
    }
}
