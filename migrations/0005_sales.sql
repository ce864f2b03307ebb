-- The sales read models: orders with their lines and timelines, carts, customers and their
-- licenses. Built by the `orders`, `carts` and `customers` projections from order-*,
-- payment-*, cart-*, customer-* and license-* streams. Every value comes from the events, so
-- each table can be truncated and rebuilt from the log with identical contents.
--
-- Each projection owns its tables and reads only its own tables while applying events:
-- projections run independently and may be at different log positions, so one projection
-- never looks up another's rows. That is why `customers` keeps its own small index of orders.

create schema if not exists sales;

-- ---------------------------------------------------------------------------------------------
-- Projection `orders`

create table sales.orders (
    order_id           uuid primary key,
    customer_id        uuid        not null,
    email              text        not null,
    -- The order's status after its latest event, as the domain names it.
    status             text        not null check (status in (
                           'PENDING', 'PAYMENT_PROCESSING', 'PAID', 'CONFIRMED', 'PROCESSING',
                           'SHIPPED', 'DELIVERED', 'FULFILLED', 'PAYMENT_FAILED',
                           'INVENTORY_UNAVAILABLE', 'CANCELLED', 'REFUNDED')),
    currency           text        not null check (length(currency) = 3),
    total_minor        bigint      not null check (total_minor >= 0),
    -- Units over all lines (not the number of lines).
    item_count         integer     not null check (item_count > 0),
    line_count         integer     not null check (line_count > 0),
    cart_id            uuid,
    payment_id         uuid,
    -- The gateway's reference of the capture.
    payment_reference  text,
    captured_minor     bigint      check (captured_minor >= 0),
    paid_at            timestamptz,
    -- The last payment failure code (insufficient_funds, invalid_payment_details, declined,
    -- gateway_timeout) and the gateway's message.
    failure_reason     text,
    failure_message    text,
    cancel_reason      text,
    cancelled_by       text        check (cancelled_by in ('customer', 'admin', 'system')),
    cancelled_at       timestamptz,
    refunded_minor     bigint      not null default 0 check (refunded_minor >= 0),
    tracking_number    text,
    carrier            text,
    estimated_delivery timestamptz,
    shipped_at         timestamptz,
    delivered_at       timestamptz,
    fulfilled_at       timestamptz,
    has_digital        boolean     not null,
    has_physical       boolean     not null,
    -- Where physical lines go, as placed (null for digital-only orders).
    shipping_address   jsonb,
    placed_at          timestamptz not null,
    updated_at         timestamptz not null,
    -- How many timeline entries the order has; the next entry's seq is this plus one.
    timeline_length    integer     not null default 0 check (timeline_length >= 0),
    constraint orders_kind check (has_digital or has_physical),
    constraint orders_refund_within_capture check (refunded_minor <= coalesce(captured_minor, refunded_minor))
);

-- A customer's order history, newest first (the `me { orders }` page).
create index orders_customer_placed on sales.orders (customer_id, placed_at desc, order_id desc);
-- The admin list, newest first, optionally by status.
create index orders_placed on sales.orders (placed_at desc, order_id desc);
create index orders_status_placed on sales.orders (status, placed_at desc, order_id desc);

create table sales.order_lines (
    order_id         uuid    not null references sales.orders (order_id) on delete cascade,
    -- 1-based, in the order the lines were placed.
    line_no          integer not null check (line_no >= 1),
    sku              text    not null,
    name             text    not null,
    kind             text    not null check (kind in ('physical', 'digital')),
    qty              integer not null check (qty > 0),
    unit_price_minor bigint  not null check (unit_price_minor >= 0),
    line_total_minor bigint  not null check (line_total_minor >= 0),
    currency         text    not null check (length(currency) = 3),
    -- Digital lines: the license attached to the order for this line, once there is one.
    license_id       uuid,
    primary key (order_id, line_no),
    constraint order_lines_total check (line_total_minor = unit_price_minor * qty),
    constraint order_lines_license_digital check (license_id is null or kind = 'digital')
);

create index order_lines_sku on sales.order_lines (sku);

create table sales.order_timeline (
    order_id   uuid        not null references sales.orders (order_id) on delete cascade,
    -- 1-based position in the order's history.
    seq        integer     not null check (seq >= 1),
    -- The status after this step; steps that do not change the status repeat it.
    status     text        not null,
    -- The event behind the step (OrderPlaced, OrderPaid, PaymentAttemptFailed, ...).
    event      text        not null,
    at         timestamptz not null,
    -- What happened, e.g. {"payment_reference": "..."} or {"refund_minor": 500, "reason": "..."}.
    detail     jsonb       not null default '{}',
    primary key (order_id, seq)
);

comment on table sales.orders is
    'One row per order: status, money, payment, cancellation, refund and tracking; see docs/read-models.md.';
comment on table sales.order_lines is
    'The lines of each order as placed, with the license attached to digital lines.';
comment on table sales.order_timeline is
    'Every step of every order (status changes and payment attempts) with its time and detail.';

-- ---------------------------------------------------------------------------------------------
-- Projection `carts`

create table sales.carts (
    cart_id          uuid primary key,
    customer_id      uuid,
    currency         text        not null check (length(currency) = 3),
    status           text        not null check (status in ('open', 'checked_out', 'abandoned')),
    order_id         uuid,
    -- Units over all lines, and the sum of the line totals, recomputed on every change.
    item_count       integer     not null default 0 check (item_count >= 0),
    line_count       integer     not null default 0 check (line_count >= 0),
    subtotal_minor   bigint      not null default 0 check (subtotal_minor >= 0),
    created_at       timestamptz not null,
    last_activity_at timestamptz not null,
    checked_out_at   timestamptz,
    abandoned_at     timestamptz,
    -- The line_no the next added line gets, so lines keep the order they were added in.
    next_line_no     integer     not null default 1,
    constraint carts_checked_out_has_order check ((status = 'checked_out') = (order_id is not null))
);

create index carts_customer on sales.carts (customer_id, last_activity_at desc, cart_id)
    where customer_id is not null;

create table sales.cart_lines (
    cart_id          uuid        not null references sales.carts (cart_id) on delete cascade,
    sku              text        not null,
    line_no          integer     not null check (line_no >= 1),
    name             text        not null,
    kind             text        not null check (kind in ('physical', 'digital')),
    qty              integer     not null check (qty > 0),
    unit_price_minor bigint      not null check (unit_price_minor >= 0),
    line_total_minor bigint      generated always as (unit_price_minor * qty) stored,
    added_at         timestamptz not null,
    updated_at       timestamptz not null,
    primary key (cart_id, sku)
);

comment on table sales.carts is
    'One row per cart: owner, status (open, checked_out, abandoned), totals and activity times.';
comment on table sales.cart_lines is 'The current lines of each cart.';

-- ---------------------------------------------------------------------------------------------
-- Projection `customers`

create table sales.customers (
    customer_id    uuid primary key,
    email          text        not null,
    name           text,
    -- Signed up with a password (the hash itself is never stored in a read model).
    registered     boolean     not null default false,
    -- Known only from checkouts: has ordered or been provisioned, and has not signed up.
    guest          boolean     not null default false,
    -- An account was provisioned for an order (to hold the licenses of digital lines).
    provisioned    boolean     not null default false,
    roles          text[]      not null default '{customer}',
    -- The first event that mentioned the customer.
    created_at     timestamptz not null,
    registered_at  timestamptz,
    updated_at     timestamptz not null,
    orders_count   integer     not null default 0 check (orders_count >= 0),
    first_order_at timestamptz,
    last_order_at  timestamptz,
    constraint customers_guest_xor_registered check (guest <> registered)
);

create index customers_email on sales.customers (email);

-- The customers projection's own index of orders, so it can attribute payments and refunds
-- (whose events carry only the order id) to the customer.
create table sales.customer_orders (
    order_id       uuid primary key,
    customer_id    uuid        not null,
    currency       text        not null check (length(currency) = 3),
    total_minor    bigint      not null check (total_minor >= 0),
    paid_minor     bigint      not null default 0 check (paid_minor >= 0),
    refunded_minor bigint      not null default 0 check (refunded_minor >= 0),
    placed_at      timestamptz not null
);

create index customer_orders_customer on sales.customer_orders (customer_id, currency);

create table sales.customer_licenses (
    license_id    uuid primary key,
    customer_id   uuid        not null,
    sku           text        not null,
    order_id      uuid        not null,
    seats         integer     not null check (seats >= 1),
    license_key   text        not null,
    expires_at    timestamptz,
    status        text        not null check (status in ('issued', 'attached', 'revoked')),
    issued_at     timestamptz not null,
    attached_at   timestamptz,
    revoked_at    timestamptz,
    revoke_reason text
);

create index customer_licenses_customer on sales.customer_licenses (customer_id, issued_at desc, license_id);
create index customer_licenses_order on sales.customer_licenses (order_id);

-- What each customer has spent, per currency: captured minus refunded over their orders.
create view sales.customer_spend as
select customer_id,
       currency,
       count(*)::integer as orders,
       count(*) filter (where paid_minor > 0)::integer as paid_orders,
       sum(paid_minor)::bigint as paid_minor,
       sum(refunded_minor)::bigint as refunded_minor,
       sum(paid_minor - refunded_minor)::bigint as spent_minor
from sales.customer_orders
group by customer_id, currency;

comment on table sales.customers is
    'One row per customer account (registered or guest), with roles and order counts; never a password hash.';
comment on table sales.customer_orders is
    'Orders per customer with captured and refunded amounts; the basis of sales.customer_spend.';
comment on table sales.customer_licenses is
    'Every license issued to a customer: key, seats, expiry and status (issued, attached, revoked).';
comment on view sales.customer_spend is
    'Per customer and currency: orders, captured, refunded and net spent (minor units).';
