#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine, and
# does nothing that is already done. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

# --- Debian packages -------------------------------------------------------
need_pkgs=()
command -v cc >/dev/null || need_pkgs+=(build-essential)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
command -v python3 >/dev/null || need_pkgs+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v rabbitmq-server >/dev/null || need_pkgs+=(rabbitmq-server)
command -v pg_ctlcluster >/dev/null || need_pkgs+=(postgresql)
# kubectl for the dev cluster's conformance tests (Debian's, where none is installed)
command -v kubectl >/dev/null || need_pkgs+=(kubernetes-client)
# protoc for the gRPC contract (build.rs)
command -v protoc >/dev/null || need_pkgs+=(protobuf-compiler)
command -v curl >/dev/null || need_pkgs+=(curl)
# The production image: podman and runc build and run it (scripts/podman/),
# musl-gcc builds the static binary's C parts (ring, mimalloc).
command -v podman >/dev/null || need_pkgs+=(podman)
command -v runc >/dev/null || need_pkgs+=(runc)
command -v musl-gcc >/dev/null || need_pkgs+=(musl-tools)
# Flower's worker page is rendered in headless Chromium by the tests.
command -v chromium >/dev/null || need_pkgs+=(chromium)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "apt-get install ${need_pkgs[*]}"
    as_root apt-get update -q
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "${need_pkgs[@]}"
fi
command -v cargo >/dev/null || { echo "cargo (the Rust toolchain) is required" >&2; exit 1; }
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    log "rustup target add x86_64-unknown-linux-musl (the static binary of the image)"
    rustup target add x86_64-unknown-linux-musl
fi

# --- Loopback services (started only when not already listening) ------------
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! listening 6379; then
    log "starting Redis on 127.0.0.1:6379"
    redis_dir=$(mktemp -d -t runway-redis.XXXXXX)
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir "$redis_dir" --logfile "$redis_dir/redis.log"
fi
if ! listening 5672; then
    log "starting RabbitMQ on 127.0.0.1:5672"
    as_root rabbitmq-server -detached || true
fi
# Flower reads RabbitMQ's queue lengths from the management API.
if ! listening 15672; then
    log "enabling RabbitMQ's management plugin on 127.0.0.1:15672 (Flower's queue lengths)"
    as_root rabbitmq-plugins enable rabbitmq_management >/dev/null
    for _ in $(seq 1 60); do listening 15672 && break; sleep 0.5; done
fi
if ! listening 5432; then
    log "starting PostgreSQL on 127.0.0.1:5432"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

# --- Python venvs with the pinned Dagster test peers ------------------------
# make_venv DIR PYTHON REQUIREMENTS CONSTRAINTS: installs the pins into DIR, only when they
# changed since it was last done (the stamp holds their digest).
make_venv() {
    local dir=$1 python=$2 requirements=$3 constraints=$4
    local stamp=$dir/.runway-requirements want
    want=$(cat "$requirements" "$constraints" | sha256sum | cut -d' ' -f1)
    if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return
    fi
    log "creating $dir with the pinned packages of $requirements ($("$python" --version 2>&1))"
    "$python" -m venv "$dir"
    "$dir/bin/pip" install -q --upgrade pip
    "$dir/bin/pip" install -q -r "$requirements" -c "$constraints"
    echo "$want" > "$stamp"
}

# Dagster 1.1.9 runs on Python 3.7 to 3.10: the newest pyenv 3.10 (under `pyenv root`, or
# $PYENV_ROOT, or ~/.pyenv), else a python3.10 on PATH.
python310() {
    local root candidate
    root=$(pyenv root 2>/dev/null) || root=${PYENV_ROOT:-$HOME/.pyenv}
    candidate=$(ls -d "$root"/versions/3.10.*/bin/python3.10 2>/dev/null | sort -V | tail -n1)
    [ -n "$candidate" ] || candidate=$(command -v python3.10 || true)
    if [ -n "$candidate" ] &&
        "$candidate" -c 'import sys, venv; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
        echo "$candidate"
        return
    fi
    echo "no Python 3.10 for .venv-1.1.9 (the Dagster 1.1.9 test peers): none under" \
        "$root/versions and no working python3.10 on PATH; install one with" \
        "\`pyenv install 3.10\`" >&2
    return 1
}

make_venv .venv python3 python/requirements-test.txt python/constraints.txt
py310=$(python310)
make_venv .venv-1.1.9 "$py310" python/requirements-1.1.9.txt python/constraints-1.1.9.txt
