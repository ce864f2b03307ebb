//! Analytics over GraphQL: the views of the `analytics` schema (see docs/read-models.md for
//! exactly how each is computed). Readable by analysts and admins only.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};
use purser_domain::customer::Role;

use crate::orders::OrderStatus;
use purser_api_core::ReadContext;
use purser_api_core::auth::Viewer;
use purser_api_core::errors::{bad_input, db_error};
use purser_api_core::wire::MoneyV2;

/// The projections analytics reads.
pub const ANALYTICS_PROJECTIONS: &[&str] = &["analytics"];

/// The most buckets one revenue query returns; a longer range must be narrowed.
pub const MAX_BUCKETS: i64 = 5_000;

/// Money captured and refunded in one hour or day, in one currency.
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct RevenueBucket {
    /// The start of the hour or day (UTC).
    pub start: DateTime<Utc>,
    pub currency: String,
    pub captured: MoneyV2,
    pub refunded: MoneyV2,
    /// Captured minus refunded.
    pub net: MoneyV2,
    pub captures: i32,
    pub refunds: i32,
}

#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct OrderStatusCount {
    pub status: OrderStatus,
    pub orders: i32,
    /// Fraction of all orders, 0 to 1.
    pub share: f64,
}

#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct TopProduct {
    pub sku: String,
    /// The name on its most recent order line.
    pub name: String,
    pub units_sold: i64,
    pub revenue: MoneyV2,
    pub orders: i32,
}

#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct AverageOrderValue {
    pub currency: String,
    /// Orders that were paid.
    pub orders: i32,
    pub revenue: MoneyV2,
    pub average: MoneyV2,
}

#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct ConversionRate {
    pub carts_created: i32,
    pub carts_checked_out: i32,
    pub orders_placed: i32,
    pub orders_paid: i32,
    /// Orders placed per cart created; null before any cart exists.
    pub rate: Option<f64>,
    /// Orders paid per cart created.
    pub paid_rate: Option<f64>,
}

#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct CartAbandonment {
    pub carts_created: i32,
    pub carts_checked_out: i32,
    pub carts_abandoned: i32,
    /// Carts neither checked out nor abandoned yet.
    pub carts_open: i32,
    /// Abandoned / (abandoned + checked out); null before any cart has an outcome.
    pub rate: Option<f64>,
}

#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct PaymentFailureReason {
    /// insufficient_funds, invalid_payment_details, declined or gateway_timeout.
    pub reason: String,
    pub failures: i32,
    /// Fraction of all final failures, 0 to 1.
    pub share: f64,
    pub last_at: DateTime<Utc>,
}

#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct InventoryTurnover {
    pub sku: String,
    /// Units whose reservations were confirmed in the period.
    pub units_sold: i64,
    pub opening_on_hand: i64,
    pub closing_on_hand: i64,
    /// Time-weighted average of on-hand stock over the period.
    pub average_on_hand: f64,
    /// units_sold / average_on_hand; null when nothing was on hand.
    pub turnover: Option<f64>,
}

/// Analytics; reached through `analytics`, which checks the viewer's role once.
pub struct Analytics;

fn bad_range(message: &str) -> async_graphql::Error {
    bad_input(message)
}

fn check_range(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> async_graphql::Result<()> {
    match (from, to) {
        (Some(f), Some(t)) if f >= t => Err(bad_range("`from` must be before `to`")),
        _ => Ok(()),
    }
}

/// Buckets of `view` that overlap [from, to). `width` is the bucket's length as an SQL
/// interval literal.
async fn revenue(
    ctx: &Context<'_>,
    view: &str,
    start_expr: &str,
    width: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    currency: Option<String>,
) -> async_graphql::Result<Vec<RevenueBucket>> {
    check_range(from, to)?;
    let read = ReadContext::from_ctx(ctx);
    type Row = (DateTime<Utc>, String, i64, i64, i64, i32, i32);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "select * from (
             select {start_expr} as start, currency, captured_minor, refunded_minor, net_minor,
                    captures, refunds
             from {view}) r
         where ($1::timestamptz is null or start + interval '{width}' > $1)
           and ($2::timestamptz is null or start < $2)
           and ($3::text is null or currency = $3)
         order by start, currency
         limit $4"
    ))
    .bind(from)
    .bind(to)
    .bind(currency.map(|c| c.trim().to_ascii_uppercase()))
    .bind(MAX_BUCKETS + 1)
    .fetch_all(&read.pool)
    .await
    .map_err(db_error)?;
    if rows.len() as i64 > MAX_BUCKETS {
        return Err(bad_range(&format!(
            "more than {MAX_BUCKETS} buckets; narrow the range with `from` and `to`"
        )));
    }
    Ok(rows
        .into_iter()
        .map(
            |(start, currency, captured, refunded, net, captures, refunds)| RevenueBucket {
                start,
                captured: MoneyV2::new(captured, &currency),
                refunded: MoneyV2::new(refunded, &currency),
                net: MoneyV2::new(net, &currency),
                currency,
                captures,
                refunds,
            },
        )
        .collect())
}

#[Object]
impl Analytics {
    /// Captured, refunded and net money per UTC day and currency, for the days that overlap
    /// [from, to).
    async fn revenue_by_day(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        currency: Option<String>,
    ) -> async_graphql::Result<Vec<RevenueBucket>> {
        revenue(
            ctx,
            "analytics.revenue_by_day",
            "(day::timestamp at time zone 'UTC')",
            "1 day",
            from,
            to,
            currency,
        )
        .await
    }

    /// Captured, refunded and net money per UTC hour and currency, for the hours that overlap
    /// [from, to).
    async fn revenue_by_hour(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        currency: Option<String>,
    ) -> async_graphql::Result<Vec<RevenueBucket>> {
        revenue(
            ctx,
            "analytics.revenue_by_hour",
            "hour",
            "1 hour",
            from,
            to,
            currency,
        )
        .await
    }

    /// Orders per current status, most common first.
    async fn orders_by_status(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<OrderStatusCount>> {
        let read = ReadContext::from_ctx(ctx);
        let rows: Vec<(String, i32, f64)> = sqlx::query_as(
            "select status, orders, share::float8 from analytics.orders_by_status
             order by orders desc, status",
        )
        .fetch_all(&read.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(status, orders, share)| {
                Ok(OrderStatusCount {
                    status: OrderStatus::parse(&status)?,
                    orders,
                    share,
                })
            })
            .collect()
    }

    /// Best-selling products by units, over paid orders that were neither cancelled nor
    /// refunded.
    async fn top_products(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many, 1 to 100 (default 10).")] limit: Option<i32>,
    ) -> async_graphql::Result<Vec<TopProduct>> {
        let limit = purser_api_core::wire::page_size(limit, 10, 100)?;
        let read = ReadContext::from_ctx(ctx);
        let rows: Vec<(String, String, String, i64, i64, i32)> = sqlx::query_as(
            "select sku, name, currency, units_sold, revenue_minor, orders
             from analytics.top_products
             order by units_sold desc, revenue_minor desc, sku limit $1",
        )
        .bind(limit)
        .fetch_all(&read.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(
                |(sku, name, currency, units_sold, revenue, orders)| TopProduct {
                    sku,
                    name,
                    units_sold,
                    revenue: MoneyV2::new(revenue, &currency),
                    orders,
                },
            )
            .collect())
    }

    /// Average captured amount of paid orders, per currency.
    async fn average_order_value(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<AverageOrderValue>> {
        let read = ReadContext::from_ctx(ctx);
        let rows: Vec<(String, i32, i64, i64)> = sqlx::query_as(
            "select currency, orders, revenue_minor, average_order_value_minor
             from analytics.average_order_value order by currency",
        )
        .fetch_all(&read.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(currency, orders, revenue, average)| AverageOrderValue {
                orders,
                revenue: MoneyV2::new(revenue, &currency),
                average: MoneyV2::new(average, &currency),
                currency,
            })
            .collect())
    }

    /// Orders placed (and paid) per cart created.
    async fn conversion_rate(&self, ctx: &Context<'_>) -> async_graphql::Result<ConversionRate> {
        let read = ReadContext::from_ctx(ctx);
        let (carts_created, carts_checked_out, orders_placed, orders_paid, rate, paid_rate): (
            i32,
            i32,
            i32,
            i32,
            Option<f64>,
            Option<f64>,
        ) = sqlx::query_as(
            "select carts_created, carts_checked_out, orders_placed, orders_paid,
                    conversion_rate::float8, paid_conversion_rate::float8
             from analytics.conversion_rate",
        )
        .fetch_one(&read.pool)
        .await
        .map_err(db_error)?;
        Ok(ConversionRate {
            carts_created,
            carts_checked_out,
            orders_placed,
            orders_paid,
            rate,
            paid_rate,
        })
    }

    /// Abandoned carts among carts that reached an outcome.
    async fn cart_abandonment_rate(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<CartAbandonment> {
        let read = ReadContext::from_ctx(ctx);
        let (carts_created, carts_checked_out, carts_abandoned, carts_open, rate): (
            i32,
            i32,
            i32,
            i32,
            Option<f64>,
        ) = sqlx::query_as(
            "select carts_created, carts_checked_out, carts_abandoned, carts_open,
                    abandonment_rate::float8
             from analytics.cart_abandonment_rate",
        )
        .fetch_one(&read.pool)
        .await
        .map_err(db_error)?;
        Ok(CartAbandonment {
            carts_created,
            carts_checked_out,
            carts_abandoned,
            carts_open,
            rate,
        })
    }

    /// Final payment failures per reason, most common first.
    async fn payment_failure_reasons(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<PaymentFailureReason>> {
        let read = ReadContext::from_ctx(ctx);
        let rows: Vec<(String, i32, f64, DateTime<Utc>)> = sqlx::query_as(
            "select reason, failures, share::float8, last_at
             from analytics.payment_failure_reasons order by failures desc, reason",
        )
        .fetch_all(&read.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(reason, failures, share, last_at)| PaymentFailureReason {
                reason,
                failures,
                share,
                last_at,
            })
            .collect())
    }

    /// Inventory turnover per SKU over [from, to): units sold / time-weighted average on-hand.
    /// Without `from`, from the first inventory movement; without `to`, until now.
    async fn inventory_turnover(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<Vec<InventoryTurnover>> {
        check_range(from, to)?;
        let read = ReadContext::from_ctx(ctx);
        type Row = (String, i64, i64, i64, f64, Option<f64>);
        let rows: Vec<Row> = sqlx::query_as(
            "select t.sku, t.units_sold, t.opening_on_hand, t.closing_on_hand,
                    t.average_on_hand::float8, t.turnover::float8
             from (select coalesce($1, min(at)) as since from analytics.fact_inventory_movements) p,
                  lateral analytics.inventory_turnover_between(p.since, coalesce($2, now())) t
             order by t.turnover desc nulls last, t.sku",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&read.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(
                |(sku, units_sold, opening_on_hand, closing_on_hand, average_on_hand, turnover)| {
                    InventoryTurnover {
                        sku,
                        units_sold,
                        opening_on_hand,
                        closing_on_hand,
                        average_on_hand,
                        turnover,
                    }
                },
            )
            .collect())
    }
}

#[derive(Default)]
pub struct AnalyticsQuery;

#[Object]
impl AnalyticsQuery {
    /// Sales analytics, for analysts and admins.
    async fn analytics(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Wait until analytics include this position (from a mutation).")]
        min_position: Option<String>,
    ) -> async_graphql::Result<Analytics> {
        Viewer::from_ctx(ctx).require(Role::Analyst)?;
        ReadContext::from_ctx(ctx)
            .wait_for(ctx, ANALYTICS_PROJECTIONS, min_position.as_deref())
            .await?;
        Ok(Analytics)
    }
}
