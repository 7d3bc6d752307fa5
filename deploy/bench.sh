#!/usr/bin/env bash
# The benchmark: every scenario beside its ceiling measured in the same run, in one table
# (see the README's Performance section).
# Usage: bash deploy/bench.sh [calendar-bench suite options]   (from any directory)
#   bash deploy/bench.sh --quick            a short run (100,000 events, 5 s per measurement)
#   bash deploy/bench.sh --json out.json    also every figure as JSON
#   bash deploy/bench.sh --help             every option
# Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres; the run
# creates and drops its own database, calendar_bench, there) and AMQP_URL (default
# amqp://guest:guest@127.0.0.1:5672/%2f; the run declares queues of its own, which expire).
# Needs pgbench (installed from Debian's packages when missing and apt-get is at hand).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"

if ! command -v pgbench >/dev/null 2>&1; then
    step "pgbench (the ceiling of the PostgreSQL scenarios)"
    if command -v apt-get >/dev/null 2>&1; then
        apt-get install -y -qq postgresql-contrib >/dev/null || apt-get install -y -qq postgresql-client >/dev/null
    fi
    command -v pgbench >/dev/null 2>&1 || { echo "error: pgbench is not installed" >&2; exit 1; }
fi

# Optimised builds of what is measured and of the load generator; the queries are checked
# against the committed .sqlx.
step "release build (calendar-grpc, calendar-worker, calendar-bench)"
SQLX_OFFLINE=true cargo build --release --quiet \
    -p calendar-grpc -p calendar-worker -p calendar-tests --bin calendar-grpc \
    --bin calendar-worker --bin calendar-bench

exec target/release/calendar-bench suite "$@"
