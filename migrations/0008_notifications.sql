-- Email notifications waiting to be sent.
--
-- The `notification_queue` projection keeps this table in step with the notification streams:
-- a queued notification is a row due at once; a failed attempt moves it to its next attempt;
-- a sent notification, or one given up on, removes it. Like the outbox and the deadlines, it is
-- command-side state that a rebuild never truncates. The notification worker leases due rows
-- (`claimed_until`) instead of locking them, so no transaction stays open while it talks to the
-- SMTP server; a lease that runs out means its worker died, and another may take the row.

create table purser.notification_queue (
    -- The notification's id (stream `notification-<id>`).
    id              uuid primary key,
    -- order_confirmed, payment_failed, license_ready, shipped, refunded, order_cancelled. No
    -- check constraint: a kind added later must not stop the projection.
    kind            text        not null,
    recipient       text        not null,
    order_id        uuid        not null,
    license_id      uuid,
    -- Attempts made so far (failed ones; a sent notification has no row).
    attempts        integer     not null default 0,
    next_attempt_at timestamptz not null,
    claimed_until   timestamptz,
    last_error      text
);

create index notification_queue_due on purser.notification_queue (next_attempt_at);

comment on table purser.notification_queue is 'Emails queued and not yet sent or given up on; the notification streams are the truth.';
