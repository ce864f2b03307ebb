//! Customer queries: `me` (the signed-in customer's profile, orders, licenses and carts) and
//! `customer(id)` (the customer themself, or staff).

use async_graphql::{Context, Enum, ID, Object};
use chrono::{DateTime, Utc};
use purser_domain::CustomerId;
use uuid::Uuid;

use crate::carts::{CART_COLUMNS, Cart, CartRow, CartStatus};
use crate::loaders::{CartLinesLoader, ProductLoader, loader};
use crate::orders::{OrderConnection, orders_page};
use purser_api_core::ReadContext;
use purser_api_core::auth::Viewer;
use purser_api_core::errors::{db_error, internal, unauthenticated};
use purser_api_core::product::Product;
use purser_api_core::wire::{MoneyV2, page_size, parse_uuid_id, uuid_global_id};

/// The projections `me` reads: its profile, orders, carts, licenses, and products of lines.
pub const ME_PROJECTIONS: &[&str] = &["customers", "orders", "carts", "catalog"];
/// The projections `customer(id)` reads.
pub const CUSTOMER_PROJECTIONS: &[&str] = &["customers"];

/// One row of `sales.customers`.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct CustomerRow {
    pub customer_id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub registered: bool,
    pub guest: bool,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub registered_at: Option<DateTime<Utc>>,
    pub orders_count: i32,
    pub first_order_at: Option<DateTime<Utc>>,
    pub last_order_at: Option<DateTime<Utc>>,
}

async fn load_customer(pool: &sqlx::PgPool, id: Uuid) -> Result<Option<CustomerRow>, sqlx::Error> {
    sqlx::query_as::<_, CustomerRow>(
        "select customer_id, email, name, registered, guest, roles, created_at, registered_at,
                orders_count, first_order_at, last_order_at
         from sales.customers where customer_id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// A customer account (registered, or known from a guest checkout).
pub struct Customer(pub CustomerRow);

#[Object]
impl Customer {
    /// Opaque global id.
    async fn id(&self) -> ID {
        uuid_global_id("Customer", self.0.customer_id)
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    /// Signed up with a password.
    async fn registered(&self) -> bool {
        self.0.registered
    }
    /// Known only from checkouts, never signed up.
    async fn guest(&self) -> bool {
        self.0.guest
    }
    /// customer, admin, analyst, auditor.
    async fn roles(&self) -> &[String] {
        &self.0.roles
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn registered_at(&self) -> Option<DateTime<Utc>> {
        self.0.registered_at
    }
    async fn orders_count(&self) -> i32 {
        self.0.orders_count
    }
    async fn first_order_at(&self) -> Option<DateTime<Utc>> {
        self.0.first_order_at
    }
    async fn last_order_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_order_at
    }
    /// Captured minus refunded over all orders, one amount per currency.
    async fn total_spent(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<MoneyV2>> {
        let read = ReadContext::from_ctx(ctx);
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "select currency, spent_minor from sales.customer_spend
             where customer_id = $1 order by currency",
        )
        .bind(self.0.customer_id)
        .fetch_all(&read.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|(c, m)| MoneyV2::new(m, &c)).collect())
    }
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum LicenseStatus {
    /// Issued for an order, not yet attached to the account.
    Issued,
    /// In the customer's account.
    Attached,
    /// Revoked (the order was refunded or cancelled).
    Revoked,
}

/// One row of `sales.customer_licenses`.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct LicenseRow {
    pub license_id: Uuid,
    pub customer_id: Uuid,
    pub sku: String,
    pub order_id: Uuid,
    pub seats: i32,
    pub license_key: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub attached_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A software license bought with an order.
pub struct License(pub LicenseRow);

#[Object]
impl License {
    /// Opaque global id.
    async fn id(&self) -> ID {
        uuid_global_id("License", self.0.license_id)
    }
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn order_id(&self) -> ID {
        uuid_global_id("Order", self.0.order_id)
    }
    async fn seats(&self) -> i32 {
        self.0.seats
    }
    /// The license key to activate the software with.
    async fn key(&self) -> &str {
        &self.0.license_key
    }
    /// Null for a perpetual license.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    async fn status(&self) -> async_graphql::Result<LicenseStatus> {
        match self.0.status.as_str() {
            "issued" => Ok(LicenseStatus::Issued),
            "attached" => Ok(LicenseStatus::Attached),
            "revoked" => Ok(LicenseStatus::Revoked),
            other => Err(internal(&other, "unknown license status in the read model")),
        }
    }
    async fn issued_at(&self) -> DateTime<Utc> {
        self.0.issued_at
    }
    async fn attached_at(&self) -> Option<DateTime<Utc>> {
        self.0.attached_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    /// The product as it is in the catalog now (batched).
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Product>> {
        Ok(loader::<ProductLoader>(ctx)?
            .load_one(self.0.sku.clone())
            .await?
            .map(Product))
    }
}

/// The signed-in customer and what is theirs.
pub struct Me {
    customer_id: Uuid,
}

#[Object]
impl Me {
    /// The profile; null until the customer's first event has been projected.
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Customer>> {
        let read = ReadContext::from_ctx(ctx);
        Ok(load_customer(&read.pool, self.customer_id)
            .await
            .map_err(db_error)?
            .map(Customer))
    }

    /// Order history, newest first.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<OrderConnection> {
        let read = ReadContext::from_ctx(ctx);
        orders_page(ctx, &read.pool, Some(self.customer_id), None, first, after).await
    }

    /// Licenses bought, newest first.
    async fn licenses(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many, 1 to 100 (default 100).")] first: Option<i32>,
    ) -> async_graphql::Result<Vec<License>> {
        let read = ReadContext::from_ctx(ctx);
        let limit = page_size(first, 100, 100)?;
        let since = crate::orders::unverified_since(&read.pool, self.customer_id)
            .await
            .map_err(db_error)?;
        let rows = sqlx::query_as::<_, LicenseRow>(
            "select license_id, customer_id, sku, order_id, seats, license_key, expires_at,
                    status, issued_at, attached_at, revoked_at
             from sales.customer_licenses where customer_id = $1
               and ($3::timestamptz is null or issued_at >= $3)
             order by issued_at desc, license_id desc limit $2",
        )
        .bind(self.customer_id)
        .bind(limit)
        .bind(since)
        .fetch_all(&read.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(License).collect())
    }

    /// Carts, most recently active first; optionally only those in one status.
    async fn carts(
        &self,
        ctx: &Context<'_>,
        status: Option<CartStatus>,
        #[graphql(desc = "How many, 1 to 100 (default 20).")] first: Option<i32>,
    ) -> async_graphql::Result<Vec<Cart>> {
        let read = ReadContext::from_ctx(ctx);
        let limit = page_size(first, 20, 100)?;
        let rows = sqlx::query_as::<_, CartRow>(&format!(
            "select {CART_COLUMNS} from sales.carts
             where customer_id = $1 and ($2::text is null or status = $2)
             order by last_activity_at desc, cart_id desc limit $3"
        ))
        .bind(self.customer_id)
        .bind(status.map(CartStatus::as_str))
        .bind(limit)
        .fetch_all(&read.pool)
        .await
        .map_err(db_error)?;
        // The lines of every cart in one batch, when they are asked for.
        let mut lines = if ctx.look_ahead().field("lines").exists() {
            let ids = rows.iter().map(|r| r.cart_id);
            Some(loader::<CartLinesLoader>(ctx)?.load_many(ids).await?)
        } else {
            None
        };
        Ok(rows
            .into_iter()
            .map(|r| {
                let prefetched = lines
                    .as_mut()
                    .map(|l| l.remove(&r.cart_id).unwrap_or_default());
                Cart::with_lines(r, prefetched)
            })
            .collect())
    }
}

#[derive(Default)]
pub struct CustomersQuery;

#[Object]
impl CustomersQuery {
    /// The signed-in customer. Fails with UNAUTHENTICATED without a token.
    async fn me(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Wait until the read models include this position (from a mutation).")]
        min_position: Option<String>,
    ) -> async_graphql::Result<Me> {
        let read = ReadContext::from_ctx(ctx);
        let Some(customer_id) = Viewer::from_ctx(ctx).customer_id else {
            return Err(unauthenticated());
        };
        read.wait_for(ctx, ME_PROJECTIONS, min_position.as_deref())
            .await?;
        Ok(Me {
            customer_id: customer_id.as_uuid(),
        })
    }

    /// A customer by global id: the customer themself, admins and auditors. Null otherwise.
    async fn customer(
        &self,
        ctx: &Context<'_>,
        id: ID,
        min_position: Option<String>,
    ) -> async_graphql::Result<Option<Customer>> {
        let read = ReadContext::from_ctx(ctx);
        let viewer = Viewer::from_ctx(ctx);
        let id = parse_uuid_id("Customer", &id)?;
        if !viewer.may_read_customer(Some(CustomerId::from(id))) {
            return Ok(None);
        }
        read.wait_for(ctx, CUSTOMER_PROJECTIONS, min_position.as_deref())
            .await?;
        Ok(load_customer(&read.pool, id)
            .await
            .map_err(db_error)?
            .map(Customer))
    }
}
