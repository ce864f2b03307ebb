//! Order queries: one order with its lines, timeline and payment; order lists for staff; and
//! the pieces `me { orders }` reuses.
//!
//! Who may read what: a customer reads their own orders; admins and auditors read all. An
//! order the viewer may not read is reported exactly like one that does not exist (null), so
//! ids cannot be probed for existence.

use async_graphql::{Context, Enum, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use purser_domain::CustomerId;
use purser_domain::customer::Role;
use serde_json::json;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::loaders::{LoadedOrderLine, OrderLinesLoader, OrderTimelineLoader, TimelineRow, loader};
use purser_api_core::ReadContext;
use purser_api_core::auth::Viewer;
use purser_api_core::errors::{bad_input, db_error, internal};
use purser_api_core::product::{Product, ProductKind};
use purser_api_core::wire::{
    MoneyV2, PageInfo, decode_cursor, encode_cursor, page_size, parse_uuid_id, uuid_global_id,
};

/// The projections order queries read (lines show their product from the catalog).
pub const ORDER_PROJECTIONS: &[&str] = &["orders", "catalog"];

/// Where an order is in its life.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    PaymentProcessing,
    Paid,
    Confirmed,
    Processing,
    Shipped,
    Delivered,
    Fulfilled,
    PaymentFailed,
    InventoryUnavailable,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        self.domain().as_str()
    }

    fn domain(self) -> purser_domain::order::OrderStatus {
        use purser_domain::order::OrderStatus as D;
        match self {
            OrderStatus::Pending => D::Pending,
            OrderStatus::PaymentProcessing => D::PaymentProcessing,
            OrderStatus::Paid => D::Paid,
            OrderStatus::Confirmed => D::Confirmed,
            OrderStatus::Processing => D::Processing,
            OrderStatus::Shipped => D::Shipped,
            OrderStatus::Delivered => D::Delivered,
            OrderStatus::Fulfilled => D::Fulfilled,
            OrderStatus::PaymentFailed => D::PaymentFailed,
            OrderStatus::InventoryUnavailable => D::InventoryUnavailable,
            OrderStatus::Cancelled => D::Cancelled,
            OrderStatus::Refunded => D::Refunded,
        }
    }

    /// Reads the stored SCREAMING_SNAKE name. The table's CHECK constraint allows only known
    /// names; an unknown one would be a bug, reported as such rather than guessed at.
    pub fn parse(s: &str) -> async_graphql::Result<OrderStatus> {
        [
            OrderStatus::Pending,
            OrderStatus::PaymentProcessing,
            OrderStatus::Paid,
            OrderStatus::Confirmed,
            OrderStatus::Processing,
            OrderStatus::Shipped,
            OrderStatus::Delivered,
            OrderStatus::Fulfilled,
            OrderStatus::PaymentFailed,
            OrderStatus::InventoryUnavailable,
            OrderStatus::Cancelled,
            OrderStatus::Refunded,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| internal(&s, "unknown order status in the read model"))
    }
}

/// One row of `sales.orders`.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct OrderRow {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub email: String,
    pub status: String,
    pub currency: String,
    pub total_minor: i64,
    pub item_count: i32,
    pub line_count: i32,
    pub cart_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    pub payment_reference: Option<String>,
    pub captured_minor: Option<i64>,
    pub paid_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub failure_message: Option<String>,
    pub cancel_reason: Option<String>,
    pub cancelled_by: Option<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub refunded_minor: i64,
    pub tracking_number: Option<String>,
    pub carrier: Option<String>,
    pub estimated_delivery: Option<DateTime<Utc>>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub fulfilled_at: Option<DateTime<Utc>>,
    pub has_digital: bool,
    pub has_physical: bool,
    pub shipping_address: Option<serde_json::Value>,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const ORDER_COLUMNS: &str = "order_id, customer_id, email, status, currency, total_minor, \
     item_count, line_count, cart_id, payment_id, payment_reference, captured_minor, paid_at, \
     failure_reason, failure_message, cancel_reason, cancelled_by, cancelled_at, refunded_minor, \
     tracking_number, carrier, estimated_delivery, shipped_at, delivered_at, fulfilled_at, \
     has_digital, has_physical, shipping_address, placed_at, updated_at";

/// An order: what was bought, how far it got, and its history. A page of orders hands its
/// lines and timelines in ready-made (loaded for the whole page at once); a single order loads
/// them when asked.
pub struct Order {
    pub row: OrderRow,
    lines: Option<Vec<LoadedOrderLine>>,
    timeline: Option<Vec<TimelineRow>>,
}

impl Order {
    pub fn new(row: OrderRow) -> Order {
        Order {
            row,
            lines: None,
            timeline: None,
        }
    }
}

/// How the order was paid (or why it was not).
#[derive(SimpleObject, Debug, Clone)]
pub struct OrderPayment {
    /// The payment's global id, once payment has started.
    pub payment_id: Option<ID>,
    /// The gateway's reference of the capture.
    pub reference: Option<String>,
    pub captured: Option<MoneyV2>,
    pub paid_at: Option<DateTime<Utc>>,
    /// The last failure code: insufficient_funds, invalid_payment_details, declined or
    /// gateway_timeout.
    pub failure_reason: Option<String>,
    pub failure_message: Option<String>,
}

/// Why and when an order was cancelled.
#[derive(SimpleObject, Debug, Clone)]
pub struct OrderCancellation {
    pub reason: String,
    /// customer, admin or system (a compensating process).
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Shipping progress of the physical part of an order.
#[derive(SimpleObject, Debug, Clone)]
pub struct OrderTracking {
    pub tracking_number: String,
    pub carrier: String,
    pub estimated_delivery: Option<DateTime<Utc>>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Where the physical lines go.
#[derive(SimpleObject, Debug, Clone, serde::Deserialize)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

#[Object]
impl Order {
    /// Opaque global id.
    async fn id(&self) -> ID {
        uuid_global_id("Order", self.row.order_id)
    }
    async fn status(&self) -> async_graphql::Result<OrderStatus> {
        OrderStatus::parse(&self.row.status)
    }
    async fn email(&self) -> &str {
        &self.row.email
    }
    async fn customer_id(&self) -> ID {
        uuid_global_id("Customer", self.row.customer_id)
    }
    async fn cart_id(&self) -> Option<ID> {
        self.row.cart_id.map(|c| uuid_global_id("Cart", c))
    }
    async fn total(&self) -> MoneyV2 {
        MoneyV2::new(self.row.total_minor, &self.row.currency)
    }
    /// Units over all lines.
    async fn item_count(&self) -> i32 {
        self.row.item_count
    }
    async fn line_count(&self) -> i32 {
        self.row.line_count
    }
    /// Money returned to the customer so far.
    async fn refunded(&self) -> MoneyV2 {
        MoneyV2::new(self.row.refunded_minor, &self.row.currency)
    }
    async fn has_digital(&self) -> bool {
        self.row.has_digital
    }
    async fn has_physical(&self) -> bool {
        self.row.has_physical
    }
    async fn placed_at(&self) -> DateTime<Utc> {
        self.row.placed_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at
    }
    /// When the licenses of the digital lines were all attached.
    async fn fulfilled_at(&self) -> Option<DateTime<Utc>> {
        self.row.fulfilled_at
    }
    async fn payment(&self) -> OrderPayment {
        let r = &self.row;
        OrderPayment {
            payment_id: r.payment_id.map(|p| uuid_global_id("Payment", p)),
            reference: r.payment_reference.clone(),
            captured: r.captured_minor.map(|m| MoneyV2::new(m, &r.currency)),
            paid_at: r.paid_at,
            failure_reason: r.failure_reason.clone(),
            failure_message: r.failure_message.clone(),
        }
    }
    async fn cancellation(&self) -> Option<OrderCancellation> {
        let r = &self.row;
        Some(OrderCancellation {
            reason: r.cancel_reason.clone()?,
            by: r.cancelled_by.clone().unwrap_or_default(),
            at: r.cancelled_at?,
        })
    }
    /// Null until the order ships.
    async fn tracking(&self) -> Option<OrderTracking> {
        let r = &self.row;
        Some(OrderTracking {
            tracking_number: r.tracking_number.clone()?,
            carrier: r.carrier.clone().unwrap_or_default(),
            estimated_delivery: r.estimated_delivery,
            shipped_at: r.shipped_at,
            delivered_at: r.delivered_at,
        })
    }
    async fn shipping_address(&self) -> Option<ShippingAddress> {
        self.row
            .shipping_address
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
    }
    /// The lines as placed, with their products (batched across a page of orders).
    async fn lines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderLine>> {
        let lines = match &self.lines {
            Some(lines) => lines.clone(),
            None => loader::<OrderLinesLoader>(ctx)?
                .load_one(self.row.order_id)
                .await?
                .unwrap_or_default(),
        };
        Ok(lines.into_iter().map(OrderLine).collect())
    }
    /// Every step of the order, oldest first (batched across a page of orders).
    async fn timeline(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderTimelineEntry>> {
        let steps = match &self.timeline {
            Some(steps) => steps.clone(),
            None => loader::<OrderTimelineLoader>(ctx)?
                .load_one(self.row.order_id)
                .await?
                .unwrap_or_default(),
        };
        Ok(steps.into_iter().map(OrderTimelineEntry).collect())
    }
}

/// One line of an order.
pub struct OrderLine(pub LoadedOrderLine);

#[Object]
impl OrderLine {
    /// 1-based position in the order.
    async fn line_no(&self) -> i32 {
        self.0.line.line_no
    }
    async fn sku(&self) -> &str {
        &self.0.line.sku
    }
    /// The product's name when the order was placed.
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
    async fn unit_price(&self) -> MoneyV2 {
        MoneyV2::new(self.0.line.unit_price_minor, &self.0.line.currency)
    }
    async fn line_total(&self) -> MoneyV2 {
        MoneyV2::new(self.0.line.line_total_minor, &self.0.line.currency)
    }
    /// Digital lines: the license attached for this line, once there is one.
    async fn license_id(&self) -> Option<ID> {
        self.0.line.license_id.map(|l| uuid_global_id("License", l))
    }
    /// The product as it is in the catalog now, with live stock (loaded with the lines).
    async fn product(&self) -> Option<Product> {
        self.0.product.clone().map(Product)
    }
}

/// One step of an order's history.
pub struct OrderTimelineEntry(pub TimelineRow);

#[Object]
impl OrderTimelineEntry {
    /// 1-based position in the order's history.
    async fn seq(&self) -> i32 {
        self.0.seq
    }
    /// The status after this step (steps such as a retried payment attempt keep it).
    async fn status(&self) -> async_graphql::Result<OrderStatus> {
        OrderStatus::parse(&self.0.status)
    }
    /// The event behind the step, e.g. `OrderShipped` or `PaymentAttemptFailed`.
    async fn event(&self) -> &str {
        &self.0.event
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// What happened: payment reference, failure reason, tracking, refund amount and reason,
    /// the license attached, ... (keys in snake_case, amounts in minor units).
    async fn detail(&self) -> Json<serde_json::Value> {
        Json(self.0.detail.clone())
    }
}

#[derive(SimpleObject)]
pub struct OrderEdge {
    pub cursor: String,
    pub node: Order,
}

#[derive(SimpleObject)]
pub struct OrderConnection {
    pub edges: Vec<OrderEdge>,
    pub page_info: PageInfo,
}

/// Loads one order. Authorisation is the caller's business.
pub async fn load_order(pool: &sqlx::PgPool, id: Uuid) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as::<_, OrderRow>(&format!(
        "select {ORDER_COLUMNS} from sales.orders where order_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// A page of orders, newest first, optionally of one customer and in one status.
///
/// When the query asks for the orders' lines or timelines, they are loaded here for the whole
/// page with one `load_many` each, so the page costs the same statements whatever its size.
/// When an account that has not proved its address registered. Guest orders written before
/// guests got identities of their own sit on the account's id; until the address is verified
/// the account sees only what it did itself, from its registration on.
pub async fn unverified_since(
    pool: &sqlx::PgPool,
    customer: Uuid,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "select registered_at from sales.customers
         where customer_id = $1 and registered and not verified",
    )
    .bind(customer)
    .fetch_optional(pool)
    .await
    .map(Option::flatten)
}

pub async fn orders_page(
    ctx: &Context<'_>,
    pool: &sqlx::PgPool,
    customer: Option<Uuid>,
    status: Option<OrderStatus>,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<OrderConnection> {
    let viewer = Viewer::from_ctx(ctx);
    let staff = viewer.is(Role::Admin) || viewer.is(Role::Auditor);
    let since = match customer {
        Some(c) if !staff => unverified_since(pool, c).await.map_err(db_error)?,
        _ => None,
    };
    let limit = page_size(first, 20, 100)?;
    let after_key = match after.as_deref().map(decode_cursor).transpose()? {
        Some(k) => {
            let ts = k[0].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok());
            let id = k[1].as_str().and_then(|s| Uuid::parse_str(s).ok());
            match (ts, id) {
                (Some(t), Some(i)) => Some((t, i)),
                _ => {
                    return Err(bad_input("the cursor is not one this API returned"));
                }
            }
        }
        None => None,
    };
    // Only the filters in use go into the statement, so each shape can use its index.
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "select {ORDER_COLUMNS} from sales.orders where true"
    ));
    if let Some(c) = customer {
        qb.push(" and customer_id = ").push_bind(c);
    }
    if let Some(s) = status {
        qb.push(" and status = ").push_bind(s.as_str());
    }
    if let Some(since) = since {
        qb.push(" and placed_at >= ").push_bind(since);
    }
    if let Some((ts, id)) = after_key {
        qb.push(" and (placed_at, order_id) < (")
            .push_bind(ts)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    qb.push(" order by placed_at desc, order_id desc limit ")
        .push_bind(limit + 1);
    let rows: Vec<OrderRow> = qb
        .build_query_as()
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    let has_next = rows.len() as i64 > limit;
    let rows: Vec<OrderRow> = rows.into_iter().take(limit as usize).collect();
    let node = ctx.look_ahead().field("edges").field("node");
    let ids: Vec<Uuid> = rows.iter().map(|r| r.order_id).collect();
    let (mut lines, mut timelines) = futures::try_join!(
        async {
            if node.field("lines").exists() {
                let loaded = loader::<OrderLinesLoader>(ctx)?
                    .load_many(ids.iter().copied())
                    .await?;
                Ok::<_, async_graphql::Error>(Some(loaded))
            } else {
                Ok(None)
            }
        },
        async {
            if node.field("timeline").exists() {
                let loaded = loader::<OrderTimelineLoader>(ctx)?
                    .load_many(ids.iter().copied())
                    .await?;
                Ok::<_, async_graphql::Error>(Some(loaded))
            } else {
                Ok(None)
            }
        },
    )?;
    let edges: Vec<OrderEdge> = rows
        .into_iter()
        .map(|r| {
            let id = r.order_id;
            OrderEdge {
                cursor: encode_cursor(&json!([r.placed_at.to_rfc3339(), r.order_id])),
                node: Order {
                    row: r,
                    lines: lines.as_mut().map(|l| l.remove(&id).unwrap_or_default()),
                    timeline: timelines
                        .as_mut()
                        .map(|t| t.remove(&id).unwrap_or_default()),
                },
            }
        })
        .collect();
    let page_info = PageInfo {
        has_next_page: has_next,
        has_previous_page: after.is_some(),
        start_cursor: edges.first().map(|e| e.cursor.clone()),
        end_cursor: edges.last().map(|e| e.cursor.clone()),
    };
    Ok(OrderConnection { edges, page_info })
}

#[derive(Default)]
pub struct OrdersQuery;

#[Object]
impl OrdersQuery {
    /// One order, by its global id. Null when it does not exist or is not the viewer's.
    async fn order(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(desc = "Wait until the read models include this position (from a mutation).")]
        min_position: Option<String>,
    ) -> async_graphql::Result<Option<Order>> {
        let read = ReadContext::from_ctx(ctx);
        let viewer = Viewer::from_ctx(ctx);
        let id = parse_uuid_id("Order", &id)?;
        read.wait_for(ctx, ORDER_PROJECTIONS, min_position.as_deref())
            .await?;
        let Some(row) = load_order(&read.pool, id).await.map_err(db_error)? else {
            return Ok(None);
        };
        if !viewer.may_read_customer(Some(CustomerId::from(row.customer_id))) {
            return Ok(None);
        }
        let staff = viewer.is(Role::Admin) || viewer.is(Role::Auditor);
        if !staff
            && let Some(since) = unverified_since(&read.pool, row.customer_id)
                .await
                .map_err(db_error)?
            && row.placed_at < since
        {
            return Ok(None);
        }
        Ok(Some(Order::new(row)))
    }

    /// All orders, newest first, for admins and auditors; optionally of one status or one
    /// customer.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        after: Option<String>,
        status: Option<OrderStatus>,
        customer_id: Option<ID>,
        min_position: Option<String>,
    ) -> async_graphql::Result<OrderConnection> {
        let read = ReadContext::from_ctx(ctx);
        Viewer::from_ctx(ctx).require_any(&[Role::Auditor])?;
        let customer = customer_id
            .map(|c| parse_uuid_id("Customer", &c))
            .transpose()?;
        page_size(first, 20, 100)?;
        read.wait_for(ctx, ORDER_PROJECTIONS, min_position.as_deref())
            .await?;
        orders_page(ctx, &read.pool, customer, status, first, after).await
    }
}
