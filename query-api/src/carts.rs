//! Cart queries.
//!
//! A cart with an owner is readable by that customer and by staff; a guest cart (no owner) is
//! readable by whoever holds its id, which is how a storefront keeps an anonymous basket. A
//! cart the viewer may not read is reported as missing (null).

use async_graphql::{Context, Enum, ID, Object};
use chrono::{DateTime, Utc};
use purser_domain::CustomerId;
use uuid::Uuid;

use crate::loaders::{CartLinesLoader, LoadedCartLine, loader};
use purser_api_core::ReadContext;
use purser_api_core::auth::Viewer;
use purser_api_core::errors::{db_error, internal};
use purser_api_core::product::{Product, ProductKind};
use purser_api_core::wire::{MoneyV2, parse_uuid_id, uuid_global_id};

/// The projections cart queries read (lines show their product from the catalog).
pub const CART_PROJECTIONS: &[&str] = &["carts", "catalog"];

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum CartStatus {
    /// Still being filled.
    Open,
    /// Turned into an order.
    CheckedOut,
    /// Idle for too long (7 days) and closed.
    Abandoned,
}

impl CartStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CartStatus::Open => "open",
            CartStatus::CheckedOut => "checked_out",
            CartStatus::Abandoned => "abandoned",
        }
    }

    fn parse(s: &str) -> async_graphql::Result<CartStatus> {
        match s {
            "open" => Ok(CartStatus::Open),
            "checked_out" => Ok(CartStatus::CheckedOut),
            "abandoned" => Ok(CartStatus::Abandoned),
            other => Err(internal(&other, "unknown cart status in the read model")),
        }
    }
}

/// One row of `sales.carts`.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct CartRow {
    pub cart_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub currency: String,
    pub status: String,
    pub order_id: Option<Uuid>,
    pub item_count: i32,
    pub line_count: i32,
    pub subtotal_minor: i64,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    pub checked_out_at: Option<DateTime<Utc>>,
    pub abandoned_at: Option<DateTime<Utc>>,
}

pub(crate) const CART_COLUMNS: &str = "cart_id, customer_id, currency, status, order_id, \
     item_count, line_count, subtotal_minor, created_at, last_activity_at, checked_out_at, \
     abandoned_at";

/// A shopping cart. A list of carts hands its lines in ready-made (loaded for the whole list
/// at once); a single cart loads them when asked.
pub struct Cart {
    pub row: CartRow,
    lines: Option<Vec<LoadedCartLine>>,
}

impl Cart {
    pub fn new(row: CartRow) -> Cart {
        Cart { row, lines: None }
    }

    pub fn with_lines(row: CartRow, lines: Option<Vec<LoadedCartLine>>) -> Cart {
        Cart { row, lines }
    }
}

#[Object]
impl Cart {
    /// Opaque global id.
    async fn id(&self) -> ID {
        uuid_global_id("Cart", self.row.cart_id)
    }
    async fn status(&self) -> async_graphql::Result<CartStatus> {
        CartStatus::parse(&self.row.status)
    }
    async fn currency(&self) -> &str {
        &self.row.currency
    }
    /// The owner; null for a guest cart.
    async fn customer_id(&self) -> Option<ID> {
        self.row.customer_id.map(|c| uuid_global_id("Customer", c))
    }
    /// The order it became, once checked out.
    async fn order_id(&self) -> Option<ID> {
        self.row.order_id.map(|o| uuid_global_id("Order", o))
    }
    /// Units over all lines.
    async fn item_count(&self) -> i32 {
        self.row.item_count
    }
    async fn line_count(&self) -> i32 {
        self.row.line_count
    }
    /// The sum of the lines at the prices they were added at.
    async fn subtotal(&self) -> MoneyV2 {
        MoneyV2::new(self.row.subtotal_minor, &self.row.currency)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }
    async fn last_activity_at(&self) -> DateTime<Utc> {
        self.row.last_activity_at
    }
    async fn checked_out_at(&self) -> Option<DateTime<Utc>> {
        self.row.checked_out_at
    }
    async fn abandoned_at(&self) -> Option<DateTime<Utc>> {
        self.row.abandoned_at
    }
    /// The lines, in the order they were added (batched across a list of carts).
    async fn lines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<CartLine>> {
        let lines = match &self.lines {
            Some(lines) => lines.clone(),
            None => loader::<CartLinesLoader>(ctx)?
                .load_one(self.row.cart_id)
                .await?
                .unwrap_or_default(),
        };
        let currency = self.row.currency.clone();
        Ok(lines
            .into_iter()
            .map(|l| CartLine(l, currency.clone()))
            .collect())
    }
}

/// One line of a cart, and the cart's currency.
pub struct CartLine(pub LoadedCartLine, pub String);

#[Object]
impl CartLine {
    async fn sku(&self) -> &str {
        &self.0.line.sku
    }
    async fn name(&self) -> &str {
        &self.0.line.name
    }
    async fn kind(&self) -> ProductKind {
        if self.0.line.kind == "digital" {
            ProductKind::Digital
        } else {
            ProductKind::Physical
        }
    }
    async fn quantity(&self) -> i32 {
        self.0.line.qty
    }
    /// The price when the line was first added.
    async fn unit_price(&self) -> MoneyV2 {
        MoneyV2::new(self.0.line.unit_price_minor, &self.1)
    }
    async fn line_total(&self) -> MoneyV2 {
        MoneyV2::new(self.0.line.line_total_minor, &self.1)
    }
    async fn added_at(&self) -> DateTime<Utc> {
        self.0.line.added_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.line.updated_at
    }
    /// The product as it is in the catalog now, with live stock (loaded with the lines).
    async fn product(&self) -> Option<Product> {
        self.0.product.clone().map(Product)
    }
}

/// Whether the viewer may read a cart owned by `owner` (None: a guest cart).
pub fn may_read_cart(viewer: &Viewer, owner: Option<Uuid>) -> bool {
    match owner {
        None => true,
        Some(o) => viewer.may_read_customer(Some(CustomerId::from(o))),
    }
}

#[derive(Default)]
pub struct CartsQuery;

#[Object]
impl CartsQuery {
    /// One cart by its global id. Null when it does not exist or belongs to someone else.
    async fn cart(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(desc = "Wait until the read models include this position (from a mutation).")]
        min_position: Option<String>,
    ) -> async_graphql::Result<Option<Cart>> {
        let read = ReadContext::from_ctx(ctx);
        let viewer = Viewer::from_ctx(ctx);
        let id = parse_uuid_id("Cart", &id)?;
        read.wait_for(ctx, CART_PROJECTIONS, min_position.as_deref())
            .await?;
        let row = sqlx::query_as::<_, CartRow>(&format!(
            "select {CART_COLUMNS} from sales.carts where cart_id = $1"
        ))
        .bind(id)
        .fetch_optional(&read.pool)
        .await
        .map_err(db_error)?;
        Ok(row
            .filter(|r| may_read_cart(&viewer, r.customer_id))
            .map(Cart::new))
    }
}
