-- The projector runtime's own tables: one checkpoint row per projection.
--
-- A projection's read-model rows and its checkpoint are written in one transaction, and the
-- checkpoint update is a compare-and-set on (position, generation): a projector that lost its
-- claim, or whose projection was reset for a rebuild, fails the compare and rolls back instead
-- of applying anything twice.

create schema if not exists purser;

create table purser.projection_checkpoints (
    name               text primary key,
    -- The last position applied (or passed over). Positions are (commit, prepare) pairs.
    commit_position    bigint      not null default 0,
    prepare_position   bigint      not null default 0,
    -- Bumped by every reset; part of the compare-and-set.
    generation         bigint      not null default 0,
    events_applied     bigint      not null default 0,
    -- recorded_at of the last event applied.
    last_event_at      timestamptz,
    updated_at         timestamptz not null default now(),
    -- Which process runs it (host:pid), and when it last said so.
    owner              text,
    owner_seen_at      timestamptz,
    -- Refreshed by the owner's status task.
    head_commit        bigint,
    head_prepare       bigint,
    lag_events         bigint,
    lag_seconds        double precision,
    last_error         text,
    last_error_at      timestamptz
);

comment on table purser.projection_checkpoints is
    'One row per projection: where it is in the event log, who runs it, and how far behind it is.';

-- Projection health for operators and analysts.
create view purser.projection_status as
select name,
       commit_position || '/' || prepare_position as position,
       events_applied,
       coalesce(lag_events, 0) as lag_events,
       coalesce(lag_seconds, 0) as lag_seconds,
       case
           when last_error is not null and last_error_at > updated_at then 'failing'
           when owner is null or owner_seen_at < now() - interval '30 seconds' then 'stopped'
           when coalesce(lag_events, 0) > 0 then 'catching_up'
           else 'live'
       end as status,
       owner,
       owner_seen_at,
       last_event_at,
       updated_at,
       last_error,
       last_error_at
from purser.projection_checkpoints;
