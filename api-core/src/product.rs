//! The catalog's product as both halves of the schema return it: the catalog queries list it,
//! and product mutations return the product they changed once the catalog has caught up.

use async_graphql::{Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::wire::{MoneyV2, global_id};

/// The projections catalog queries read.
pub const CATALOG_PROJECTIONS: &[&str] = &["catalog"];

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProductKind {
    /// Shipped goods with stock.
    Physical,
    /// Software delivered as a license key; no stock.
    Digital,
}

/// Stock of a physical product.
#[derive(SimpleObject, Debug, Clone, PartialEq, Eq)]
pub struct Stock {
    pub on_hand: i64,
    /// Held for orders that have not been paid yet.
    pub reserved: i64,
    /// on hand − reserved: what can be sold now.
    pub available: i64,
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct ProductRow {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub brand: String,
    pub category: String,
    pub kind: String,
    pub license_source: Option<String>,
    pub price_minor: i64,
    pub currency: String,
    pub discontinued: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub on_hand: i64,
    pub reserved: i64,
}

/// The columns every product query selects, joined with stock.
pub const PRODUCT_COLUMNS: &str = "p.sku, p.name, p.description, p.brand, p.category, p.kind, \
     p.license_source, p.price_minor, p.currency, p.discontinued, p.created_at, p.updated_at, \
     coalesce(s.on_hand, 0) as on_hand, coalesce(s.reserved, 0) as reserved";

/// A product of the catalog.
pub struct Product(pub ProductRow);

#[Object]
impl Product {
    /// Opaque global id.
    async fn id(&self) -> ID {
        global_id("Product", &self.0.sku)
    }
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn brand(&self) -> &str {
        &self.0.brand
    }
    async fn category(&self) -> &str {
        &self.0.category
    }
    async fn kind(&self) -> ProductKind {
        if self.0.kind == "digital" {
            ProductKind::Digital
        } else {
            ProductKind::Physical
        }
    }
    async fn price(&self) -> MoneyV2 {
        MoneyV2::new(self.0.price_minor, &self.0.currency)
    }
    async fn discontinued(&self) -> bool {
        self.0.discontinued
    }
    /// Stock for physical products; null for digital ones, which never run out.
    async fn stock(&self) -> Option<Stock> {
        (self.0.kind == "physical").then(|| Stock {
            on_hand: self.0.on_hand,
            reserved: self.0.reserved,
            available: self.0.on_hand - self.0.reserved,
        })
    }
    /// Whether it can be bought now: not discontinued and (digital, or stock available).
    async fn available_for_sale(&self) -> bool {
        !self.0.discontinued && (self.0.kind == "digital" || self.0.on_hand > self.0.reserved)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// Loads one product by SKU from the read model.
pub async fn load_product(
    pool: &sqlx::PgPool,
    sku: &str,
) -> Result<Option<ProductRow>, sqlx::Error> {
    sqlx::query_as::<_, ProductRow>(&format!(
        "select {PRODUCT_COLUMNS} from catalog.products p
         left join catalog.stock s using (sku) where p.sku = $1"
    ))
    .bind(sku.trim().to_ascii_uppercase())
    .fetch_optional(pool)
    .await
}
