-- Identity and access: credentials and sessions live beside the log, never in it.
--
-- Password hashes are secrets an auditor has no need for, so they stay out of the append-only
-- log (which every auditor and `audit export` reads): the command side keeps them here.
-- Sessions and sign-in throttling are operational state with retention, not business facts.

create table purser.credentials (
    customer_id   uuid        primary key,
    -- argon2id, PHC string format.
    password_hash text        not null,
    changed_at    timestamptz not null default now()
);

comment on table purser.credentials is 'Password hashes (argon2id). Never copied to a read model, an event or a log.';

-- One row per signed-in session. The access token (a short-lived JWT) names its session, so
-- ending a session ends its access tokens within the session cache's lifetime; the refresh
-- token is stored only as a SHA-256 digest and is replaced on every use.
create table purser.sessions (
    id                   uuid        primary key,
    customer_id          uuid        not null,
    refresh_hash         bytea       not null,
    -- The digest of the refresh token this one replaced: presenting it again means the token
    -- was copied, and ends the session.
    previous_hash        bytea,
    created_at           timestamptz not null default now(),
    refreshed_at         timestamptz not null default now(),
    expires_at           timestamptz not null,
    revoked_at           timestamptz,
    revoked_reason       text,
    -- A session from the post-purchase sign-in of a guest checkout.
    guest                boolean     not null default false,
    -- The log position of the account's latest event when the session was opened or refreshed:
    -- until the customers read model has reached it, the token's roles (read from the account
    -- itself) stand in for the read model's, which may not show a role granted just before.
    account_commit       bigint,
    account_prepare      bigint
);

create index sessions_customer on purser.sessions (customer_id) where revoked_at is null;
create index sessions_expiry on purser.sessions (expires_at);

comment on table purser.sessions is 'Signed-in sessions; rows are deleted a day after they expire or are revoked.';

-- Failed sign-ins per key (`account:<id>` or `client:<address>`): a window of one minute, and
-- a block that doubles with every block in the last day.
create table purser.sign_in_throttle (
    key           text        primary key,
    failures      integer     not null default 0,
    window_start  timestamptz not null,
    blocks        integer     not null default 0,
    blocked_until timestamptz,
    updated_at    timestamptz not null default now()
);

create index sign_in_throttle_updated on purser.sign_in_throttle (updated_at);

comment on table purser.sign_in_throttle is 'Recent failed sign-ins; rows untouched for a day are deleted.';

-- Account emails (verification, password reset) are about an account, not an order.
alter table purser.notification_queue alter column order_id drop not null;

-- The customers read model learns whether the address is proven and whether the account is
-- disabled; request-time authorisation reads roles and the disabled flag from here.
alter table sales.customers
    add column verified    boolean     not null default false,
    add column disabled_at timestamptz;

-- Claiming a guest's orders looks them up by the address they were placed with.
create index orders_email on sales.orders (email);
