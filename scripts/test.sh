#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, and the whole test suite against a real
# Postgres (installed and started if none answers). KurrentDB's share of the contract suite
# runs too when KURRENTDB_URL points at a server. RabbitMQ (for the broker tests) is started, or
# installed and started, when none answers on 127.0.0.1:5672.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/postgres.sh
. scripts/lib/rabbitmq.sh

ensure_postgres
ensure_rabbitmq
say "cargo fmt --check"
cargo fmt --all --check
say "cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
say "cargo test"
# Three tests at a time per test binary: each test runs whole Purser processes (pools, projection
# claims), and four heavy tests side by side came within a few connections of Postgres's default
# max_connections (100). PURSER_TEST_THREADS overrides.
cargo test --workspace --locked -- --test-threads="${PURSER_TEST_THREADS:-3}"
say "all checks passed"
