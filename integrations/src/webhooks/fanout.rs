//! The projection that turns integration events into webhook deliveries.
//!
//! Endpoints are read as they are when an event is fanned out: an endpoint receives the
//! events that happen while it is registered and enabled (as Stripe and Shopify do), not the
//! history before it. Deliveries are command-side state, never truncated by a rebuild; the
//! unique (endpoint, event id) key makes a fan-out of the same events again add nothing.

use async_trait::async_trait;
use purser_event_store::{EventFilter, RecordedEvent};
use purser_projections::{Projection, ProjectionError, decode};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::contract::IntegrationEvent;
use crate::map::{self, Mapper};
use crate::stock::StockTable;

pub struct WebhookFanout {
    pub mapper: Mapper,
}

impl WebhookFanout {
    pub const NAME: &'static str = "webhook_fanout";
    const STOCK: StockTable = StockTable("integrations.webhook_stock");
}

#[async_trait]
impl Projection for WebhookFanout {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        map::filter()
    }

    fn tables(&self) -> &'static [&'static str] {
        &["integrations.webhook_stock"]
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
            .filter_map(|(e, d)| self.mapper.map(e, d, &mut stock))
            .collect();
        Self::STOCK.store(tx, &stock).await?;
        if !public.is_empty() {
            insert_deliveries(tx, &public).await?;
        }
        Ok(())
    }
}

/// One row per (event, enabled endpoint subscribed to its type), in event order, so delivery
/// ids follow the log.
async fn insert_deliveries(
    tx: &mut PgConnection,
    events: &[IntegrationEvent],
) -> Result<(), sqlx::Error> {
    let ord: Vec<i32> = (0..events.len() as i32).collect();
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.name()).collect();
    let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    let bodies: Vec<String> = events
        .iter()
        .map(|e| String::from_utf8(e.to_json()).expect("JSON is UTF-8"))
        .collect();
    sqlx::query(
        "insert into integrations.webhook_deliveries (endpoint_id, event_id, event_type, ordering_key, body)
         select ep.id, e.id, e.type, e.key, e.body
         from unnest($1::int[], $2::uuid[], $3::text[], $4::text[], $5::text[]) as e(ord, id, type, key, body)
         join integrations.webhook_endpoints ep
           on ep.enabled and (cardinality(ep.event_types) = 0 or e.type = any(ep.event_types))
         order by e.ord, ep.id
         on conflict (endpoint_id, event_id) do nothing",
    )
    .bind(ord)
    .bind(ids)
    .bind(types)
    .bind(keys)
    .bind(bodies)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
