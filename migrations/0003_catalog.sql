-- The catalog read model: products with live stock, searchable.
-- Built by the `catalog` projection from product-* and inventory-* streams.

create extension if not exists pg_trgm;

create schema if not exists catalog;

create table catalog.products (
    sku            text primary key,
    name           text        not null,
    description    text        not null default '',
    brand          text        not null default '',
    category       text        not null default '',
    kind           text        not null check (kind in ('physical', 'digital')),
    -- For digital products: where license keys come from ('pool' or 'signed').
    license_source text,
    price_minor    bigint      not null check (price_minor >= 0),
    currency       text        not null check (length(currency) = 3),
    discontinued   boolean     not null default false,
    created_at     timestamptz not null,
    updated_at     timestamptz not null,
    search         tsvector generated always as (
        setweight(to_tsvector('english', name), 'A') ||
        setweight(to_tsvector('english', brand), 'B') ||
        setweight(to_tsvector('english', category), 'B') ||
        setweight(to_tsvector('english', description), 'C')) stored
);

create index products_search on catalog.products using gin (search);
create index products_name_trgm on catalog.products using gin (name gin_trgm_ops);
create index products_category on catalog.products (category);
create index products_brand on catalog.products (brand);
create index products_price on catalog.products (price_minor);
create index products_created on catalog.products (created_at desc, sku);

-- Stock per SKU. Kept apart from products because stock can be received before a product is
-- created, and the two streams are independent.
create table catalog.stock (
    sku        text primary key,
    on_hand    bigint      not null default 0,
    reserved   bigint      not null default 0,
    available  bigint      generated always as (on_hand - reserved) stored,
    updated_at timestamptz not null,
    constraint stock_consistent check (on_hand >= 0 and reserved >= 0 and reserved <= on_hand)
);

comment on table catalog.products is 'One row per product (SKU); see docs/read-models.md.';
comment on table catalog.stock is 'Stock per SKU: on_hand, reserved, and available = on_hand - reserved.';
