#!/usr/bin/env bash
# Brings everything up: Postgres (installed and started if none answers), the database, the
# migrations, the demo data (catalog, staff accounts, order history), and the GraphQL API on
# http://127.0.0.1:8080 (Ctrl-C stops it). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/postgres.sh

ensure_postgres
say "building purser"
cargo build --bin purser
purser="${CARGO_TARGET_DIR:-target}/debug/purser"
say "migrating"
"$purser" migrate
say "loading the demo data (catalog, staff accounts, order history)"
"$purser" seed
say "serving GraphQL on http://${PURSER_HTTP_ADDR:-127.0.0.1:8080}/graphql (GraphiQL: /graphiql)"
exec "$purser" serve
