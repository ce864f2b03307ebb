//! License administration: loading pool keys for a digital product.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use chrono::Utc;
use purser_api_core::errors::UserError;
use purser_domain::license::{LicensePool, LicensePoolCommand, LicensePoolEvent};
use purser_domain::product::{LicenseSource, Product, ProductKind};

use super::{Rejection, bus, command_context, parse_sku, require_admin, settle};

#[derive(InputObject)]
pub struct LicenseKeysLoadInput {
    pub sku: String,
    /// Keys to add to the product's pool; keys already in it are skipped.
    pub keys: Vec<String>,
}

#[derive(SimpleObject, Default)]
pub struct LicenseKeysLoadPayload {
    /// How many of the keys were new.
    pub loaded: i32,
    pub position: Option<String>,
    pub user_errors: Vec<UserError>,
}

#[derive(Default)]
pub struct LicenseMutation;

#[Object]
impl LicenseMutation {
    /// Loads license keys into a pool-licensed digital product (admin). Each key is issued
    /// at most once, ever.
    async fn license_keys_load(
        &self,
        ctx: &Context<'_>,
        input: LicenseKeysLoadInput,
    ) -> async_graphql::Result<LicenseKeysLoadPayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        let mut loaded = 0;
        let outcome = async {
            let sku = parse_sku(&input.sku)?;
            let b = bus(ctx);
            let (product, version, _) = b.load::<Product>(&sku).await?;
            if version.is_none() {
                return Err(Rejection::user(
                    Some("sku"),
                    "PRODUCT_NOT_FOUND",
                    format!("no product with SKU {sku}"),
                ));
            }
            if !matches!(
                product.kind,
                ProductKind::Digital {
                    license: LicenseSource::Pool,
                    ..
                }
            ) {
                return Err(Rejection::user(
                    Some("sku"),
                    "NOT_A_POOL_PRODUCT",
                    format!("{sku} does not take its license keys from a pool"),
                ));
            }
            let cmd = LicensePoolCommand::LoadKeys {
                sku: sku.clone(),
                keys: input.keys,
                now: Utc::now(),
            };
            let done = b.execute::<LicensePool>(&sku, &cmd_ctx, cmd).await?;
            for e in &done.events {
                if let LicensePoolEvent::LicenseKeysLoaded { keys, .. } = e {
                    loaded += keys.len() as i32;
                }
            }
            Ok(done.position)
        }
        .await;
        let (position, user_errors) = settle(outcome)?;
        Ok(LicenseKeysLoadPayload {
            loaded,
            position: position.map(|p| p.to_string()),
            user_errors,
        })
    }
}
