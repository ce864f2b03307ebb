//! The real RabbitMQ on 127.0.0.1:5672 (guest/guest), for the broker tests.
//!
//! Each test uses an exchange and a queue of its own, so tests run side by side. Without a
//! broker the tests say so and pass, unless `PURSER_REQUIRE_RABBITMQ=1` (scripts/test.sh sets
//! it once it has made sure a broker runs), which makes a missing broker a failure.

use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

pub const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Whether a broker answers; panics when one is required and none does.
pub fn available(test: &str) -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_ok();
    if !up {
        assert!(
            std::env::var("PURSER_REQUIRE_RABBITMQ").as_deref() != Ok("1"),
            "{test}: no RabbitMQ on 127.0.0.1:5672 and PURSER_REQUIRE_RABBITMQ=1"
        );
        eprintln!(
            "SKIPPED {test}: no RabbitMQ answers on 127.0.0.1:5672 (scripts/test.sh starts one)"
        );
    }
    up
}

async fn channel() -> (Connection, Channel) {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let conn = Connection::connect(URL, props)
        .await
        .expect("RabbitMQ connects");
    let ch = conn.create_channel().await.expect("a channel");
    (conn, ch)
}

/// A message as a consumer sees it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub routing_key: String,
    pub correlation_id: Option<String>,
    pub body: Value,
}

/// A test's own topic exchange and a durable queue bound to every routing key.
pub struct TestQueue {
    pub exchange: String,
    pub queue: String,
}

impl TestQueue {
    pub async fn new() -> TestQueue {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let q = TestQueue {
            exchange: format!("purser.test.{id}"),
            queue: format!("purser-test-{id}"),
        };
        let (conn, ch) = channel().await;
        // Declared as the publisher declares it (durable topic), so both agree.
        ch.exchange_declare(
            &q.exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_declare(
            &q.queue,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            &q.queue,
            &q.exchange,
            "#",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let _ = conn.close(200, "set up").await;
        q
    }

    /// Takes every message waiting in the queue.
    pub async fn drain(&self) -> Vec<Received> {
        let (conn, ch) = channel().await;
        let mut out = Vec::new();
        while let Some(m) = ch
            .basic_get(&self.queue, BasicGetOptions::default())
            .await
            .unwrap()
        {
            let props = &m.delivery.properties;
            out.push(Received {
                message_id: props
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                routing_key: m.delivery.routing_key.to_string(),
                correlation_id: props.correlation_id().as_ref().map(|s| s.to_string()),
                body: serde_json::from_slice(&m.delivery.data).expect("a JSON body"),
            });
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        let _ = conn.close(200, "drained").await;
        out
    }

    /// Drains until `done` holds for everything received so far (up to 60 s).
    pub async fn collect_until(&self, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut all = Vec::new();
        loop {
            all.extend(self.drain().await);
            if done(&all) {
                return all;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the broker never got everything; got {:#?}",
                all.iter()
                    .map(|m| (&m.routing_key, &m.body["key"]))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn delete(self) {
        let (conn, ch) = channel().await;
        let _ = ch
            .queue_delete(&self.queue, QueueDeleteOptions::default())
            .await;
        let _ = ch
            .exchange_delete(&self.exchange, ExchangeDeleteOptions::default())
            .await;
        let _ = conn.close(200, "done").await;
    }
}

/// Closes every client connection of the broker (the publisher's among them), as a broker
/// restart or a network cut would. Returns false when rabbitmqctl is not there to do it.
pub fn cut_connections() -> bool {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["close_all_connections", "purser test: connection cut"])
        .output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!("rabbitmqctl failed: {}", String::from_utf8_lossy(&o.stderr));
            false
        }
        Err(e) => {
            eprintln!("rabbitmqctl not runnable: {e}");
            false
        }
    }
}
