#!/bin/bash
# Entry point of the `postgres-replica` service of the scale profile (docker-compose.yml): a hot
# standby of `postgres-primary`, kept current by streaming replication, that Purser's
# query-api processes read from (DATABASE_READ_URL).
#
# On first start (empty data directory) it clones the primary with pg_basebackup; `-R` writes
# standby.signal and primary_conninfo, so the server starts as a standby and streams WAL
# through the slot the primary's init script created. Later starts just run the standby.
# Runs as the `postgres` user (see `user:` in the compose file).
set -euo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_HOST:=postgres-primary}"
: "${REPLICATION_SLOT:=purser_replica_1}"
export PGPASSWORD="${REPLICATION_PASSWORD:-replicator}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    until pg_isready -q -h "$PRIMARY_HOST" -p 5432; do
        echo "replica: waiting for $PRIMARY_HOST"
        sleep 1
    done
    # Leftovers of an interrupted clone would make pg_basebackup refuse the directory.
    find "$PGDATA" -mindepth 1 -delete
    echo "replica: cloning $PRIMARY_HOST with pg_basebackup"
    pg_basebackup -h "$PRIMARY_HOST" -p 5432 -U replicator -D "$PGDATA" \
        -X stream -S "$REPLICATION_SLOT" -R --checkpoint=fast
    chmod 0700 "$PGDATA"
fi

# hot_standby_feedback: long analytics queries on the replica are not cancelled by the
# primary's vacuum (at the price of some bloat on the primary while they run).
exec postgres -c hot_standby=on -c hot_standby_feedback=on
