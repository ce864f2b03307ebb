//! Row 7's baseline: the SQL statements the resolvers run for the search page and the order,
//! run directly, in the same order and with the same concurrency inside a request.

use std::collections::BTreeSet;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// The columns the catalog queries select (`purser_api_core::product::PRODUCT_COLUMNS`).
const PRODUCT_COLUMNS: &str = "p.sku, p.name, p.description, p.brand, p.category, p.kind, \
     p.license_source, p.price_minor, p.currency, p.discontinued, p.created_at, p.updated_at, \
     coalesce(s.on_hand, 0) as on_hand, coalesce(s.reserved, 0) as reserved";

/// The columns of an order (`purser_query_api::orders::ORDER_COLUMNS`).
const ORDER_COLUMNS: &str = "order_id, customer_id, email, status, currency, total_minor, \
     item_count, line_count, cart_id, payment_id, payment_reference, captured_minor, paid_at, \
     failure_reason, failure_message, cancel_reason, cancelled_by, cancelled_at, refunded_minor, \
     tracking_number, carrier, estimated_delivery, shipped_at, delivered_at, fulfilled_at, \
     has_digital, has_physical, shipping_address, placed_at, updated_at";

/// The price facet's bucket bounds (`purser_query_api::catalog::PRICE_BOUNDS`).
const PRICE_BOUNDS: [i64; 6] = [2_500, 5_000, 10_000, 25_000, 50_000, 100_000];

#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct ProductRow {
    sku: String,
    name: String,
    description: String,
    brand: String,
    category: String,
    kind: String,
    license_source: Option<String>,
    price_minor: i64,
    currency: String,
    discontinued: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    on_hand: i64,
    reserved: i64,
}

#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct OrderRow {
    order_id: Uuid,
    customer_id: Uuid,
    email: String,
    status: String,
    currency: String,
    total_minor: i64,
    item_count: i32,
    line_count: i32,
    cart_id: Option<Uuid>,
    payment_id: Option<Uuid>,
    payment_reference: Option<String>,
    captured_minor: Option<i64>,
    paid_at: Option<DateTime<Utc>>,
    failure_reason: Option<String>,
    failure_message: Option<String>,
    cancel_reason: Option<String>,
    cancelled_by: Option<String>,
    cancelled_at: Option<DateTime<Utc>>,
    refunded_minor: i64,
    tracking_number: Option<String>,
    carrier: Option<String>,
    estimated_delivery: Option<DateTime<Utc>>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    fulfilled_at: Option<DateTime<Utc>>,
    has_digital: bool,
    has_physical: bool,
    shipping_address: Option<Value>,
    placed_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct LineRow {
    order_id: Uuid,
    line_no: i32,
    sku: String,
    name: String,
    kind: String,
    qty: i32,
    unit_price_minor: i64,
    line_total_minor: i64,
    currency: String,
    license_id: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct StepRow {
    order_id: Uuid,
    seq: i32,
    status: String,
    event: String,
    at: DateTime<Utc>,
    detail: Value,
}

/// `from catalog.products p left join catalog.stock s using (sku) where …` as the search
/// builds it for a text query and no filters, with its parameters numbered from `first`.
fn search_where(first: usize) -> String {
    format!(
        " from catalog.products p left join catalog.stock s using (sku) where true \
         and (p.search @@ websearch_to_tsquery('english', ${}) or ${} <% p.name or ${} <% p.brand)",
        first,
        first + 1,
        first + 2
    )
}

/// The search page as the resolvers run it: the page, then count and facets together.
pub(super) async fn raw_search(pool: &PgPool, q: &str) -> anyhow::Result<usize> {
    let page_sql = format!(
        "select {PRODUCT_COLUMNS}{} order by ts_rank_cd(p.search, websearch_to_tsquery('english', $4)) \
         + word_similarity($5, p.name) desc, p.sku limit $6",
        search_where(1)
    );
    let page: Vec<ProductRow> = sqlx::query_as(&page_sql)
        .bind(q)
        .bind(q)
        .bind(q)
        .bind(q)
        .bind(q)
        .bind(21i64)
        .fetch_all(pool)
        .await?;
    let count_sql = format!("select count(*){}", search_where(1));
    let facets_sql = format!(
        "select 'brand' as facet, p.brand as value, null::int as bucket, count(*) as n{} \
         and p.brand <> '' group by p.brand union all \
         select 'category', p.category, null::int, count(*){} \
         and p.category <> '' group by p.category union all \
         select 'price', null, width_bucket(p.price_minor, $7::bigint[]), count(*){} group by 3",
        search_where(1),
        search_where(4),
        search_where(8)
    );
    let (count, facets) = futures::try_join!(
        sqlx::query_scalar::<_, i64>(&count_sql)
            .bind(q)
            .bind(q)
            .bind(q)
            .fetch_one(pool),
        sqlx::query_as::<_, (String, Option<String>, Option<i32>, i64)>(&facets_sql)
            .bind(q)
            .bind(q)
            .bind(q)
            .bind(q)
            .bind(q)
            .bind(q)
            .bind(PRICE_BOUNDS.to_vec())
            .bind(q)
            .bind(q)
            .bind(q)
            .fetch_all(pool),
    )?;
    Ok(page.len() + count as usize + facets.len())
}

/// The order query as the resolvers run it: the order, then its lines (with their products)
/// and its timeline together.
pub(super) async fn raw_order(pool: &PgPool, id: Uuid) -> anyhow::Result<usize> {
    let order: Option<OrderRow> = sqlx::query_as(&format!(
        "select {ORDER_COLUMNS} from sales.orders where order_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let order = order.context("order not found")?;
    let ids = vec![order.order_id];
    let (lines, steps) = futures::try_join!(
        async {
            let lines: Vec<LineRow> = sqlx::query_as(
                "select order_id, line_no, sku, name, kind, qty, unit_price_minor, line_total_minor,
                        currency, license_id
                 from sales.order_lines where order_id = any($1)
                 order by order_id, line_no",
            )
            .bind(&ids)
            .fetch_all(pool)
            .await?;
            let skus: Vec<String> = lines
                .iter()
                .map(|l| l.sku.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let products: Vec<ProductRow> = sqlx::query_as(&format!(
                "select {PRODUCT_COLUMNS} from catalog.products p
                 left join catalog.stock s using (sku) where p.sku = any($1)"
            ))
            .bind(&skus)
            .fetch_all(pool)
            .await?;
            Ok::<_, sqlx::Error>(lines.len() + products.len())
        },
        sqlx::query_as::<_, StepRow>(
            "select order_id, seq, status, event, at, detail
             from sales.order_timeline where order_id = any($1)
             order by order_id, seq",
        )
        .bind(&ids)
        .fetch_all(pool),
    )?;
    Ok(lines + steps.len())
}
