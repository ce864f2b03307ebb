-- Operational trace events (seed 003): one row per tracked operation with its status, so an
-- operator can ask "which logins failed in the last hour" or "what happened to this request"
-- (by correlation id) in SQL. Written off the request path, best effort: when the writer
-- falls behind it drops rows (and counts them in purser_trace_events_dropped_total) rather
-- than slow requests down. The event log, not this table, is the record of what happened.

create table purser.trace_events (
    id             bigint generated always as identity primary key,
    at             timestamptz not null default now(),
    kind           text        not null check (kind in
                       ('login', 'order_creation', 'payment_processing', 'fulfilment', 'data_lookup')),
    status         text        not null check (status in ('success', 'failed')),
    error          text,
    correlation_id uuid,
    actor          text,
    -- What it was about: an order id, an email, an operation name.
    subject        text,
    duration_ms    double precision
);

create index trace_events_kind_at on purser.trace_events (kind, at desc);
create index trace_events_correlation on purser.trace_events (correlation_id);

comment on table purser.trace_events is
    'Tracked operations (login, order creation, payment processing, fulfilment, data lookup) with status success/failed.';
