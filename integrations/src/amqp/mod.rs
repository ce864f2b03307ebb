//! Publishing integration events to RabbitMQ.
//!
//! The publisher is a projection ([`AmqpPublisher`]) run by the ordinary projector runtime, so
//! it gets the runtime's guarantees for free: one process at a time (the claim), a checkpoint
//! of its own, back-off on failure, lag in `purser status` and `/metrics`. Its batch is:
//! map the events, publish them in log order on a channel in confirm mode, wait until the
//! broker has confirmed every one, and only then return, so the runtime commits the
//! checkpoint after the confirms. Any failure (no broker, a closed connection, a nack, a
//! confirm that does not come in time) fails the batch: the checkpoint stays, the link is
//! dropped and made again on the next try, and the whole batch is published again. Delivery
//! is therefore at least once and in log order; consumers de-duplicate on `message_id`.

mod link;

use std::time::Duration;

use async_trait::async_trait;
use purser_event_store::{EventFilter, RecordedEvent};
use purser_projections::{Projection, ProjectionError, decode};
use sqlx::PgConnection;
use tokio::sync::Mutex;

use crate::contract::IntegrationEvent;
use crate::map::{self, Mapper};
use crate::stock::StockTable;

pub use link::Link;

/// Where and how to publish.
#[derive(Clone)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:5672/vhost`. Holds a password: never logged.
    pub url: String,
    /// The topic exchange (declared durable if missing). Routing key = event type.
    pub exchange: String,
    /// How long connecting, and waiting for a batch's confirms, may take.
    pub timeout: Duration,
    pub mapper: Mapper,
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("exchange", &self.exchange)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

pub const DEFAULT_EXCHANGE: &str = "purser.events";

/// Whether `url` is an AMQP URL the client can use (the reason when not; it may quote the URL,
/// so callers print their own message instead).
pub fn check_url(url: &str) -> Result<(), String> {
    url.parse::<lapin::uri::AMQPUri>().map(|_| ())
}

/// The projection that publishes.
pub struct AmqpPublisher {
    config: AmqpConfig,
    link: Mutex<Option<Link>>,
}

impl AmqpPublisher {
    pub const NAME: &'static str = "amqp_publisher";
    const STOCK: StockTable = StockTable("integrations.amqp_stock");

    pub fn new(config: AmqpConfig) -> AmqpPublisher {
        AmqpPublisher {
            config,
            link: Mutex::new(None),
        }
    }

    /// Publishes `events` and waits for their confirms, over the current link or a new one.
    /// On failure the link is dropped, so the next try starts on a fresh connection.
    async fn publish(&self, events: &[IntegrationEvent]) -> Result<(), ProjectionError> {
        let mut link = self.link.lock().await;
        if link.as_ref().is_none_or(|l| !l.is_usable()) {
            *link = Some(Link::open(&self.config).await.map_err(amqp_error)?);
        }
        let open = link.as_ref().expect("just opened");
        let sent = open.publish_confirmed(events, self.config.timeout).await;
        if sent.is_err()
            && let Some(l) = link.take()
        {
            l.close().await;
        }
        sent.map_err(amqp_error)
    }
}

fn amqp_error(e: link::LinkError) -> ProjectionError {
    metrics::counter!("purser_amqp_failures_total").increment(1);
    ProjectionError::Other(format!("RabbitMQ: {e}"))
}

#[async_trait]
impl Projection for AmqpPublisher {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        map::filter()
    }

    fn tables(&self) -> &'static [&'static str] {
        &["integrations.amqp_stock"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(tx, &[event]).await
    }

    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let decoded = events
            .iter()
            .map(|e| decode(e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut stock = Self::STOCK.load(tx, &map::skus_of(&decoded)).await?;
        let public: Vec<IntegrationEvent> = events
            .iter()
            .zip(&decoded)
            .filter_map(|(e, d)| self.config.mapper.map(e, d, &mut stock))
            .collect();
        if !public.is_empty() {
            self.publish(&public).await?;
            metrics::counter!("purser_amqp_published_total").increment(public.len() as u64);
        }
        Self::STOCK.store(tx, &stock).await?;
        Ok(())
    }
}
