//! The analytics facts: `analytics.fact_orders`, `fact_order_lines`, `fact_payments`,
//! `fact_cart_events` and `fact_inventory_movements`. The views analysts query are defined
//! over them in `migrations/0006_analytics.sql`.
//!
//! Event facts are keyed by the id of the event they come from, which the log keeps forever,
//! and every value comes from the event data, so a rebuild gives byte-identical rows. Where an
//! event leaves out something worth having next to it (the amount of a failed payment, the
//! quantity a removed cart line had), it is looked up in this projection's own facts.
//!
//! One module per fact table: `orders` (orders and their lines), `payments`, `carts` and
//! `inventory`; this one routes a batch's events to them and writes what they gathered.

use async_trait::async_trait;
use purser_domain::events::AnyEvent;
use purser_domain::order::OrderEvent;
use purser_event_store::{EventFilter, RecordedEvent};
use sqlx::PgConnection;
use tracing::Instrument;

use crate::{Projection, ProjectionError, decode};

mod carts;
mod inventory;
mod orders;
mod payments;

use carts::apply_cart;
use inventory::Movements;
use orders::{OrderUpdates, Placements};
use payments::Payments;

pub struct AnalyticsProjection;

impl AnalyticsProjection {
    pub const NAME: &'static str = "analytics";
}

#[async_trait]
impl Projection for AnalyticsProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::categories(["order", "payment", "cart", "inventory"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "analytics.fact_orders",
            "analytics.fact_order_lines",
            "analytics.fact_payments",
            "analytics.fact_cart_events",
            "analytics.fact_inventory_movements",
        ]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(tx, &[event]).await
    }

    /// Cart events one by one; then the batch's placed orders inserted with their lines in
    /// one statement, its other order events folded per order into one `fact_orders` update
    /// (after the inserts, as they come after the placing in the log), and its payment facts
    /// and inventory movements inserted, one statement each (no other write reads those
    /// tables).
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut movements = Movements::default();
        let mut payments = Payments::default();
        let mut orders = OrderUpdates::default();
        let mut placed = Placements::default();
        for event in events {
            let span = crate::project_span(Self::NAME, event);
            let at = |err| crate::failed_at(Self::NAME, event, err);
            match decode(event).map_err(at)? {
                AnyEvent::Order(e @ OrderEvent::OrderPlaced { .. }) => {
                    span.in_scope(|| placed.add(e))
                }
                AnyEvent::Order(e) => span.in_scope(|| orders.add(&e)),
                AnyEvent::Payment(e) => span.in_scope(|| payments.add(event.id, e)),
                AnyEvent::Cart(e) => apply_cart(tx, event.id, e)
                    .instrument(span)
                    .await
                    .map_err(at)?,
                AnyEvent::Inventory(e) => span.in_scope(|| movements.add(event.id, e)),
                _ => {}
            }
        }
        let written = async {
            placed.write(tx).await?;
            orders.write(tx).await?;
            payments.write(tx).await?;
            movements.write(tx).await
        }
        .await;
        written.map_err(|err| crate::failed_in(Self::NAME, events, err.into()))
    }
}
