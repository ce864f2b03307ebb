//! Catalog and stock mutations (admin only).

use async_graphql::{Context, Enum, InputObject, Object};
use chrono::Utc;
use purser_api_core::ReadContext;
use purser_api_core::errors::UserError;
use purser_api_core::errors::db_error;
use purser_api_core::product::{CATALOG_PROJECTIONS, Product as ProductNode, load_product};
use purser_api_core::wire::Int64;
use purser_domain::inventory::AdjustmentReason;
use purser_domain::product::{DigitalTerms, LicenseSource, Product, ProductCommand, ProductKind};
use purser_domain::{Quantity, Sku, ValueError};
use purser_event_store::Position;

use super::{
    MoneyInput, Rejection, bus, command_context, parse_quantity, parse_sku, require_admin, settle,
};
use crate::bus::CommandBus;
use crate::catalog::{self, NewProduct};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum LicenseSourceInput {
    /// Keys loaded into the product's pool by an admin.
    Pool,
    /// Keys generated and signed (Ed25519) at issue.
    Signed,
}

#[derive(InputObject, Debug, Clone)]
pub struct DigitalTermsInput {
    pub license_source: LicenseSourceInput,
    #[graphql(default = 1)]
    pub seats: i32,
    /// Days a license is valid; omit for perpetual licenses.
    pub validity_days: Option<i32>,
}

#[derive(InputObject, Debug, Clone)]
pub struct ProductCreateInput {
    pub sku: String,
    pub name: String,
    #[graphql(default)]
    pub description: String,
    #[graphql(default)]
    pub brand: String,
    #[graphql(default)]
    pub category: String,
    pub price: MoneyInput,
    /// Present for a digital (software) product; absent for a physical one.
    pub digital: Option<DigitalTermsInput>,
}

#[derive(InputObject, Debug, Clone)]
pub struct ProductUpdateInput {
    pub sku: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub brand: Option<String>,
    pub category: Option<String>,
}

#[derive(InputObject, Debug, Clone)]
pub struct ProductPriceChangeInput {
    pub sku: String,
    pub price: MoneyInput,
}

#[derive(InputObject, Debug, Clone)]
pub struct ProductDiscontinueInput {
    pub sku: String,
    #[graphql(default)]
    pub reason: String,
}

#[derive(InputObject, Debug, Clone)]
pub struct InventoryReceiveInput {
    pub sku: String,
    pub quantity: Int64,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum StockAdjustmentReason {
    Damaged,
    Lost,
    Found,
    Recount,
    Returned,
    Correction,
}

impl From<StockAdjustmentReason> for AdjustmentReason {
    fn from(r: StockAdjustmentReason) -> AdjustmentReason {
        match r {
            StockAdjustmentReason::Damaged => AdjustmentReason::Damaged,
            StockAdjustmentReason::Lost => AdjustmentReason::Lost,
            StockAdjustmentReason::Found => AdjustmentReason::Found,
            StockAdjustmentReason::Recount => AdjustmentReason::Recount,
            StockAdjustmentReason::Returned => AdjustmentReason::Returned,
            StockAdjustmentReason::Correction => AdjustmentReason::Correction,
        }
    }
}

#[derive(InputObject, Debug, Clone)]
pub struct InventoryAdjustInput {
    pub sku: String,
    /// Units to add (positive) or remove (negative).
    pub delta: Int64,
    pub reason: StockAdjustmentReason,
    #[graphql(default)]
    pub note: String,
}

/// The result of a product or stock mutation.
pub struct ProductPayload {
    sku: Option<String>,
    position: Option<Position>,
    user_errors: Vec<UserError>,
}

#[Object]
impl ProductPayload {
    /// The product as the catalog shows it after this mutation (waits for the catalog to
    /// catch up with `position`).
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ProductNode>> {
        let Some(sku) = &self.sku else {
            return Ok(None);
        };
        let read = ReadContext::from_ctx(ctx);
        let position = self.position.map(|p| p.to_string());
        read.wait_for(ctx, CATALOG_PROJECTIONS, position.as_deref())
            .await?;
        Ok(load_product(&read.pool, sku)
            .await
            .map_err(db_error)?
            .map(ProductNode))
    }

    /// The global position of what this mutation appended; pass it as `minPosition` to read
    /// your own write.
    async fn position(&self) -> Option<String> {
        self.position.map(|p| p.to_string())
    }

    async fn user_errors(&self) -> &[UserError] {
        &self.user_errors
    }
}

fn product_payload(
    sku: Option<String>,
    outcome: Result<Option<Position>, Rejection>,
) -> async_graphql::Result<ProductPayload> {
    let (position, user_errors) = settle(outcome)?;
    let sku = if user_errors.is_empty() { sku } else { None };
    Ok(ProductPayload {
        sku,
        position,
        user_errors,
    })
}

/// Stock only exists for physical products that exist.
async fn require_physical_product(bus: &CommandBus, sku: &Sku) -> Result<(), Rejection> {
    let (state, version, _) = bus.load::<Product>(sku).await.map_err(Rejection::from)?;
    if version.is_none() {
        return Err(Rejection::user(
            Some("sku"),
            "PRODUCT_NOT_FOUND",
            format!("no product with SKU {sku}"),
        ));
    }
    if !matches!(state.kind, ProductKind::Physical) {
        return Err(Rejection::user(
            Some("sku"),
            "DIGITAL_PRODUCT_HAS_NO_STOCK",
            format!("{sku} is a digital product; it has no stock to manage"),
        ));
    }
    Ok(())
}

#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    /// Creates a product (admin).
    async fn product_create(
        &self,
        ctx: &Context<'_>,
        input: ProductCreateInput,
    ) -> async_graphql::Result<ProductPayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        let outcome = async {
            let price = input.price.parse("price")?;
            let digital = match &input.digital {
                None => None,
                Some(d) => Some(DigitalTerms {
                    license: match d.license_source {
                        LicenseSourceInput::Pool => LicenseSource::Pool,
                        LicenseSourceInput::Signed => LicenseSource::Signed,
                    },
                    seats: u32::try_from(d.seats)
                        .map_err(|_| ValueError::new("seats", "must be at least 1"))?,
                    validity_days: d
                        .validity_days
                        .map(|v| {
                            u32::try_from(v)
                                .map_err(|_| ValueError::new("validity_days", "must be at least 1"))
                        })
                        .transpose()?,
                }),
            };
            let p = NewProduct::parse(
                &input.sku,
                &input.name,
                &input.description,
                &input.brand,
                &input.category,
                digital,
                price,
            )?;
            Ok(catalog::create_product(bus(ctx), &cmd_ctx, p, Utc::now())
                .await?
                .position)
        }
        .await;
        product_payload(Some(input.sku.trim().to_ascii_uppercase()), outcome)
    }

    /// Changes a product's name, description, brand or category (admin).
    async fn product_update(
        &self,
        ctx: &Context<'_>,
        input: ProductUpdateInput,
    ) -> async_graphql::Result<ProductPayload> {
        use purser_domain::product::ProductDetails as D;
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        let outcome = async {
            let sku = parse_sku(&input.sku)?;
            let command = ProductCommand::UpdateDetails {
                name: input.name.as_deref().map(D::parse_name).transpose()?,
                description: input
                    .description
                    .as_deref()
                    .map(D::parse_description)
                    .transpose()?,
                brand: input.brand.as_deref().map(D::parse_brand).transpose()?,
                category: input
                    .category
                    .as_deref()
                    .map(D::parse_category)
                    .transpose()?,
                now: Utc::now(),
            };
            Ok(catalog::update_product(bus(ctx), &cmd_ctx, &sku, command)
                .await?
                .position)
        }
        .await;
        product_payload(Some(input.sku.trim().to_ascii_uppercase()), outcome)
    }

    /// Changes a product's price (admin). The currency cannot change.
    async fn product_price_change(
        &self,
        ctx: &Context<'_>,
        input: ProductPriceChangeInput,
    ) -> async_graphql::Result<ProductPayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        let outcome = async {
            let sku = parse_sku(&input.sku)?;
            let price = input.price.parse("price")?;
            let command = ProductCommand::ChangePrice {
                price,
                now: Utc::now(),
            };
            Ok(catalog::update_product(bus(ctx), &cmd_ctx, &sku, command)
                .await?
                .position)
        }
        .await;
        product_payload(Some(input.sku.trim().to_ascii_uppercase()), outcome)
    }

    /// Takes a product off sale (admin).
    async fn product_discontinue(
        &self,
        ctx: &Context<'_>,
        input: ProductDiscontinueInput,
    ) -> async_graphql::Result<ProductPayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        let outcome = async {
            let sku = parse_sku(&input.sku)?;
            let reason = purser_domain::bounded_text("reason", &input.reason, 500, false)?;
            let command = ProductCommand::Discontinue {
                reason,
                now: Utc::now(),
            };
            Ok(catalog::update_product(bus(ctx), &cmd_ctx, &sku, command)
                .await?
                .position)
        }
        .await;
        product_payload(Some(input.sku.trim().to_ascii_uppercase()), outcome)
    }

    /// Puts a discontinued product back on sale (admin).
    async fn product_reactivate(
        &self,
        ctx: &Context<'_>,
        sku: String,
    ) -> async_graphql::Result<ProductPayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        let outcome = async {
            let parsed = parse_sku(&sku)?;
            let command = ProductCommand::Reactivate { now: Utc::now() };
            Ok(
                catalog::update_product(bus(ctx), &cmd_ctx, &parsed, command)
                    .await?
                    .position,
            )
        }
        .await;
        product_payload(Some(sku.trim().to_ascii_uppercase()), outcome)
    }

    /// Records stock received into the warehouse (admin).
    async fn inventory_receive(
        &self,
        ctx: &Context<'_>,
        input: InventoryReceiveInput,
    ) -> async_graphql::Result<ProductPayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        let outcome = async {
            let sku = parse_sku(&input.sku)?;
            let qty = parse_quantity(input.quantity)?;
            require_physical_product(bus(ctx), &sku).await?;
            Ok(
                catalog::receive_stock(bus(ctx), &cmd_ctx, sku, qty, Utc::now())
                    .await?
                    .position,
            )
        }
        .await;
        product_payload(Some(input.sku.trim().to_ascii_uppercase()), outcome)
    }

    /// Corrects stock up or down with a reason (admin). Never below what is reserved.
    async fn inventory_adjust(
        &self,
        ctx: &Context<'_>,
        input: InventoryAdjustInput,
    ) -> async_graphql::Result<ProductPayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        let outcome = async {
            let sku = parse_sku(&input.sku)?;
            let delta = input.delta.0;
            if delta == 0 || delta.unsigned_abs() > u64::from(Quantity::MAX) {
                return Err(Rejection::user(
                    Some("delta"),
                    "INVALID_INPUT",
                    format!(
                        "delta must be non-zero and at most {} either way",
                        Quantity::MAX
                    ),
                ));
            }
            let note = purser_domain::bounded_text("note", &input.note, 500, false)?;
            require_physical_product(bus(ctx), &sku).await?;
            Ok(catalog::adjust_stock(
                bus(ctx),
                &cmd_ctx,
                sku,
                delta,
                input.reason.into(),
                note,
                Utc::now(),
            )
            .await?
            .position)
        }
        .await;
        product_payload(Some(input.sku.trim().to_ascii_uppercase()), outcome)
    }
}
