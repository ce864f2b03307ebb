//! Row 4's baseline: the catalog, order and analytics read-model rows written by hand, with
//! the same statements the projections issue (`projections/src/{catalog,orders,analytics}`),
//! for the events the generator makes (the order model's fold is in `sales`). No
//! projector runtime: no subscription, no visibility
//! horizon, no claim, no checkpoint, no trait objects. After a run the bench compares every
//! table's checksum with the projections' own result, so "the same rows" is checked, not
//! assumed.
//!
//! One module per table group: `catalog` (products and stock), `sales` (the order read
//! model), `fact_orders`, `fact_payments` and `fact_inventory` (the analytics facts).

mod catalog;
mod fact_inventory;
mod fact_orders;
mod fact_payments;
mod sales;

use anyhow::bail;
use purser_domain::AnyEvent;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Model {
    Catalog,
    Orders,
    Analytics,
}

impl Model {
    pub(crate) const ALL: [Model; 3] = [Model::Catalog, Model::Orders, Model::Analytics];

    /// The stream categories each model reads (as its projection's filter).
    pub(crate) fn categories(self) -> &'static [&'static str] {
        match self {
            Model::Catalog => &["product", "inventory"],
            Model::Orders => &["order", "payment"],
            Model::Analytics => &["order", "payment", "cart", "inventory"],
        }
    }

    /// Writes one event's rows, or adds them to `page` when the projection writes them for a
    /// whole batch at once (stock moves, inventory movement facts).
    pub(crate) async fn apply(
        self,
        tx: &mut PgConnection,
        page: &mut Page,
        event_id: Uuid,
        event_type: &str,
        event: &AnyEvent,
    ) -> anyhow::Result<()> {
        match (self, event) {
            (Model::Catalog, AnyEvent::Product(e)) => catalog::insert_product(tx, e).await,
            (Model::Catalog, AnyEvent::Inventory(e)) => page.stock.add(e),
            (Model::Orders, AnyEvent::Order(e)) => {
                page.sales.order(event_type, e);
                Ok(())
            }
            (Model::Orders, AnyEvent::Payment(e)) => {
                page.sales.payment(event_type, e);
                Ok(())
            }
            (Model::Analytics, AnyEvent::Order(e)) => page.fact_orders.add(e),
            (Model::Analytics, AnyEvent::Payment(e)) => page.payments.add(event_id, e),
            (Model::Analytics, AnyEvent::Inventory(e)) => page.movements.add(event_id, e),
            (_, other) => bail!(
                "the raw baseline does not handle {} (the generator does not make it)",
                other.event_type()
            ),
        }
    }
}

/// What a page writes at its end, as the projections do for a batch.
#[derive(Default)]
pub(crate) struct Page {
    /// Stock deltas summed per SKU.
    stock: catalog::StockDeltas,
    /// Inventory movement facts, one per event.
    movements: fact_inventory::Movements,
    /// Payment facts, one per event.
    payments: fact_payments::Payments,
    /// Orders placed in the page (inserted with their lines in one statement), and the other
    /// order facts' changes, folded per order.
    fact_orders: fact_orders::FactOrders,
    /// The order read model's events.
    sales: sales::SalesPage,
}

impl Page {
    /// The page's batched writes, one statement each.
    pub(crate) async fn finish(self, tx: &mut PgConnection) -> anyhow::Result<()> {
        self.sales.finish(&mut *tx).await?;
        self.fact_orders.finish(&mut *tx).await?;
        self.payments.finish(&mut *tx).await?;
        self.stock.finish(&mut *tx).await?;
        self.movements.finish(&mut *tx).await
    }
}
