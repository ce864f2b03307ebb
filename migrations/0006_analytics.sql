-- The analytics schema: fact tables filled by the `analytics` projection from order-*,
-- payment-*, cart-* and inventory-* streams, and views over them for analysts (documented,
-- with examples, in docs/read-models.md).
--
-- Fact rows are keyed by the id of the event they come from (or by the order), and every
-- value comes from the event data, so a rebuild from the log gives identical rows. Buckets
-- of time are taken in UTC, whatever the session's time zone.

create schema if not exists analytics;

-- ---------------------------------------------------------------------------------------------
-- Facts

create table analytics.fact_orders (
    order_id                 uuid primary key,
    customer_id              uuid        not null,
    cart_id                  uuid,
    currency                 text        not null check (length(currency) = 3),
    total_minor              bigint      not null check (total_minor >= 0),
    item_count               integer     not null check (item_count > 0),
    line_count               integer     not null check (line_count > 0),
    has_digital              boolean     not null,
    has_physical             boolean     not null,
    -- The status after the order's latest event (its final status once the order is done).
    status                   text        not null check (status in (
                                 'PENDING', 'PAYMENT_PROCESSING', 'PAID', 'CONFIRMED',
                                 'PROCESSING', 'SHIPPED', 'DELIVERED', 'FULFILLED',
                                 'PAYMENT_FAILED', 'INVENTORY_UNAVAILABLE', 'CANCELLED',
                                 'REFUNDED')),
    placed_at                timestamptz not null,
    payment_started_at       timestamptz,
    -- The first capture recorded on the order, and its amount.
    paid_at                  timestamptz,
    paid_minor               bigint      not null default 0 check (paid_minor >= 0),
    payment_failed_at        timestamptz,
    failure_reason           text,
    inventory_unavailable_at timestamptz,
    confirmed_at             timestamptz,
    fulfilled_at             timestamptz,
    shipped_at               timestamptz,
    delivered_at             timestamptz,
    cancelled_at             timestamptz,
    cancelled_by             text        check (cancelled_by in ('customer', 'admin', 'system')),
    refunded_minor           bigint      not null default 0 check (refunded_minor >= 0),
    last_refunded_at         timestamptz,
    updated_at               timestamptz not null
);

create index fact_orders_placed on analytics.fact_orders (placed_at);
create index fact_orders_status on analytics.fact_orders (status);
create index fact_orders_paid on analytics.fact_orders (currency, paid_at) where paid_at is not null;

create table analytics.fact_order_lines (
    order_id         uuid        not null,
    line_no          integer     not null check (line_no >= 1),
    sku              text        not null,
    name             text        not null,
    kind             text        not null check (kind in ('physical', 'digital')),
    qty              integer     not null check (qty > 0),
    unit_price_minor bigint      not null check (unit_price_minor >= 0),
    line_total_minor bigint      not null check (line_total_minor >= 0),
    currency         text        not null check (length(currency) = 3),
    placed_at        timestamptz not null,
    primary key (order_id, line_no)
);

create index fact_order_lines_sku on analytics.fact_order_lines (sku);

create table analytics.fact_payments (
    event_id          uuid primary key,
    payment_id        uuid        not null,
    order_id          uuid        not null,
    kind              text        not null check (kind in (
                          'intent_created', 'attempt_failed', 'captured', 'failed', 'refunded')),
    -- intent_created, captured, refunded: the amount of the event; failed and attempt_failed:
    -- the amount of the payment's intent (what could not be charged).
    amount_minor      bigint      check (amount_minor >= 0),
    currency          text        check (length(currency) = 3),
    -- failed: the failure code; attempt_failed: the gateway error; refunded: the refund reason.
    reason            text,
    -- failed: the gateway's message.
    message           text,
    gateway_reference text,
    refund_reference  text,
    -- attempt_failed: which attempt it was.
    attempt           integer,
    at                timestamptz not null
);

create index fact_payments_kind_at on analytics.fact_payments (kind, at);
create index fact_payments_payment on analytics.fact_payments (payment_id, kind);
create index fact_payments_order on analytics.fact_payments (order_id);

create table analytics.fact_cart_events (
    event_id         uuid primary key,
    cart_id          uuid        not null,
    kind             text        not null check (kind in (
                         'created', 'item_added', 'quantity_changed', 'item_removed',
                         'customer_assigned', 'checked_out', 'abandoned')),
    customer_id      uuid,
    sku              text,
    -- The change of the line's quantity: +qty added, new - old changed, -qty removed.
    qty_delta        integer,
    unit_price_minor bigint,
    currency         text        check (length(currency) = 3),
    -- checked_out: the order, the cart's total and its units.
    order_id         uuid,
    value_minor      bigint,
    item_count       integer,
    at               timestamptz not null
);

create index fact_cart_events_kind_at on analytics.fact_cart_events (kind, at);
create index fact_cart_events_cart on analytics.fact_cart_events (cart_id, sku);

create table analytics.fact_inventory_movements (
    event_id       uuid primary key,
    sku            text        not null,
    kind           text        not null check (kind in (
                       'received', 'adjusted', 'reserved', 'rejected', 'confirmed', 'released')),
    -- adjusted: damaged, lost, found, recount, returned, correction, order_cancelled;
    -- released: payment_failed, expired, cancelled, order_unfulfillable.
    reason         text,
    note           text,
    reservation_id uuid,
    order_id       uuid,
    -- The units the movement is about (for rejected: the units asked for).
    qty            bigint      not null check (qty >= 0),
    -- Signed changes of on-hand and reserved stock.
    on_hand_delta  bigint      not null,
    reserved_delta bigint      not null,
    at             timestamptz not null
);

create index fact_inventory_movements_sku_at on analytics.fact_inventory_movements (sku, at, event_id);
create index fact_inventory_movements_kind_at on analytics.fact_inventory_movements (kind, at);

comment on table analytics.fact_orders is
    'One row per order: placement, status, first capture, refunds and milestone times.';
comment on table analytics.fact_order_lines is 'One row per order line, as placed.';
comment on table analytics.fact_payments is
    'One row per payment event: intents, failed attempts, captures, failures (with reason) and refunds.';
comment on table analytics.fact_cart_events is
    'One row per cart event: the shopping funnel from creation to checkout or abandonment.';
comment on table analytics.fact_inventory_movements is
    'One row per inventory event, with signed on-hand and reserved deltas.';

-- ---------------------------------------------------------------------------------------------
-- Views

-- Money captured and refunded per UTC hour and currency, by the time of the payment event.
create view analytics.revenue_by_hour as
select date_trunc('hour', at, 'UTC') as hour,
       currency,
       coalesce(sum(amount_minor) filter (where kind = 'captured'), 0)::bigint as captured_minor,
       coalesce(sum(amount_minor) filter (where kind = 'refunded'), 0)::bigint as refunded_minor,
       (coalesce(sum(amount_minor) filter (where kind = 'captured'), 0)
        - coalesce(sum(amount_minor) filter (where kind = 'refunded'), 0))::bigint as net_minor,
       count(*) filter (where kind = 'captured')::integer as captures,
       count(*) filter (where kind = 'refunded')::integer as refunds
from analytics.fact_payments
where kind in ('captured', 'refunded')
group by 1, 2;

-- The same per UTC calendar day.
create view analytics.revenue_by_day as
select (at at time zone 'UTC')::date as day,
       currency,
       coalesce(sum(amount_minor) filter (where kind = 'captured'), 0)::bigint as captured_minor,
       coalesce(sum(amount_minor) filter (where kind = 'refunded'), 0)::bigint as refunded_minor,
       (coalesce(sum(amount_minor) filter (where kind = 'captured'), 0)
        - coalesce(sum(amount_minor) filter (where kind = 'refunded'), 0))::bigint as net_minor,
       count(*) filter (where kind = 'captured')::integer as captures,
       count(*) filter (where kind = 'refunded')::integer as refunds
from analytics.fact_payments
where kind in ('captured', 'refunded')
group by 1, 2;

-- Orders per current status, and each status's share of all orders.
create view analytics.orders_by_status as
select status,
       count(*)::integer as orders,
       round(count(*)::numeric / sum(count(*)) over (), 4) as share
from analytics.fact_orders
group by status;

-- Units and revenue per SKU over orders that were paid and are neither cancelled nor refunded.
create view analytics.top_products as
select l.sku,
       (array_agg(l.name order by l.placed_at desc, l.order_id desc))[1] as name,
       l.currency,
       sum(l.qty)::bigint as units_sold,
       sum(l.line_total_minor)::bigint as revenue_minor,
       count(distinct l.order_id)::integer as orders
from analytics.fact_order_lines l
join analytics.fact_orders o using (order_id)
where o.paid_at is not null
  and o.status not in ('CANCELLED', 'REFUNDED')
group by l.sku, l.currency;

-- Average value of the orders that were paid, per currency (gross: refunds not deducted).
create view analytics.average_order_value as
select currency,
       count(*)::integer as orders,
       sum(paid_minor)::bigint as revenue_minor,
       round(avg(paid_minor))::bigint as average_order_value_minor
from analytics.fact_orders
where paid_at is not null
group by currency;

-- Orders placed per cart created (one row).
create view analytics.conversion_rate as
select c.carts_created,
       c.carts_checked_out,
       o.orders_placed,
       o.orders_paid,
       case when c.carts_created > 0
            then round(o.orders_placed::numeric / c.carts_created, 4) end as conversion_rate,
       case when c.carts_created > 0
            then round(o.orders_paid::numeric / c.carts_created, 4) end as paid_conversion_rate
from (select count(distinct cart_id) filter (where kind = 'created')::integer as carts_created,
             count(distinct cart_id) filter (where kind = 'checked_out')::integer as carts_checked_out
      from analytics.fact_cart_events) c,
     (select count(*)::integer as orders_placed,
             count(*) filter (where paid_at is not null)::integer as orders_paid
      from analytics.fact_orders) o;

-- Carts abandoned among carts that reached an outcome (checked out or abandoned); open carts
-- have not decided yet and are counted apart (one row).
create view analytics.cart_abandonment_rate as
select created as carts_created,
       checked_out as carts_checked_out,
       abandoned as carts_abandoned,
       created - checked_out - abandoned as carts_open,
       case when checked_out + abandoned > 0
            then round(abandoned::numeric / (checked_out + abandoned), 4) end as abandonment_rate
from (select count(distinct cart_id) filter (where kind = 'created')::integer as created,
             count(distinct cart_id) filter (where kind = 'checked_out')::integer as checked_out,
             count(distinct cart_id) filter (where kind = 'abandoned')::integer as abandoned
      from analytics.fact_cart_events) t;

-- Final payment failures per reason (retried gateway timeouts are `attempt_failed` facts and
-- are not counted here).
create view analytics.payment_failure_reasons as
select reason,
       count(*)::integer as failures,
       round(count(*)::numeric / sum(count(*)) over (), 4) as share,
       min(at) as first_at,
       max(at) as last_at
from analytics.fact_payments
where kind = 'failed'
group by reason;

-- Inventory turnover per SKU over [p_from, p_to):
--   units_sold      = units whose reservation was confirmed in the period (they left stock);
--   average_on_hand = the time-weighted average of on-hand stock over the period: on-hand at
--                     p_from (the sum of every delta before it), then stepping at each
--                     movement, each level weighted by how long it lasted;
--   turnover        = units_sold / average_on_hand (null when the average is 0).
-- SKUs with no movement before p_to are not listed.
create function analytics.inventory_turnover_between(p_from timestamptz, p_to timestamptz)
returns table (sku text, units_sold bigint, opening_on_hand bigint, closing_on_hand bigint,
               average_on_hand numeric, turnover numeric)
language sql stable
as $$
    with opening as (
        select m.sku,
               coalesce(sum(m.on_hand_delta) filter (where m.at < p_from), 0)::bigint as on_hand,
               coalesce(sum(-m.on_hand_delta) filter (
                   where m.kind = 'confirmed' and m.at >= p_from), 0)::bigint as sold,
               sum(m.on_hand_delta)::bigint as closing
        from analytics.fact_inventory_movements m
        where m.at < p_to and p_to > p_from
        group by m.sku
    ),
    steps as (
        select m.sku,
               m.at,
               o.on_hand + sum(m.on_hand_delta) over w as level,
               lead(m.at, 1, p_to) over w as next_at
        from analytics.fact_inventory_movements m
        join opening o on o.sku = m.sku
        where m.at >= p_from and m.at < p_to
        window w as (partition by m.sku order by m.at, m.event_id)
    ),
    area as (
        select o.sku,
               o.on_hand::numeric
                   * extract(epoch from (coalesce(min(s.at), p_to) - p_from))
               + coalesce(sum(s.level * extract(epoch from (s.next_at - s.at))), 0) as stock_seconds
        from opening o
        left join steps s on s.sku = o.sku
        group by o.sku, o.on_hand
    )
    select o.sku,
           o.sold,
           o.on_hand,
           o.closing,
           round(a.stock_seconds / extract(epoch from (p_to - p_from)), 4),
           round(o.sold / nullif(a.stock_seconds / extract(epoch from (p_to - p_from)), 0), 4)
    from opening o
    join area a on a.sku = o.sku
    order by o.sku
$$;

-- Inventory turnover over the whole history: from the first inventory movement to now.
create view analytics.inventory_turnover as
select t.*
from (select min(at) as since from analytics.fact_inventory_movements) p,
     lateral analytics.inventory_turnover_between(p.since, now()) t;

comment on view analytics.revenue_by_hour is 'Captured, refunded and net money per UTC hour and currency.';
comment on view analytics.revenue_by_day is 'Captured, refunded and net money per UTC day and currency.';
comment on view analytics.orders_by_status is 'Orders per current status, with each status''s share.';
comment on view analytics.top_products is 'Units and revenue per SKU over paid orders not cancelled or refunded.';
comment on view analytics.average_order_value is 'Average captured amount of paid orders, per currency.';
comment on view analytics.conversion_rate is 'Orders placed (and paid) per cart created.';
comment on view analytics.cart_abandonment_rate is 'Abandoned carts among carts checked out or abandoned.';
comment on view analytics.payment_failure_reasons is 'Final payment failures per reason, with shares.';
comment on view analytics.inventory_turnover is 'Units sold / time-weighted average on-hand per SKU, over the whole history.';
comment on function analytics.inventory_turnover_between(timestamptz, timestamptz) is
    'Inventory turnover per SKU over [from, to): units sold / time-weighted average on-hand.';
