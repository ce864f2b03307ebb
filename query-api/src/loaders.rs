//! DataLoaders: batch the per-object lookups of a page into one statement each.
//!
//! A page of 50 orders asks for 50 orders' lines, each line's product, and 50 timelines.
//! Lists hand the loader all their keys at once (`load_many`, see `orders::orders_page`), and
//! single objects call `load_one`, which the loader batches with whatever else was asked for in
//! the same moment; either way one `= any($1)` query serves every key of a batch. Lines come
//! with their products, fetched in the same batch (one more statement for all of them), so a
//! page costs the same few statements whatever its size and however the runtime schedules.
//!
//! The loaders keep no cache (`DataLoader::new`), so they can live in the schema's data and be
//! shared by concurrent requests without ever serving stale rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, ObjectType, SchemaBuilder, SubscriptionType};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use purser_api_core::errors::{api_error, unavailable};
use purser_api_core::product::{PRODUCT_COLUMNS, ProductRow};

/// How long a loader waits for more keys before it runs its query. Resolvers of a list are
/// polled together, so a couple of milliseconds gathers a whole page even on a busy runtime.
const BATCH_DELAY: Duration = Duration::from_millis(2);

/// A loader's failure. The database error is logged where it happens; what travels on is
/// cheap to clone, as the dataloader needs.
#[derive(Debug, Clone)]
pub struct LoadError(pub Arc<sqlx::Error>);

impl From<LoadError> for async_graphql::Error {
    fn from(e: LoadError) -> async_graphql::Error {
        tracing::error!(error = %e.0, "read model batch query failed");
        unavailable()
    }
}

fn load_error(e: sqlx::Error) -> LoadError {
    LoadError(Arc::new(e))
}

/// Adds every loader to a schema under construction.
pub fn with_loaders<Q, M, S>(
    builder: SchemaBuilder<Q, M, S>,
    pool: &PgPool,
) -> SchemaBuilder<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    builder
        .data(DataLoader::new(ProductLoader(pool.clone()), tokio::spawn).delay(BATCH_DELAY))
        .data(DataLoader::new(OrderLinesLoader(pool.clone()), tokio::spawn).delay(BATCH_DELAY))
        .data(DataLoader::new(OrderTimelineLoader(pool.clone()), tokio::spawn).delay(BATCH_DELAY))
        .data(DataLoader::new(CartLinesLoader(pool.clone()), tokio::spawn).delay(BATCH_DELAY))
}

/// The loader of type `T` from the schema's data.
pub(crate) fn loader<'a, T: Send + Sync + 'static>(
    ctx: &Context<'a>,
) -> async_graphql::Result<&'a DataLoader<T>> {
    ctx.data::<DataLoader<T>>().map_err(|_| {
        tracing::error!(
            loader = std::any::type_name::<T>(),
            "a dataloader is missing from the schema's data; build the schema with \
             `loaders::with_loaders`"
        );
        api_error("INTERNAL", "something went wrong on our side")
    })
}

/// Products by SKU, with their stock, in one statement.
async fn fetch_products(
    pool: &PgPool,
    skus: &[String],
) -> Result<HashMap<String, ProductRow>, LoadError> {
    if skus.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query_as::<_, ProductRow>(&format!(
        "select {PRODUCT_COLUMNS} from catalog.products p
         left join catalog.stock s using (sku) where p.sku = any($1)"
    ))
    .bind(skus)
    .fetch_all(pool)
    .await
    .map_err(load_error)?;
    Ok(rows.into_iter().map(|r| (r.sku.clone(), r)).collect())
}

/// The distinct SKUs of some lines.
fn distinct_skus<'a>(skus: impl Iterator<Item = &'a str>) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = skus.collect();
    set.into_iter().map(str::to_owned).collect()
}

/// Products by SKU, with their stock.
pub struct ProductLoader(pub PgPool);

impl Loader<String> for ProductLoader {
    type Value = ProductRow;
    type Error = LoadError;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, ProductRow>, LoadError> {
        fetch_products(&self.0, keys).await
    }
}

/// One line of an order, as stored in `sales.order_lines`.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct OrderLineRow {
    pub order_id: Uuid,
    pub line_no: i32,
    pub sku: String,
    pub name: String,
    pub kind: String,
    pub qty: i32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
    pub currency: String,
    pub license_id: Option<Uuid>,
}

/// An order line and its product as the catalog has it now (None if the catalog does not
/// know the SKU).
#[derive(Debug, Clone)]
pub struct LoadedOrderLine {
    pub line: OrderLineRow,
    pub product: Option<ProductRow>,
}

/// The lines of orders with their products, by order id, in line order.
pub struct OrderLinesLoader(pub PgPool);

impl Loader<Uuid> for OrderLinesLoader {
    type Value = Vec<LoadedOrderLine>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<LoadedOrderLine>>, LoadError> {
        let rows = sqlx::query_as::<_, OrderLineRow>(
            "select order_id, line_no, sku, name, kind, qty, unit_price_minor, line_total_minor,
                    currency, license_id
             from sales.order_lines where order_id = any($1)
             order by order_id, line_no",
        )
        .bind(keys)
        .fetch_all(&self.0)
        .await
        .map_err(load_error)?;
        let products =
            fetch_products(&self.0, &distinct_skus(rows.iter().map(|r| r.sku.as_str()))).await?;
        let lines = rows
            .into_iter()
            .map(|line| LoadedOrderLine {
                product: products.get(&line.sku).cloned(),
                line,
            })
            .collect();
        Ok(group(lines, |l| l.line.order_id))
    }
}

/// One step of an order's timeline.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct TimelineRow {
    pub order_id: Uuid,
    pub seq: i32,
    pub status: String,
    pub event: String,
    pub at: DateTime<Utc>,
    pub detail: serde_json::Value,
}

/// The timelines of orders, by order id, oldest step first.
pub struct OrderTimelineLoader(pub PgPool);

impl Loader<Uuid> for OrderTimelineLoader {
    type Value = Vec<TimelineRow>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<TimelineRow>>, LoadError> {
        let rows = sqlx::query_as::<_, TimelineRow>(
            "select order_id, seq, status, event, at, detail
             from sales.order_timeline where order_id = any($1)
             order by order_id, seq",
        )
        .bind(keys)
        .fetch_all(&self.0)
        .await
        .map_err(load_error)?;
        Ok(group(rows, |r| r.order_id))
    }
}

/// One line of a cart, as stored in `sales.cart_lines`.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct CartLineRow {
    pub cart_id: Uuid,
    pub sku: String,
    pub line_no: i32,
    pub name: String,
    pub kind: String,
    pub qty: i32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
    pub added_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A cart line and its product as the catalog has it now.
#[derive(Debug, Clone)]
pub struct LoadedCartLine {
    pub line: CartLineRow,
    pub product: Option<ProductRow>,
}

/// The lines of carts with their products, by cart id, in the order they were added.
pub struct CartLinesLoader(pub PgPool);

impl Loader<Uuid> for CartLinesLoader {
    type Value = Vec<LoadedCartLine>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<LoadedCartLine>>, LoadError> {
        let rows = sqlx::query_as::<_, CartLineRow>(
            "select cart_id, sku, line_no, name, kind, qty, unit_price_minor, line_total_minor,
                    added_at, updated_at
             from sales.cart_lines where cart_id = any($1)
             order by cart_id, line_no",
        )
        .bind(keys)
        .fetch_all(&self.0)
        .await
        .map_err(load_error)?;
        let products =
            fetch_products(&self.0, &distinct_skus(rows.iter().map(|r| r.sku.as_str()))).await?;
        let lines = rows
            .into_iter()
            .map(|line| LoadedCartLine {
                product: products.get(&line.sku).cloned(),
                line,
            })
            .collect();
        Ok(group(lines, |l| l.line.cart_id))
    }
}

/// Groups rows by key, keeping their order. Keys with no rows are absent; resolvers read an
/// absent key as "no rows".
fn group<T>(rows: Vec<T>, key: impl Fn(&T) -> Uuid) -> HashMap<Uuid, Vec<T>> {
    let mut out: HashMap<Uuid, Vec<T>> = HashMap::new();
    for r in rows {
        out.entry(key(&r)).or_default().push(r);
    }
    out
}
