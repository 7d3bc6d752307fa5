#!/usr/bin/env bash
# The whole test suite, as CI runs it: static checks of the deployment files, formatting, the
# PostgreSQL and RabbitMQ the tests need, the offline query data check, lints, every test of
# every crate, then the fault injection scenario (which restarts RabbitMQ, so it runs last and
# alone).
# Usage: bash deploy/test.sh   (from any directory)
# Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
# PREPARE_DATABASE_URL (default: database calendar_sqlx_prepare on the same server) and
# AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f); CALENDAR_FAULTS_LONG=1 for the long
# fault injection run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

# The deployment files first, so a broken manifest fails fast: static checks, no container
# engine or cluster needed (deploy/check_deploy.py installs the tools it lacks where a registry
# offers them). They need python3.
deploy_check() {
    if command -v python3 >/dev/null 2>&1; then
        python3 deploy/check_deploy.py "$1"
    else
        echo "skipped: python3 is not installed"
    fi
}

step "deploy: compose file (docker compose config)"
deploy_check compose

step "deploy: every manifest parses and carries its required fields (compose, Kubernetes)"
deploy_check manifests

step "deploy: Dockerfile rules (project rules, hadolint)"
deploy_check dockerfile

step "formatting (cargo fmt --check)"
cargo fmt --all -- --check

# PostgreSQL: the tests need it; without it the run fails, it is never skipped. Each test makes
# its own database through DATABASE_URL (`#[sqlx::test]`), so any database the user may connect
# to and create databases from will do.
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
# The database the offline query data is checked against: recreated and migrated on every run.
PREPARE_DATABASE_URL="${PREPARE_DATABASE_URL:-${DATABASE_URL%/*}/calendar_sqlx_prepare}"
shown_url=$(sed -E 's#(://[^:/@]+):[^@]*@#\1:***@#' <<<"$DATABASE_URL")

postgres_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready --quiet --dbname="$DATABASE_URL"
    else
        # No client tools: at least check that something accepts connections there.
        [[ $DATABASE_URL =~ ^[a-z]+://([^@/]*@)?([^:/?]+)(:([0-9]+))? ]] || return 1
        (exec 3<>"/dev/tcp/${BASH_REMATCH[2]}/${BASH_REMATCH[4]:-5432}") 2>/dev/null
    fi
}

step "PostgreSQL at $shown_url"
if ! postgres_ready && command -v pg_ctlcluster >/dev/null 2>&1 && [[ -d /etc/postgresql ]]; then
    cluster_version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "not answering; starting the local cluster $cluster_version/main"
    pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main start || true
    for _ in $(seq 30); do
        postgres_ready && break
        sleep 1
    done
fi
if ! postgres_ready; then
    echo "error: PostgreSQL is not reachable at $shown_url." >&2
    echo "Start it, or point DATABASE_URL at a server whose user may create databases." >&2
    exit 1
fi
echo "ready"

# RabbitMQ: the queue adapter's tests need it; same rule, never skipped.
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
[[ $AMQP_URL =~ ^amqps?://([^@/]*@)?([^:/?]+)(:([0-9]+))? ]] || { echo "error: AMQP_URL is not an amqp:// URL" >&2; exit 1; }
amqp_host=${BASH_REMATCH[2]}
amqp_port=${BASH_REMATCH[4]:-5672}
rabbitmq_ready() { (exec 3<>"/dev/tcp/$amqp_host/$amqp_port") 2>/dev/null; }

step "RabbitMQ at $amqp_host:$amqp_port"
if ! rabbitmq_ready && command -v rabbitmq-server >/dev/null 2>&1; then
    echo "not answering; starting the local broker"
    rabbitmq-server -detached || true
    for _ in $(seq 60); do
        rabbitmq_ready && break
        sleep 1
    done
fi
if ! rabbitmq_ready; then
    echo "error: RabbitMQ is not reachable at $amqp_host:$amqp_port." >&2
    echo "Start it (rabbitmq-server -detached), or point AMQP_URL at a broker." >&2
    exit 1
fi
echo "ready"

step "sqlx-cli 0.9 (for the offline query data check)"
if [[ "$(cargo sqlx --version 2>/dev/null)" != *" 0.9."* ]]; then
    cargo install sqlx-cli --version '^0.9' --no-default-features --features rustls,postgres --locked
fi
cargo sqlx --version

step "offline query data: .sqlx matches the queries and migrations (cargo sqlx prepare --check)"
sqlx database reset -y --database-url "$PREPARE_DATABASE_URL" --source migrations
cargo sqlx prepare --workspace --check --database-url "$PREPARE_DATABASE_URL" -- --all-targets --all-features

# From here on the compiler checks queries against the committed .sqlx, never a live database.
export SQLX_OFFLINE=true

step "lints (cargo clippy, warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

# The end-to-end tests (tests/) run the built binaries as processes.
step "binaries (cargo build --workspace --bins)"
cargo build --workspace --bins --all-features

step "tests (cargo test --workspace --all-features)"
cargo test --workspace --all-features

# Reminders through killed workers, a restarted broker and cut database connections. It stops
# and starts the machine's RabbitMQ (rabbitmqctl), so it is ignored in the step above and runs
# here, alone (one test thread, nothing else using the broker), printing its figures. It leaves
# the broker running, also when it fails.
step "fault injection (short; CALENDAR_FAULTS_LONG=1 for the long run)"
cargo test --all-features -p calendar-tests --test it -- --ignored e2e::faults:: --test-threads 1 --nocapture

step "all checks passed"
