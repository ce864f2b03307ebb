//! One connection and one confirm-mode channel to the broker.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use super::AmqpConfig;
use crate::contract::IntegrationEvent;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Amqp(#[from] lapin::Error),
    #[error("timed out after {0:?} {1}")]
    Timeout(Duration, &'static str),
    #[error("the broker refused (nack) message {0}")]
    Nacked(uuid::Uuid),
}

/// A connection and its publishing channel.
pub struct Link {
    connection: Connection,
    channel: Channel,
    exchange: String,
}

impl Link {
    /// Connects, opens a channel in confirm mode and declares the exchange.
    pub async fn open(config: &AmqpConfig) -> Result<Link, LinkError> {
        let open = async {
            let props = ConnectionProperties::default()
                .with_executor(tokio_executor_trait::Tokio::current())
                .with_reactor(tokio_reactor_trait::Tokio)
                .with_connection_name("purser publisher".into());
            let connection = Connection::connect(&config.url, props).await?;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            channel
                .exchange_declare(
                    &config.exchange,
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, LinkError>(Link {
                connection,
                channel,
                exchange: config.exchange.clone(),
            })
        };
        let link = tokio::time::timeout(config.timeout, open)
            .await
            .map_err(|_| LinkError::Timeout(config.timeout, "connecting"))??;
        tracing::info!(exchange = %config.exchange, "connected to RabbitMQ");
        Ok(link)
    }

    pub fn is_usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    /// Publishes every event in order, then waits for all their confirms.
    pub async fn publish_confirmed(
        &self,
        events: &[IntegrationEvent],
        timeout: Duration,
    ) -> Result<(), LinkError> {
        let mut pending = Vec::with_capacity(events.len());
        for e in events {
            let confirm = self
                .channel
                .basic_publish(
                    &self.exchange,
                    e.event_type.name(),
                    BasicPublishOptions::default(),
                    &e.to_json(),
                    properties(e),
                )
                .await?;
            pending.push((e.id, confirm));
        }
        let confirms = async {
            for (id, confirm) in pending {
                match confirm.await? {
                    Confirmation::Ack(_) => {}
                    Confirmation::Nack(_) => return Err(LinkError::Nacked(id)),
                    // A channel not in confirm mode answers this; ours always is.
                    Confirmation::NotRequested => {}
                }
            }
            Ok(())
        };
        tokio::time::timeout(timeout, confirms)
            .await
            .map_err(|_| LinkError::Timeout(timeout, "waiting for publisher confirms"))?
    }

    pub async fn close(self) {
        let _ = self
            .connection
            .close(200, "purser publisher reconnects")
            .await;
    }
}

/// The AMQP properties of one event: persistent, JSON, and the ids consumers use.
fn properties(e: &IntegrationEvent) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("version".into(), AMQPValue::LongUInt(e.version));
    headers.insert("key".into(), AMQPValue::LongString(e.key.clone().into()));
    let props = BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(2)
        .with_message_id(ShortString::from(e.id.to_string()))
        .with_type(ShortString::from(e.event_type.name()))
        .with_timestamp(e.occurred_at.timestamp().max(0) as u64)
        .with_app_id(ShortString::from("purser"))
        .with_headers(headers);
    match e.correlation_id {
        Some(c) => props.with_correlation_id(ShortString::from(c.to_string())),
        None => props,
    }
}
