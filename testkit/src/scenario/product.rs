//! Products, made with a builder: `s.product("LAP-13").name("Laptop 13").price(100_000)
//! .stock(10).at(-60).create().await`.

use purser_domain::inventory::InventoryEvent;
use purser_domain::product::{ProductEvent, ProductKind};
use purser_event_store::Position;

use super::{Scenario, qty, sku, t, terms, usd};

/// A product to add to the catalog. Unset, the name is the SKU, brand and category are empty,
/// the price is zero, the product is physical with no stock, and it is created at the origin.
#[must_use = "a product is only appended by `create`"]
pub struct NewProduct<'s> {
    scenario: &'s Scenario,
    code: String,
    name: String,
    brand: String,
    category: String,
    price_minor: i64,
    digital: bool,
    stock: i64,
    at: i64,
}

impl Scenario {
    /// A product with this SKU, to describe and then `create`.
    pub fn product(&self, code: &str) -> NewProduct<'_> {
        NewProduct {
            scenario: self,
            code: code.to_owned(),
            name: code.to_owned(),
            brand: String::new(),
            category: String::new(),
            price_minor: 0,
            digital: false,
            stock: 0,
            at: 0,
        }
    }
}

impl NewProduct<'_> {
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    pub fn brand(mut self, brand: &str) -> Self {
        self.brand = brand.to_owned();
        self
    }

    pub fn category(mut self, category: &str) -> Self {
        self.category = category.to_owned();
        self
    }

    /// The price in US cents.
    pub fn price(mut self, minor: i64) -> Self {
        self.price_minor = minor;
        self
    }

    /// Digital (licensed from a pool) rather than physical.
    pub fn digital(mut self, digital: bool) -> Self {
        self.digital = digital;
        self
    }

    /// Units received when the product is created (physical products only).
    pub fn stock(mut self, units: i64) -> Self {
        self.stock = units;
        self
    }

    /// Minutes after the origin.
    pub fn at(mut self, minutes: i64) -> Self {
        self.at = minutes;
        self
    }

    /// Appends the product, and its stock when physical; returns the last position.
    pub async fn create(self) -> Position {
        let s = sku(&self.code);
        let kind = if self.digital {
            ProductKind::digital(terms())
        } else {
            ProductKind::Physical
        };
        let mut last = self
            .scenario
            .append(
                s.product_stream(),
                [ProductEvent::ProductCreated {
                    sku: s.clone(),
                    name: self.name.clone(),
                    description: format!("{} by {}", self.name, self.brand),
                    brand: self.brand,
                    category: self.category,
                    kind,
                    price: usd(self.price_minor),
                    at: t(self.at),
                }
                .into()],
            )
            .await;
        if !self.digital && self.stock > 0 {
            last = self
                .scenario
                .append(
                    s.inventory_stream(),
                    [InventoryEvent::StockReceived {
                        sku: s.clone(),
                        qty: qty(self.stock),
                        at: t(self.at),
                    }
                    .into()],
                )
                .await;
        }
        last
    }
}
