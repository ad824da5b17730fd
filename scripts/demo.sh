#!/usr/bin/env bash
# The demo (`make demo`, or `scripts/demo.sh [--keep]`): installs what is missing, starts
# RabbitMQ, Redis and PostgreSQL if they are not running, builds runway, then runs a Dagster
# deployment on Runway and one job through it (scripts/demo.py). Everything it started is
# stopped at the end, services included, unless --keep is given.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=false
for arg in "$@"; do [ "$arg" = "--keep" ] && keep=true; done

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
started=()
listening 6379 || started+=(redis)
listening 5672 || started+=(rabbitmq)
listening 5432 || started+=(postgresql)

stop_services() {
    for svc in "${started[@]}"; do
        echo "==> stopping $svc (the demo started it)"
        case $svc in
            redis) redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true ;;
            rabbitmq) as_root rabbitmqctl stop >/dev/null 2>&1 || true ;;
            postgresql) as_root pg_ctlcluster --skip-systemctl-redirect \
                "$(ls /etc/postgresql | head -n1)" main stop >/dev/null 2>&1 || true ;;
        esac
    done
}
if ! $keep && [ ${#started[@]} -gt 0 ]; then trap stop_services EXIT; fi

scripts/bootstrap.sh
echo "==> cargo build --release -p runway --features dev-cluster"
cargo build --quiet --release -p runway --features dev-cluster
RUNWAY_BIN=target/release/runway .venv/bin/python scripts/demo.py "$@"
