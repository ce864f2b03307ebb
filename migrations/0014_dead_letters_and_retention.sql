-- Poison events: an event a projection cannot apply stops that projection (it is never
-- skipped silently). The runtime records where it is stuck; an operator who has looked at the
-- event may skip it on purpose (`purser projector --skip POSITION NAME`), which writes a row
-- here. The projection then passes over that position, now and in every rebuild, and the row
-- stays for auditors: who skipped what, when, why, and the error it failed with.

alter table purser.projection_checkpoints
    add column failing_commit  bigint,
    add column failing_prepare bigint,
    -- Failed attempts since the last batch that committed.
    add column failures        bigint not null default 0;

create table purser.dead_letters (
    projection       text        not null,
    commit_position  bigint      not null,
    prepare_position bigint      not null,
    requested_by     text        not null,
    reason           text        not null,
    requested_at     timestamptz not null default now(),
    -- Filled in by the projector when it passes over the event.
    event_id         uuid,
    stream           text,
    stream_version   bigint,
    event_type       text,
    error            text,
    skipped_at       timestamptz,
    primary key (projection, commit_position, prepare_position)
);

comment on table purser.dead_letters is
    'Events a projection was told to pass over, with who asked, why, and the error they failed with.';

create or replace view purser.projection_status as
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
       last_error_at,
       case when failing_commit is not null
            then failing_commit || '/' || failing_prepare end as failing_position,
       failures
from purser.projection_checkpoints;

-- Trace events are kept for a configurable time (PURSER_TRACE_RETENTION_DAYS); the pruner
-- deletes by time in small batches along this index.
create index trace_events_at on purser.trace_events (at);
