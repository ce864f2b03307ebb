-- The command side's durable state: process-manager instances, their outbox of commands to
-- send, and deadlines.
--
-- A process manager runs as a projection: for each event it loads its instance's state,
-- decides (purely) which commands the event calls for, and in ONE transaction stores the new
-- state, inserts those commands into the outbox and moves its checkpoint. A dispatcher then
-- sends outbox commands and deletes them once done. Every outbox row has a deterministic id
-- (derived from the causing event and the command's index), and every command derives its
-- event ids from it, so a crash anywhere means at worst sending a command again, which appends
-- nothing the second time.

create table purser.process_state (
    process    text        not null,
    key        text        not null,
    state      jsonb       not null,
    updated_at timestamptz not null,
    primary key (process, key)
);

comment on table purser.process_state is 'Process-manager instances (e.g. one checkout per order), as JSON.';

create table purser.outbox (
    id              uuid primary key,
    seq             bigint generated always as identity,
    process         text        not null,
    -- Commands of one instance are sent in order, one at a time.
    key             text        not null,
    command         jsonb       not null,
    causation_id    uuid        not null,
    correlation_id  uuid,
    created_at      timestamptz not null default now(),
    attempts        integer     not null default 0,
    next_attempt_at timestamptz not null default now(),
    -- A dispatcher leases a row while it sends it; an expired lease means it died.
    claimed_until   timestamptz,
    last_error      text
);

create index outbox_key_seq on purser.outbox (key, seq);
create index outbox_due on purser.outbox (next_attempt_at);

comment on table purser.outbox is 'Commands process managers have decided to send and that are not done yet.';

-- Commands the target aggregate refused (a race lost to a deadline or an admin, say). Kept
-- for operators; the process manager reacts to whatever won.
create table purser.outbox_rejections (
    id           uuid primary key,
    process      text        not null,
    key          text        not null,
    command      jsonb       not null,
    code         text        not null,
    message      text        not null,
    rejected_at  timestamptz not null default now()
);

create table purser.deadlines (
    id            uuid primary key,
    kind          text        not null check (kind in ('reservation_expiry', 'cart_abandonment')),
    -- The stream the deadline acts on.
    target        text        not null,
    due_at        timestamptz not null,
    payload       jsonb       not null,
    claimed_until timestamptz,
    attempts      integer     not null default 0,
    last_error    text
);

create index deadlines_due on purser.deadlines (due_at);

comment on table purser.deadlines is 'Durable timers: reservations to release at expiry, carts to abandon when idle.';
