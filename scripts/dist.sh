#!/usr/bin/env bash
# Builds dagster-runway's sdist, then its wheel from that sdist, into dist/ (or $DIST_DIR),
# with the pinned `build` and setuptools of .venv (python/constraints.txt), offline: no
# isolated build env is downloaded. PYTHON names another interpreter that has both.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-.venv/bin/python}
out=${DIST_DIR:-dist}
if ! "$python" -c 'import build, setuptools' 2>/dev/null; then
    echo "$python has no build or setuptools: run scripts/bootstrap.sh (python/requirements-test.txt)" >&2
    exit 1
fi
mkdir -p "$out"
rm -f "$out"/dagster_runway-*
if ! output=$("$python" -m build --no-isolation --outdir "$out" python/dagster-runway 2>&1); then
    echo "$output" >&2
    exit 1
fi
ls "$out"/dagster_runway-*
