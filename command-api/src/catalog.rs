//! Catalog and stock commands: products, prices, stock receipts and adjustments.

use chrono::{DateTime, Utc};
use purser_domain::inventory::{AdjustmentReason, Inventory, InventoryCommand};
use purser_domain::product::{DigitalTerms, Product, ProductCommand, ProductDetails, ProductKind};
use purser_domain::{Money, Quantity, Sku, ValueError};

use crate::bus::{CommandBus, CommandError, Executed};
use crate::context::CommandContext;

/// A new product, already validated.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub sku: Sku,
    pub details: ProductDetails,
    pub kind: ProductKind,
    pub price: Money,
}

impl NewProduct {
    pub fn parse(
        sku: &str,
        name: &str,
        description: &str,
        brand: &str,
        category: &str,
        digital: Option<DigitalTerms>,
        price: Money,
    ) -> Result<NewProduct, ValueError> {
        let sku = Sku::parse(sku)?;
        let details = ProductDetails::parse(name, description, brand, category)?;
        let kind = match digital {
            None => ProductKind::Physical,
            Some(terms) => {
                terms.validate()?;
                ProductKind::digital(terms)
            }
        };
        if price.minor < 0 {
            return Err(ValueError::new("price", "must not be negative"));
        }
        Ok(NewProduct {
            sku,
            details,
            kind,
            price,
        })
    }
}

type ProductResult = Result<Executed<Product>, CommandError<purser_domain::product::ProductError>>;
type StockResult =
    Result<Executed<Inventory>, CommandError<purser_domain::inventory::InventoryError>>;

pub async fn create_product(
    bus: &CommandBus,
    ctx: &CommandContext,
    p: NewProduct,
    now: DateTime<Utc>,
) -> ProductResult {
    let id = p.sku.clone();
    bus.execute::<Product>(
        &id,
        ctx,
        ProductCommand::Create {
            sku: p.sku,
            name: p.details.name,
            description: p.details.description,
            brand: p.details.brand,
            category: p.details.category,
            kind: p.kind,
            price: p.price,
            now,
        },
    )
    .await
}

pub async fn update_product(
    bus: &CommandBus,
    ctx: &CommandContext,
    sku: &Sku,
    command: ProductCommand,
) -> ProductResult {
    bus.execute::<Product>(sku, ctx, command).await
}

pub async fn receive_stock(
    bus: &CommandBus,
    ctx: &CommandContext,
    sku: Sku,
    qty: Quantity,
    now: DateTime<Utc>,
) -> StockResult {
    let id = sku.clone();
    bus.execute::<Inventory>(&id, ctx, InventoryCommand::Receive { sku, qty, now })
        .await
}

pub async fn adjust_stock(
    bus: &CommandBus,
    ctx: &CommandContext,
    sku: Sku,
    delta: i64,
    reason: AdjustmentReason,
    note: String,
    now: DateTime<Utc>,
) -> StockResult {
    let id = sku.clone();
    bus.execute::<Inventory>(
        &id,
        ctx,
        InventoryCommand::Adjust {
            sku,
            delta,
            reason,
            note,
            now,
        },
    )
    .await
}
