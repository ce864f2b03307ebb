#!/bin/bash
# Runs once, when the postgres image initialises an empty data directory for the
# `postgres-primary` service of the scale profile (docker-compose.yml). Prepares streaming
# replication for `postgres-replica`:
#
#   * a `replicator` role that may only replicate (password from REPLICATION_PASSWORD);
#   * a physical replication slot, so the primary keeps the WAL the replica has not received
#     yet (drop it with `select pg_drop_replication_slot('purser_replica_1')` if you remove
#     the replica for good, or the primary keeps WAL forever);
#   * a pg_hba.conf line letting that role connect for replication from the compose network.
#
# Local use only: passwords come from the compose file. (No `set -u`: the image sources this
# file instead of running it when it is not executable.)
set -eo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v repl_password="${REPLICATION_PASSWORD:-replicator}" <<'SQL'
create role replicator with replication login password :'repl_password';
select pg_create_physical_replication_slot('purser_replica_1');
SQL

echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
