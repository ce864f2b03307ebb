-- Integrations: what Purser tells other systems.
--
-- * Stock levels of the carriers of integration events (`inventory.low` needs per-SKU stock,
--   which no single inventory event carries). Each carrier is a projection with a table of
--   its own, truncated when it is rebuilt.
-- * Outbound webhooks: endpoints admins register, and the deliveries to them (a delivery log
--   with status codes, retried with back-off, replayable). Command-side state like the
--   outbox: a rebuild of the fan-out never truncates it, and the unique (endpoint, event) key
--   makes a replayed fan-out add nothing.
-- * A publication over the read models for change data capture (docs/read-models.md).

create schema if not exists integrations;

create table integrations.amqp_stock (
    sku      text primary key,
    on_hand  bigint not null,
    reserved bigint not null
);

create table integrations.webhook_stock (
    sku      text primary key,
    on_hand  bigint not null,
    reserved bigint not null
);

create table integrations.webhook_endpoints (
    id             uuid primary key,
    url            text        not null check (length(url) <= 2048),
    -- Public event types (`order.paid`); empty means every type.
    event_types    text[]      not null default '{}',
    -- Signs the deliveries (HMAC-SHA256). Needed in clear to sign; never returned after the
    -- endpoint is registered, never logged.
    secret         text        not null,
    description    text        not null default '' check (length(description) <= 500),
    enabled        boolean     not null default true,
    -- When the current run of failed attempts began (null while deliveries succeed).
    failing_since  timestamptz,
    disabled_at    timestamptz,
    disabled_reason text,
    created_at     timestamptz not null default now(),
    created_by     text
);

create table integrations.webhook_deliveries (
    -- Fan-out order, which is log order: one fan-out writes at a time (its claim).
    id              bigserial primary key,
    endpoint_id     uuid        not null references integrations.webhook_endpoints (id) on delete cascade,
    -- The integration event's id: the receiver's de-duplication key.
    event_id        uuid        not null,
    event_type      text        not null,
    -- Deliveries with the same key (`order-<id>`, `product-<sku>`) go out one at a time, in order.
    ordering_key    text        not null,
    body            text        not null,
    -- pending: to be sent (again); delivered; failed: given up after the retry window.
    status          text        not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
    attempts        integer     not null default 0,
    next_attempt_at timestamptz not null default now(),
    -- A worker's lease while it sends; a lease that runs out means the worker died.
    claimed_until   timestamptz,
    last_status     integer,
    last_error      text,
    last_attempt_at timestamptz,
    delivered_at    timestamptz,
    created_at      timestamptz not null default now(),
    -- The retry window runs from here: the creation, or the last replay.
    window_from     timestamptz not null default now(),
    unique (endpoint_id, event_id)
);

create index webhook_deliveries_due on integrations.webhook_deliveries (next_attempt_at)
    where status = 'pending';
create index webhook_deliveries_order on integrations.webhook_deliveries (endpoint_id, ordering_key, id)
    where status = 'pending';
-- The delivery log per endpoint, newest first, and its retention.
create index webhook_deliveries_log on integrations.webhook_deliveries (endpoint_id, id desc);
create index webhook_deliveries_finished on integrations.webhook_deliveries (created_at)
    where status <> 'pending';

comment on table integrations.webhook_deliveries is 'Outbound webhook deliveries (the delivery log); finished ones are pruned after their retention.';

-- Change data capture. A table list rather than FOR TABLES IN SCHEMA (which needs a
-- superuser): the read models' owner can create this. Personal data stays out: no
-- sales.customers, and sales.orders without its email and shipping address, so an erased
-- customer has no copy in a warehouse. A table added later is added here by its migration.
create publication purser_read_models for table
    catalog.products,
    catalog.stock,
    sales.orders (order_id, customer_id, status, currency, total_minor, item_count, line_count,
                  cart_id, payment_id, captured_minor, paid_at, failure_reason, cancel_reason,
                  cancelled_by, cancelled_at, refunded_minor, carrier, estimated_delivery,
                  shipped_at, delivered_at, fulfilled_at, has_digital, has_physical, placed_at,
                  updated_at, timeline_length),
    sales.order_lines,
    sales.order_timeline,
    analytics.fact_orders,
    analytics.fact_order_lines,
    analytics.fact_payments,
    analytics.fact_cart_events,
    analytics.fact_inventory_movements;
