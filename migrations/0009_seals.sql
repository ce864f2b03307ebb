-- Seals: a second, global hash chain over the event log, for tamper evidence.
--
-- Every event already carries a SHA-256 hash chained to the previous event of its own stream
-- (es.events.hash, computed by es.append_events). That chain catches an edited event, and an
-- event removed from the middle of a stream, but not the removal of a stream's newest events,
-- nor a rewrite that recomputes a stream's hashes from the edited event onwards. Seals close
-- that gap: a sealer (a background task of the command side) walks the committed global log in
-- log order, the (transaction id, global position) order readers use, below the commit-
-- visibility horizon, and records one row per block of events (1,000 events, or whatever
-- arrived within a second):
--
--   digest = SHA-256(previous block's digest || hash of each event of the block, in log order)
--
-- Block 0 chains to the empty string. Because a block also records its first and last
-- position and its event count, `purser audit verify` can tell that a sealed event was
-- removed, edited or inserted, and which block it was in.
--
-- The sealer only reads es.events and inserts here; it takes no lock that appends wait for.
-- Two sealers (two command-side processes) may race for the next block: the primary key lets
-- exactly one win, and the loser reloads and carries on after the winner's block.

create table es.seals (
    block           bigint      primary key,
    -- The first and last event of the block, as log positions (commit = the appending
    -- transaction's id, prepare = the global sequence number), the same pairs readers use.
    first_commit    bigint      not null,
    first_prepare   bigint      not null,
    last_commit     bigint      not null,
    last_prepare    bigint      not null,
    event_count     integer     not null,
    digest          bytea       not null,
    sealed_at       timestamptz not null default now(),
    constraint seals_block_check check (block >= 0),
    constraint seals_event_count_check check (event_count > 0),
    constraint seals_digest_check check (length(digest) = 32),
    constraint seals_range_check
        check ((first_commit, first_prepare) <= (last_commit, last_prepare))
);

comment on table es.seals is
    'Tamper evidence: a SHA-256 chain over blocks of the committed event log. Append-only.';
