-- The event log is append-only, and now the database says so too: UPDATE, DELETE and
-- TRUNCATE on es.events are refused for every role, including the table's owner, unless
-- the owner first disables this trigger (ALTER TABLE ... DISABLE TRIGGER), which is itself a
-- deliberate, logged DDL statement. Edits that get past it are still caught by the hash
-- chain and the seals (purser audit verify).
create function es.refuse_event_changes() returns trigger
language plpgsql
as $$
begin
    raise exception 'es.events is append-only: % is not allowed', tg_op
        using errcode = 'insufficient_privilege',
              hint = 'events are corrected by appending new events, never by editing old ones';
end $$;

create trigger append_only
    before update or delete on es.events
    for each row execute function es.refuse_event_changes();

create trigger append_only_truncate
    before truncate on es.events
    for each statement execute function es.refuse_event_changes();
