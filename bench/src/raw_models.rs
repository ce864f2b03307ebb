//! Row 4's baseline: the catalog, order and analytics read-model rows written by hand, with
//! the same statements the projections issue (`projections/src/{catalog,orders,analytics}.rs`),
//! for the events the generator makes (the order model's fold is in `raw_orders.rs`). No
//! projector runtime: no subscription, no visibility
//! horizon, no claim, no checkpoint, no trait objects. After a run the bench compares every
//! table's checksum with the projections' own result, so "the same rows" is checked, not
//! assumed.

use std::collections::HashMap;

use anyhow::bail;
use chrono::{DateTime, Utc};
use purser_domain::AnyEvent;
use purser_domain::inventory::{AdjustmentReason, InventoryEvent, ReleaseReason};
use purser_domain::order::{CancelledBy, OrderEvent, OrderLine};
use purser_domain::payment::PaymentEvent;
use purser_domain::product::{ProductEvent, ProductKind};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Model {
    Catalog,
    Orders,
    Analytics,
}

impl Model {
    pub(crate) const ALL: [Model; 3] = [Model::Catalog, Model::Orders, Model::Analytics];

    /// The stream categories each model reads (as its projection's filter).
    pub(crate) fn categories(self) -> &'static [&'static str] {
        match self {
            Model::Catalog => &["product", "inventory"],
            Model::Orders => &["order", "payment"],
            Model::Analytics => &["order", "payment", "cart", "inventory"],
        }
    }

    /// Writes one event's rows, or adds them to `page` when the projection writes them for a
    /// whole batch at once (stock moves, inventory movement facts).
    pub(crate) async fn apply(
        self,
        tx: &mut PgConnection,
        page: &mut Page,
        event_id: Uuid,
        event_type: &str,
        event: &AnyEvent,
    ) -> anyhow::Result<()> {
        match (self, event) {
            (Model::Catalog, AnyEvent::Product(e)) => catalog_product(tx, e).await,
            (Model::Catalog, AnyEvent::Inventory(e)) => catalog_stock(page, e),
            (Model::Orders, AnyEvent::Order(e)) => {
                page.sales.order(event_type, e);
                Ok(())
            }
            (Model::Orders, AnyEvent::Payment(e)) => {
                page.sales.payment(event_type, e);
                Ok(())
            }
            (Model::Analytics, AnyEvent::Order(e)) => analytics_order(page, e),
            (Model::Analytics, AnyEvent::Payment(e)) => analytics_payment(page, event_id, e),
            (Model::Analytics, AnyEvent::Inventory(e)) => analytics_inventory(page, event_id, e),
            (_, other) => bail!(
                "the raw baseline does not handle {} (the generator does not make it)",
                other.event_type()
            ),
        }
    }
}

async fn catalog_product(tx: &mut PgConnection, e: &ProductEvent) -> anyhow::Result<()> {
    let ProductEvent::ProductCreated {
        sku,
        name,
        description,
        brand,
        category,
        kind,
        price,
        at,
    } = e
    else {
        bail!("the raw baseline only handles ProductCreated");
    };
    let (kind, license_source) = match kind {
        ProductKind::Physical => ("physical", None),
        ProductKind::Digital { license, .. } => (
            "digital",
            Some(match license {
                purser_domain::product::LicenseSource::Pool => "pool",
                purser_domain::product::LicenseSource::Signed => "signed",
            }),
        ),
    };
    sqlx::query(
        "insert into catalog.products
            (sku, name, description, brand, category, kind, license_source, price_minor,
             currency, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(sku.as_str())
    .bind(name)
    .bind(description)
    .bind(brand)
    .bind(category)
    .bind(kind)
    .bind(license_source)
    .bind(price.minor)
    .bind(price.currency.code())
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What a page writes at its end, as the projections do for a batch.
#[derive(Default)]
pub(crate) struct Page {
    /// Stock deltas summed per SKU: (sku, on hand, reserved, time of the last).
    stock: Vec<(String, i64, i64, DateTime<Utc>)>,
    stock_index: HashMap<String, usize>,
    /// Inventory movement facts, one per event: (event id, sku, kind, reason, note,
    /// reservation, order, qty, on-hand delta, reserved delta, time).
    movements: Vec<Movement>,
    /// Payment facts, one per event: (event id, payment, order, kind, amount, currency,
    /// reason, message, gateway reference, time).
    payments: Vec<PaymentRow>,
    /// The first intent's amount and currency per payment seen in the page.
    intents: HashMap<Uuid, (i64, String)>,
    /// Orders placed in the page (analytics): inserted with their lines in one statement.
    placed: Vec<OrderEvent>,
    /// Order fact rows' changes, folded per order.
    orders: Vec<FactOrderUpdate>,
    order_index: HashMap<Uuid, usize>,
    /// The order read model's events (see `raw_orders.rs`).
    sales: crate::raw_orders::SalesPage,
}

#[derive(Default)]
struct FactOrderUpdate {
    order_id: Uuid,
    status: &'static str,
    updated_at: DateTime<Utc>,
    payment_started_at: Option<DateTime<Utc>>,
    paid_at: Option<DateTime<Utc>>,
    paid_minor: Option<i64>,
    payment_failed_at: Option<DateTime<Utc>>,
    failure_reason: Option<String>,
    confirmed_at: Option<DateTime<Utc>>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    cancelled_by: Option<&'static str>,
}

type PaymentRow = (
    Uuid,
    Uuid,
    Uuid,
    &'static str,
    Option<i64>,
    Option<String>,
    Option<&'static str>,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
);

type Movement = (
    Uuid,
    String,
    &'static str,
    Option<&'static str>,
    Option<String>,
    Option<Uuid>,
    Option<Uuid>,
    i64,
    i64,
    i64,
    DateTime<Utc>,
);

impl Page {
    /// The page's batched writes, one statement each.
    pub(crate) async fn finish(self, tx: &mut PgConnection) -> anyhow::Result<()> {
        self.sales.finish(&mut *tx).await?;
        if !self.placed.is_empty() {
            insert_fact_orders(&mut *tx, &self.placed).await?;
        }
        if !self.orders.is_empty() {
            let o = &self.orders;
            let col = |f: fn(&FactOrderUpdate) -> Option<DateTime<Utc>>| {
                o.iter().map(f).collect::<Vec<_>>()
            };
            let c = (
                o.iter().map(|u| u.order_id).collect::<Vec<_>>(),
                o.iter().map(|u| u.status).collect::<Vec<_>>(),
                o.iter().map(|u| u.updated_at).collect::<Vec<_>>(),
                col(|u| u.payment_started_at),
                col(|u| u.paid_at),
                o.iter().map(|u| u.paid_minor).collect::<Vec<_>>(),
                col(|u| u.payment_failed_at),
                o.iter()
                    .map(|u| u.failure_reason.clone())
                    .collect::<Vec<_>>(),
                col(|u| u.confirmed_at),
                col(|u| u.shipped_at),
                col(|u| u.delivered_at),
                col(|u| u.cancelled_at),
                o.iter().map(|u| u.cancelled_by).collect::<Vec<_>>(),
            );
            sqlx::query(
                "update analytics.fact_orders f
                 set status = u.status, updated_at = u.updated_at,
                     payment_started_at = coalesce(f.payment_started_at, u.payment_started_at),
                     paid_minor = case when f.paid_at is null and u.paid_at is not null
                                       then u.paid_minor else f.paid_minor end,
                     paid_at = coalesce(f.paid_at, u.paid_at),
                     payment_failed_at = coalesce(f.payment_failed_at, u.payment_failed_at),
                     failure_reason = coalesce(u.failure_reason, f.failure_reason),
                     confirmed_at = coalesce(f.confirmed_at, u.confirmed_at),
                     shipped_at = coalesce(f.shipped_at, u.shipped_at),
                     delivered_at = coalesce(f.delivered_at, u.delivered_at),
                     cancelled_at = coalesce(f.cancelled_at, u.cancelled_at),
                     cancelled_by = coalesce(u.cancelled_by, f.cancelled_by)
                 from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                             $5::timestamptz[], $6::bigint[], $7::timestamptz[], $8::text[],
                             $9::timestamptz[], $10::timestamptz[], $11::timestamptz[],
                             $12::timestamptz[], $13::text[])
                      as u(order_id, status, updated_at, payment_started_at, paid_at,
                           paid_minor, payment_failed_at, failure_reason, confirmed_at,
                           shipped_at, delivered_at, cancelled_at, cancelled_by)
                 where f.order_id = u.order_id",
            )
            .bind(c.0)
            .bind(c.1)
            .bind(c.2)
            .bind(c.3)
            .bind(c.4)
            .bind(c.5)
            .bind(c.6)
            .bind(c.7)
            .bind(c.8)
            .bind(c.9)
            .bind(c.10)
            .bind(c.11)
            .bind(c.12)
            .execute(&mut *tx)
            .await?;
        }
        if !self.payments.is_empty() {
            let n = self.payments.len();
            let mut cols = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for p in self.payments {
                cols.0.push(p.0);
                cols.1.push(p.1);
                cols.2.push(p.2);
                cols.3.push(p.3);
                cols.4.push(p.4);
                cols.5.push(p.5);
                cols.6.push(p.6);
                cols.7.push(p.7);
                cols.8.push(p.8);
                cols.9.push(p.9);
            }
            sqlx::query(
                "insert into analytics.fact_payments
                    (event_id, payment_id, order_id, kind, amount_minor, currency, reason,
                     message, gateway_reference, refund_reference, attempt, at)
                 select t.event_id, t.payment_id, t.order_id, t.kind,
                        coalesce(t.amount, i.amount_minor), coalesce(t.currency, i.currency),
                        t.reason, t.message, t.gateway_reference, null, null, t.at
                 from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[],
                             $6::text[], $7::text[], $8::text[], $9::text[],
                             $10::timestamptz[])
                      with ordinality as t(event_id, payment_id, order_id, kind, amount,
                                           currency, reason, message, gateway_reference, at,
                                           ord)
                 left join lateral (
                     select amount_minor, currency from analytics.fact_payments f
                     where f.payment_id = t.payment_id and f.kind = 'intent_created'
                     order by f.at, f.event_id limit 1) i on t.amount is null
                 order by t.ord",
            )
            .bind(cols.0)
            .bind(cols.1)
            .bind(cols.2)
            .bind(cols.3)
            .bind(cols.4)
            .bind(cols.5)
            .bind(cols.6)
            .bind(cols.7)
            .bind(cols.8)
            .bind(cols.9)
            .execute(&mut *tx)
            .await?;
        }
        if !self.stock.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (sku, on_hand, reserved, at) in self.stock {
                cols.0.push(sku);
                cols.1.push(on_hand);
                cols.2.push(reserved);
                cols.3.push(at);
            }
            sqlx::query(
                "with d as (
                     select * from unnest($1::text[], $2::bigint[], $3::bigint[],
                                          $4::timestamptz[])
                         as d(sku, on_hand, reserved, at)),
                 moved as (
                     update catalog.stock s
                     set on_hand = s.on_hand + d.on_hand, reserved = s.reserved + d.reserved,
                         updated_at = d.at
                     from d where s.sku = d.sku
                     returning s.sku)
                 insert into catalog.stock (sku, on_hand, reserved, updated_at)
                 select d.sku, d.on_hand, d.reserved, d.at from d
                 where d.sku not in (select sku from moved)",
            )
            .bind(cols.0)
            .bind(cols.1)
            .bind(cols.2)
            .bind(cols.3)
            .execute(&mut *tx)
            .await?;
        }
        if !self.movements.is_empty() {
            let n = self.movements.len();
            let (mut id, mut sku, mut kind, mut reason, mut note, mut res, mut order) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut qty, mut on_hand, mut reserved, mut at) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for m in self.movements {
                id.push(m.0);
                sku.push(m.1);
                kind.push(m.2);
                reason.push(m.3);
                note.push(m.4);
                res.push(m.5);
                order.push(m.6);
                qty.push(m.7);
                on_hand.push(m.8);
                reserved.push(m.9);
                at.push(m.10);
            }
            sqlx::query(
                "insert into analytics.fact_inventory_movements
                    (event_id, sku, kind, reason, note, reservation_id, order_id, qty,
                     on_hand_delta, reserved_delta, at)
                 select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
                                      $5::text[], $6::uuid[], $7::uuid[], $8::bigint[],
                                      $9::bigint[], $10::bigint[], $11::timestamptz[])",
            )
            .bind(id)
            .bind(sku)
            .bind(kind)
            .bind(reason)
            .bind(note)
            .bind(res)
            .bind(order)
            .bind(qty)
            .bind(on_hand)
            .bind(reserved)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

fn catalog_stock(page: &mut Page, e: &InventoryEvent) -> anyhow::Result<()> {
    let q = |q: &purser_domain::Quantity| i64::from(q.get());
    let (sku, on_hand, reserved, at) = match e {
        InventoryEvent::StockReceived { sku, qty, at } => (sku, q(qty), 0, at),
        InventoryEvent::StockAdjusted { sku, delta, at, .. } => (sku, *delta, 0, at),
        InventoryEvent::StockReserved { sku, qty, at, .. } => (sku, 0, q(qty), at),
        InventoryEvent::ReservationConfirmed { sku, qty, at, .. } => (sku, -q(qty), -q(qty), at),
        InventoryEvent::ReservationReleased { sku, qty, at, .. } => (sku, 0, -q(qty), at),
        InventoryEvent::ReservationRejected { .. } => return Ok(()),
    };
    match page.stock_index.get(sku.as_str()) {
        Some(&i) => {
            let row = &mut page.stock[i];
            row.1 += on_hand;
            row.2 += reserved;
            row.3 = *at;
        }
        None => {
            page.stock_index
                .insert(sku.as_str().to_owned(), page.stock.len());
            page.stock
                .push((sku.as_str().to_owned(), on_hand, reserved, *at));
        }
    }
    Ok(())
}

/// The analytics fact rows of the orders placed in a page and of their lines.
async fn insert_fact_orders(tx: &mut PgConnection, placed: &[OrderEvent]) -> anyhow::Result<()> {
    let mut o = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut l = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for e in placed {
        let OrderEvent::OrderPlaced {
            order_id,
            customer_id,
            lines,
            total,
            cart_id,
            at,
            ..
        } = e
        else {
            continue;
        };
        o.0.push(order_id.as_uuid());
        o.1.push(customer_id.as_uuid());
        o.2.push(cart_id.map(|c| c.as_uuid()));
        o.3.push(total.currency.code());
        o.4.push(total.minor);
        o.5.push(lines.iter().map(|x| i64::from(x.qty.get())).sum::<i64>());
        o.6.push(lines.len() as i32);
        o.7.push(lines.iter().any(OrderLine::is_digital));
        o.8.push(lines.iter().any(|x| !x.is_digital()));
        o.9.push(*at);
        for (n, x) in lines.iter().enumerate() {
            l.0.push(order_id.as_uuid());
            l.1.push(n as i32 + 1);
            l.2.push(x.sku.as_str());
            l.3.push(x.name.as_str());
            l.4.push(if x.is_digital() {
                "digital"
            } else {
                "physical"
            });
            l.5.push(x.qty.get() as i32);
            l.6.push(x.unit_price.minor);
            l.7.push(x.line_total.minor);
            l.8.push(x.unit_price.currency.code());
            l.9.push(*at);
        }
    }
    sqlx::query(
        "with o as (
             insert into analytics.fact_orders
                (order_id, customer_id, cart_id, currency, total_minor, item_count, line_count,
                 has_digital, has_physical, status, placed_at, updated_at)
             select o.order_id, o.customer_id, o.cart_id, o.currency, o.total_minor,
                    o.item_count, o.line_count, o.has_digital, o.has_physical, 'PENDING',
                    o.placed_at, o.placed_at
             from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[],
                         $6::bigint[], $7::int[], $8::bool[], $9::bool[], $10::timestamptz[])
                  as o(order_id, customer_id, cart_id, currency, total_minor, item_count,
                       line_count, has_digital, has_physical, placed_at))
         insert into analytics.fact_order_lines
            (order_id, line_no, sku, name, kind, qty, unit_price_minor, line_total_minor,
             currency, placed_at)
         select * from unnest($11::uuid[], $12::int[], $13::text[], $14::text[], $15::text[],
                              $16::int[], $17::bigint[], $18::bigint[], $19::text[],
                              $20::timestamptz[])",
    )
    .bind(o.0)
    .bind(o.1)
    .bind(o.2)
    .bind(o.3)
    .bind(o.4)
    .bind(o.5)
    .bind(o.6)
    .bind(o.7)
    .bind(o.8)
    .bind(o.9)
    .bind(l.0)
    .bind(l.1)
    .bind(l.2)
    .bind(l.3)
    .bind(l.4)
    .bind(l.5)
    .bind(l.6)
    .bind(l.7)
    .bind(l.8)
    .bind(l.9)
    .execute(tx)
    .await?;
    Ok(())
}

fn cancelled_by(by: &CancelledBy) -> &'static str {
    match by {
        CancelledBy::Customer => "customer",
        CancelledBy::Admin => "admin",
        CancelledBy::System => "system",
    }
}

fn analytics_order(page: &mut Page, e: &OrderEvent) -> anyhow::Result<()> {
    if let OrderEvent::OrderPlaced { .. } = e {
        page.placed.push(e.clone());
        return Ok(());
    }
    // Every later order event folds into the page's update of the order's fact row (as the
    // projection does): the last status, each milestone's first time, the last reason.
    let (order_id, at, status) = match e {
        OrderEvent::OrderPaymentStarted { order_id, at, .. } => {
            (order_id, at, "PAYMENT_PROCESSING")
        }
        OrderEvent::OrderPaid { order_id, at, .. } => (order_id, at, "PAID"),
        OrderEvent::OrderPaymentFailed { order_id, at, .. } => (order_id, at, "PAYMENT_FAILED"),
        OrderEvent::OrderConfirmed { order_id, at } => (order_id, at, "CONFIRMED"),
        OrderEvent::OrderProcessingStarted { order_id, at } => (order_id, at, "PROCESSING"),
        OrderEvent::OrderShipped { order_id, at, .. } => (order_id, at, "SHIPPED"),
        OrderEvent::OrderDelivered { order_id, at } => (order_id, at, "DELIVERED"),
        OrderEvent::OrderCancelled { order_id, at, .. } => (order_id, at, "CANCELLED"),
        other => bail!(
            "the raw baseline does not handle {}",
            purser_domain::Event::event_type(other)
        ),
    };
    let id = order_id.as_uuid();
    let i = match page.order_index.get(&id) {
        Some(&i) => i,
        None => {
            page.order_index.insert(id, page.orders.len());
            page.orders.push(FactOrderUpdate {
                order_id: id,
                status,
                updated_at: *at,
                ..FactOrderUpdate::default()
            });
            page.orders.len() - 1
        }
    };
    let u = &mut page.orders[i];
    u.status = status;
    u.updated_at = *at;
    match e {
        OrderEvent::OrderPaymentStarted { .. } => {
            u.payment_started_at.get_or_insert(*at);
        }
        OrderEvent::OrderPaid { amount, .. } if u.paid_at.is_none() => {
            u.paid_at = Some(*at);
            u.paid_minor = Some(amount.minor);
        }
        OrderEvent::OrderPaymentFailed { reason, .. } => {
            u.payment_failed_at.get_or_insert(*at);
            u.failure_reason = Some(reason.clone());
        }
        OrderEvent::OrderConfirmed { .. } => {
            u.confirmed_at.get_or_insert(*at);
        }
        OrderEvent::OrderShipped { .. } => {
            u.shipped_at.get_or_insert(*at);
        }
        OrderEvent::OrderDelivered { .. } => {
            u.delivered_at.get_or_insert(*at);
        }
        OrderEvent::OrderCancelled { by, .. } => {
            u.cancelled_at.get_or_insert(*at);
            u.cancelled_by = Some(cancelled_by(by));
        }
        _ => {}
    }
    Ok(())
}

fn analytics_payment(page: &mut Page, event_id: Uuid, e: &PaymentEvent) -> anyhow::Result<()> {
    // (payment, order, kind, amount, currency, reason, message, gateway reference, at)
    #[allow(clippy::type_complexity)]
    let (payment_id, order_id, kind, amount, currency, reason, message, reference, at): (
        Uuid,
        Uuid,
        &'static str,
        Option<i64>,
        Option<&str>,
        Option<&'static str>,
        Option<&str>,
        Option<&str>,
        &DateTime<Utc>,
    ) = match e {
        PaymentEvent::PaymentIntentCreated {
            payment_id,
            order_id,
            amount,
            at,
            ..
        } => (
            payment_id.as_uuid(),
            order_id.as_uuid(),
            "intent_created",
            Some(amount.minor),
            Some(amount.currency.code()),
            None,
            None,
            None,
            at,
        ),
        PaymentEvent::PaymentCaptured {
            payment_id,
            order_id,
            amount,
            gateway_reference,
            at,
        } => (
            payment_id.as_uuid(),
            order_id.as_uuid(),
            "captured",
            Some(amount.minor),
            Some(amount.currency.code()),
            None,
            None,
            Some(gateway_reference.as_str()),
            at,
        ),
        PaymentEvent::PaymentFailed {
            payment_id,
            order_id,
            reason,
            message,
            at,
        } => (
            payment_id.as_uuid(),
            order_id.as_uuid(),
            "failed",
            None,
            None,
            Some(reason.code()),
            Some(message.as_str()),
            None,
            at,
        ),
        other => bail!(
            "the raw baseline does not handle {}",
            purser_domain::Event::event_type(other)
        ),
    };
    // A failure carries its payment's intent amount: from an intent earlier in the page,
    // else looked up by the insert (as the projection does).
    let (amount, currency) = match (amount, currency) {
        (Some(a), Some(c)) => {
            if kind == "intent_created" {
                page.intents
                    .entry(payment_id)
                    .or_insert_with(|| (a, c.to_owned()));
            }
            (Some(a), Some(c.to_owned()))
        }
        _ => page.intents.get(&payment_id).cloned().unzip(),
    };
    page.payments.push((
        event_id,
        payment_id,
        order_id,
        kind,
        amount,
        currency,
        reason,
        message.map(str::to_owned),
        reference.map(str::to_owned),
        *at,
    ));
    Ok(())
}

fn adjustment_reason(r: &AdjustmentReason) -> &'static str {
    match r {
        AdjustmentReason::Damaged => "damaged",
        AdjustmentReason::Lost => "lost",
        AdjustmentReason::Found => "found",
        AdjustmentReason::Recount => "recount",
        AdjustmentReason::Returned => "returned",
        AdjustmentReason::Correction => "correction",
        AdjustmentReason::OrderCancelled => "order_cancelled",
    }
}

fn release_reason(r: &ReleaseReason) -> &'static str {
    match r {
        ReleaseReason::PaymentFailed => "payment_failed",
        ReleaseReason::Expired => "expired",
        ReleaseReason::Cancelled => "cancelled",
        ReleaseReason::OrderUnfulfillable => "order_unfulfillable",
    }
}

fn analytics_inventory(page: &mut Page, event_id: Uuid, e: &InventoryEvent) -> anyhow::Result<()> {
    let q = |q: &purser_domain::Quantity| i64::from(q.get());
    #[allow(clippy::type_complexity)]
    let (sku, kind, reason, note, reservation, order, qty, on_hand, reserved, at): (
        &purser_domain::Sku,
        &'static str,
        Option<&'static str>,
        Option<&str>,
        Option<Uuid>,
        Option<Uuid>,
        i64,
        i64,
        i64,
        &DateTime<Utc>,
    ) = match e {
        InventoryEvent::StockReceived { sku, qty, at } => (
            sku,
            "received",
            None,
            None,
            None,
            None,
            q(qty),
            q(qty),
            0,
            at,
        ),
        InventoryEvent::StockAdjusted {
            sku,
            delta,
            reason,
            note,
            at,
        } => (
            sku,
            "adjusted",
            Some(adjustment_reason(reason)),
            Some(note.as_str()),
            None,
            None,
            delta.abs(),
            *delta,
            0,
            at,
        ),
        InventoryEvent::StockReserved {
            sku,
            reservation_id,
            order_id,
            qty,
            at,
            ..
        } => (
            sku,
            "reserved",
            None,
            None,
            Some(reservation_id.as_uuid()),
            Some(order_id.as_uuid()),
            q(qty),
            0,
            q(qty),
            at,
        ),
        InventoryEvent::ReservationConfirmed {
            sku,
            reservation_id,
            order_id,
            qty,
            at,
        } => (
            sku,
            "confirmed",
            None,
            None,
            Some(reservation_id.as_uuid()),
            Some(order_id.as_uuid()),
            q(qty),
            -q(qty),
            -q(qty),
            at,
        ),
        InventoryEvent::ReservationReleased {
            sku,
            reservation_id,
            order_id,
            qty,
            reason,
            at,
        } => (
            sku,
            "released",
            Some(release_reason(reason)),
            None,
            Some(reservation_id.as_uuid()),
            Some(order_id.as_uuid()),
            q(qty),
            0,
            -q(qty),
            at,
        ),
        InventoryEvent::ReservationRejected { .. } => {
            bail!("the raw baseline does not handle ReservationRejected")
        }
    };
    page.movements.push((
        event_id,
        sku.as_str().to_owned(),
        kind,
        reason,
        note.map(str::to_owned),
        reservation,
        order,
        qty,
        on_hand,
        reserved,
        *at,
    ));
    Ok(())
}
