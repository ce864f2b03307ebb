-- The Postgres event store: one append-only table, one append function.
--
-- Ordering and visibility. `global_position` comes from an identity sequence, so positions
-- are handed out when an INSERT runs, not when its transaction commits: a transaction can take
-- position 10, stall, and commit after another transaction has committed position 11. A reader
-- ordering by position alone would see 11, checkpoint it, and skip 10 forever. Instead every
-- row records the id of the transaction that wrote it (`transaction_id`, xid8) and readers take
-- only rows whose transaction id is below the commit-visibility horizon
-- `pg_snapshot_xmin(pg_current_snapshot())`: every transaction below it has finished, and every
-- transaction that may still commit has an id at or above it. Readers order by
-- (transaction_id, global_position); that order never changes for rows already visible, so a
-- checkpoint in it is final.

create schema if not exists es;

create table es.events (
    global_position bigint generated always as identity primary key,
    transaction_id  xid8        not null default pg_current_xact_id(),
    event_id        uuid        not null,
    stream_name     text        not null,
    category        text        not null generated always as (split_part(stream_name, '-', 1)) stored,
    stream_version  bigint      not null,
    event_type      text        not null,
    schema_version  integer     not null,
    data            jsonb       not null,
    metadata        jsonb       not null,
    recorded_at     timestamptz not null,
    -- SHA-256 over this event's content chained to the previous event of its stream, computed
    -- by es.append_events; see es.event_hash. Tamper evidence for auditors.
    hash            bytea       not null,
    constraint events_event_id_key unique (event_id),
    constraint events_stream_version_key unique (stream_name, stream_version),
    constraint events_stream_version_check check (stream_version >= 0),
    constraint events_stream_name_check check (length(stream_name) between 3 and 200)
);

-- The reading order of the global log.
create index events_log_order on es.events (transaction_id, global_position);

comment on table es.events is 'The event log. Append-only: rows are never updated or deleted.';

-- The chained hash of one event. Canonical content: the envelope fields joined by newlines;
-- jsonb's text form is deterministic; recorded_at as integer microseconds since the epoch.
create function es.event_hash(
    prev bytea, id uuid, stream text, version bigint, typ text, schema_version integer,
    data jsonb, metadata jsonb, recorded_at timestamptz)
returns bytea
language sql immutable parallel safe
as $$
    select sha256(
        coalesce(prev, ''::bytea) ||
        convert_to(concat_ws(E'\n',
            id::text, stream, version::text, typ, schema_version::text,
            data::text, metadata::text,
            (extract(epoch from recorded_at) * 1000000)::bigint::text), 'UTF8'))
$$;

-- Appends events to one stream in one round trip.
--
-- p_expected: -1 any, -2 the stream must not exist, -3 the stream must exist, n >= 0 the
-- stream's last version must be n. Returns o_status 0 and the positions on success, or
-- o_status 1 and the current version when the expectation does not hold. A concurrent writer
-- that slips in between the version read and the insert is caught by the unique
-- (stream_name, stream_version) key and surfaces as SQLSTATE 23505, which the caller maps to a
-- conflict (or retries, for "any"). Idempotency (event ids already present) is checked by the
-- caller only when something fails, so the common path pays nothing for it.
create function es.append_events(
    p_stream text,
    p_expected bigint,
    p_ids uuid[],
    p_types text[],
    p_schema_versions integer[],
    p_data jsonb[],
    p_metadata jsonb[])
returns table (o_status integer, o_version bigint, o_first_position bigint,
               o_last_position bigint, o_transaction_id bigint)
language plpgsql
as $$
declare
    v_last bigint;
    v_prev bytea;
    v_now timestamptz := now();
    v_hashes bytea[] := '{}';
    v_h bytea;
    v_n integer := cardinality(p_ids);
begin
    select e.stream_version, e.hash into v_last, v_prev
    from es.events e
    where e.stream_name = p_stream
    order by e.stream_version desc
    limit 1;

    if (p_expected = -2 and v_last is not null)
       or (p_expected = -3 and v_last is null)
       or (p_expected >= 0 and v_last is distinct from p_expected) then
        return query select 1, v_last, null::bigint, null::bigint, null::bigint;
        return;
    end if;

    v_h := v_prev;
    for i in 1 .. v_n loop
        v_h := es.event_hash(v_h, p_ids[i], p_stream, coalesce(v_last, -1) + i, p_types[i],
                             p_schema_versions[i], p_data[i], p_metadata[i], v_now);
        v_hashes := v_hashes || v_h;
    end loop;

    return query
    with ins as (
        insert into es.events as e
            (event_id, stream_name, stream_version, event_type, schema_version, data, metadata,
             recorded_at, hash)
        select t.id, p_stream, coalesce(v_last, -1) + t.ord, t.typ, t.ver, t.dat, t.met, v_now,
               v_hashes[t.ord]
        from unnest(p_ids, p_types, p_schema_versions, p_data, p_metadata)
             with ordinality as t(id, typ, ver, dat, met, ord)
        order by t.ord
        returning e.global_position, e.stream_version
    )
    select 0, max(ins.stream_version), min(ins.global_position), max(ins.global_position),
           pg_current_xact_id()::text::bigint
    from ins;
end
$$;
