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
        match decode(event)? {
            AnyEvent::Product(e) => apply_product(tx, e).await,
            AnyEvent::Inventory(e) => apply_stock(tx, e).await,
            _ => Ok(()),
        }
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

/// Moves stock by (on hand, reserved) deltas, creating the row on first sight.
///
/// Update first, insert only when there was no row: Postgres checks a CHECK constraint on the
/// row an INSERT proposes before `ON CONFLICT` turns it into an update, so an upsert of a bare
/// reservation delta would trip `stock_consistent`.
async fn move_stock(
    tx: &mut PgConnection,
    sku: &str,
    on_hand: i64,
    reserved: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    let updated = sqlx::query(
        "update catalog.stock
         set on_hand = on_hand + $2, reserved = reserved + $3, updated_at = $4
         where sku = $1",
    )
    .bind(sku)
    .bind(on_hand)
    .bind(reserved)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        sqlx::query(
            "insert into catalog.stock (sku, on_hand, reserved, updated_at) values ($1, $2, $3, $4)",
        )
        .bind(sku)
        .bind(on_hand)
        .bind(reserved)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn apply_stock(tx: &mut PgConnection, e: InventoryEvent) -> Result<(), ProjectionError> {
    let qty = |q: purser_domain::Quantity| i64::from(q.get());
    match e {
        InventoryEvent::StockReceived { sku, qty: q, at } => {
            move_stock(tx, sku.as_str(), qty(q), 0, at).await?
        }
        InventoryEvent::StockAdjusted { sku, delta, at, .. } => {
            move_stock(tx, sku.as_str(), delta, 0, at).await?
        }
        InventoryEvent::StockReserved {
            sku, qty: q, at, ..
        } => move_stock(tx, sku.as_str(), 0, qty(q), at).await?,
        InventoryEvent::ReservationConfirmed {
            sku, qty: q, at, ..
        } => move_stock(tx, sku.as_str(), -qty(q), -qty(q), at).await?,
        InventoryEvent::ReservationReleased {
            sku, qty: q, at, ..
        } => move_stock(tx, sku.as_str(), 0, -qty(q), at).await?,
        InventoryEvent::ReservationRejected { .. } => {}
    }
    Ok(())
}
