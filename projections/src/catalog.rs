//! The catalog read model: `catalog.products` and `catalog.stock`.
//!
//! Every value written comes from the events themselves (never the clock), so a rebuild from
//! zero produces exactly the same rows.

use async_trait::async_trait;
use purser_domain::events::AnyEvent;
use purser_domain::inventory::InventoryEvent;
use purser_domain::product::{ProductEvent, ProductKind};
use purser_event_store::{EventFilter, RecordedEvent};
use sqlx::PgConnection;
use tracing::Instrument;

use crate::{Projection, ProjectionError, decode};

pub struct CatalogProjection;

impl CatalogProjection {
    pub const NAME: &'static str = "catalog";
}

#[async_trait]
impl Projection for CatalogProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::categories(["product", "inventory"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["catalog.products", "catalog.stock"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(tx, &[event]).await
    }

    /// Product events one by one; the batch's stock movements summed per SKU and written in
    /// one statement after them (the two tables never read each other).
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut stock = StockMoves::default();
        for event in events {
            let span = crate::project_span(Self::NAME, event);
            let at = |err| crate::failed_at(Self::NAME, event, err);
            match decode(event).map_err(at)? {
                AnyEvent::Product(e) => apply_product(tx, e).instrument(span).await.map_err(at)?,
                AnyEvent::Inventory(e) => span.in_scope(|| stock.add(e)),
                _ => {}
            }
        }
        stock
            .write(tx)
            .await
            .map_err(|err| crate::failed_in(Self::NAME, events, err.into()))
    }
}

async fn apply_product(tx: &mut PgConnection, e: ProductEvent) -> Result<(), ProjectionError> {
    match e {
        ProductEvent::ProductCreated {
            sku,
            name,
            description,
            brand,
            category,
            kind,
            price,
            at,
        } => {
            let (kind, license_source) = match kind {
                ProductKind::Physical => ("physical", None),
                ProductKind::Digital { license, .. } => ("digital", Some(license_source(&license))),
            };
            sqlx::query(
                "insert into catalog.products
                    (sku, name, description, brand, category, kind, license_source, price_minor,
                     currency, created_at, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
            )
            .bind(sku.as_str())
            .bind(name)
            .bind(description)
            .bind(brand)
            .bind(category)
            .bind(kind)
            .bind(license_source)
            .bind(price.minor)
            .bind(price.currency.code())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        ProductEvent::ProductDetailsUpdated {
            sku,
            name,
            description,
            brand,
            category,
            at,
        } => {
            sqlx::query(
                "update catalog.products
                 set name = coalesce($2, name), description = coalesce($3, description),
                     brand = coalesce($4, brand), category = coalesce($5, category),
                     updated_at = $6
                 where sku = $1",
            )
            .bind(sku.as_str())
            .bind(name)
            .bind(description)
            .bind(brand)
            .bind(category)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        ProductEvent::ProductPriceChanged { sku, new, at, .. } => {
            sqlx::query(
                "update catalog.products set price_minor = $2, currency = $3, updated_at = $4 where sku = $1",
            )
            .bind(sku.as_str())
            .bind(new.minor)
            .bind(new.currency.code())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        ProductEvent::ProductDiscontinued { sku, at, .. } => {
            set_discontinued(tx, sku.as_str(), true, at).await?;
        }
        ProductEvent::ProductReactivated { sku, at } => {
            set_discontinued(tx, sku.as_str(), false, at).await?;
        }
    }
    Ok(())
}

fn license_source(l: &purser_domain::product::LicenseSource) -> &'static str {
    match l {
        purser_domain::product::LicenseSource::Pool => "pool",
        purser_domain::product::LicenseSource::Signed => "signed",
    }
}

async fn set_discontinued(
    tx: &mut PgConnection,
    sku: &str,
    discontinued: bool,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("update catalog.products set discontinued = $2, updated_at = $3 where sku = $1")
        .bind(sku)
        .bind(discontinued)
        .bind(at)
        .execute(tx)
        .await?;
    Ok(())
}

/// A batch's stock movements: (on hand, reserved) deltas summed per SKU, with the time of the
/// SKU's last movement. Applying the sums gives the rows applying each movement in turn gives.
#[derive(Default)]
struct StockMoves {
    by_sku: Vec<(String, i64, i64, chrono::DateTime<chrono::Utc>)>,
    index: std::collections::HashMap<String, usize>,
}

impl StockMoves {
    fn add(&mut self, e: InventoryEvent) {
        let qty = |q: purser_domain::Quantity| i64::from(q.get());
        let (sku, on_hand, reserved, at) = match e {
            InventoryEvent::StockReceived { sku, qty: q, at } => (sku, qty(q), 0, at),
            InventoryEvent::StockAdjusted { sku, delta, at, .. } => (sku, delta, 0, at),
            InventoryEvent::StockReserved {
                sku, qty: q, at, ..
            } => (sku, 0, qty(q), at),
            InventoryEvent::ReservationConfirmed {
                sku, qty: q, at, ..
            } => (sku, -qty(q), -qty(q), at),
            InventoryEvent::ReservationReleased {
                sku, qty: q, at, ..
            } => (sku, 0, -qty(q), at),
            InventoryEvent::ReservationRejected { .. } => return,
        };
        match self.index.get(sku.as_str()) {
            Some(&i) => {
                let row = &mut self.by_sku[i];
                row.1 += on_hand;
                row.2 += reserved;
                row.3 = at;
            }
            None => {
                self.index
                    .insert(sku.as_str().to_owned(), self.by_sku.len());
                self.by_sku
                    .push((sku.as_str().to_owned(), on_hand, reserved, at));
            }
        }
    }

    /// One statement: moves the SKUs that have a row, creates the others.
    ///
    /// Update first, insert only where there was no row: Postgres checks a CHECK constraint on
    /// the row an INSERT proposes before `ON CONFLICT` turns it into an update, so an upsert of
    /// a bare reservation delta would trip `stock_consistent`.
    async fn write(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.by_sku.is_empty() {
            return Ok(());
        }
        let mut skus = Vec::with_capacity(self.by_sku.len());
        let mut on_hand = Vec::with_capacity(self.by_sku.len());
        let mut reserved = Vec::with_capacity(self.by_sku.len());
        let mut at = Vec::with_capacity(self.by_sku.len());
        for (s, o, r, t) in self.by_sku {
            skus.push(s);
            on_hand.push(o);
            reserved.push(r);
            at.push(t);
        }
        sqlx::query(
            "with d as (
                 select * from unnest($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[])
                     as d(sku, on_hand, reserved, at)),
             moved as (
                 update catalog.stock s
                 set on_hand = s.on_hand + d.on_hand, reserved = s.reserved + d.reserved,
                     updated_at = d.at
                 from d where s.sku = d.sku
                 returning s.sku)
             insert into catalog.stock (sku, on_hand, reserved, updated_at)
             select d.sku, d.on_hand, d.reserved, d.at from d
             where d.sku not in (select sku from moved)",
        )
        .bind(skus)
        .bind(on_hand)
        .bind(reserved)
        .bind(at)
        .execute(tx)
        .await?;
        Ok(())
    }
}
