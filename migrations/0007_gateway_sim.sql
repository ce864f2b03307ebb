-- The simulated payment gateway's own books (command-api/src/gateway/simulated.rs).
--
-- A real gateway remembers every charge under its idempotency key, so a retried request gets
-- the first answer and is never charged twice. The simulated gateway does the same here, which
-- also lets tests count real captures (for example "exactly one captured payment after a
-- crash"). These tables belong to the simulated gateway, not to the event store or a read
-- model: nothing is derived from them and nothing rebuilds them.

create schema if not exists gateway_sim;

create table gateway_sim.charges (
    idempotency_key text        primary key,
    payment_id      uuid        not null,
    order_id        uuid        not null,
    amount_minor    bigint      not null check (amount_minor >= 0),
    currency        text        not null check (length(currency) = 3),
    -- The gateway token the charge was made with (pm_…), never a card number.
    payment_method  text        not null,
    -- 'timeout' while the key is still in its simulated timeouts; then final and never changed.
    outcome         text        not null check (outcome in (
                        'timeout', 'captured', 'insufficient_funds', 'invalid_payment_details',
                        'declined')),
    -- Why a failed charge failed, as a customer-facing sentence; null when captured.
    message         text,
    -- sim_ch_<hex>, derived from the idempotency key.
    reference       text        not null unique,
    -- Charge requests received under this key, replays and timed-out ones included.
    attempts        integer     not null check (attempts >= 1),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);

create index charges_payment on gateway_sim.charges (payment_id);

create table gateway_sim.refunds (
    idempotency_key  text        primary key,
    charge_reference text        not null references gateway_sim.charges (reference),
    amount_minor     bigint      not null check (amount_minor > 0),
    currency         text        not null check (length(currency) = 3),
    -- sim_re_<hex>, derived from the idempotency key.
    reference        text        not null unique,
    created_at       timestamptz not null default now()
);

create index refunds_charge on gateway_sim.refunds (charge_reference);

comment on table gateway_sim.charges is
    'Charges the simulated payment gateway has seen, one row per idempotency key.';
comment on table gateway_sim.refunds is
    'Refunds the simulated payment gateway has made, one row per idempotency key.';
