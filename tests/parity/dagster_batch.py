"""Run the parity harness in ANOTHER Dagster's venv, many cases per process.

The 1.13 corpus is completed and rendered in-process (the project venv is Dagster 1.13.27). Any
other version (1.1.9 in .venv-1.1.9, the compat sweep's target/compat/<version>/) runs this file
as a worker under that venv's python:

    <venv>/bin/python dagster_batch.py OP IN.json OUT.json

    OP = complete   IN: [skeleton case, ...]     OUT: [{"ok": true, "case": case} | {"ok": false, "error"}]
    OP = render     IN: [{"case", "env"}, ...]   OUT: [dagster_render.render(entry), ...]
    OP = version    IN: []                       OUT: {"dagster": ..., "dagster-k8s": ..., "python": ...}

and `run_batch(python, op, items)` (imported from the project venv) splits the items over a few
such processes run side by side, each started with PYTHONHASHSEED=HASH_SEED: Dagster < 0.21.3
(dagster-k8s) orders some de-duplicated lists by Python's salted str hash, so a fixed seed makes
its Jobs reproducible run to run (test_parity.py still compares those lists as multisets).
The worker imports only the harness modules (dagster_compat, dagster_harness, dagster_render,
dagster_complete) and the standard library, so it runs on Python 3.10 and any Dagster 1.1.9..1.13.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
HASH_SEED = "0"
# The worker's environment: nothing of the caller's venv (PYTHONPATH, VIRTUAL_ENV) leaks in.
_PASS_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL")


def worker_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    env.update({"PYTHONHASHSEED": HASH_SEED, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUTF8": "1"})
    return env


def run_batch(python: str, op: str, items: list, jobs: int | None = None,
              timeout: float = 1800) -> list:
    """Results of `op` for every item, in order, computed by `python` (a venv's interpreter)."""
    python = os.path.abspath(python)  # the workers run in this directory; no realpath (venv)
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise FileNotFoundError(f"no python at {python}")
    if op == "version":
        return _run_one(python, op, [], timeout)
    if not items:
        return []
    jobs = max(1, min(jobs or os.cpu_count() or 2, 8, (len(items) + 49) // 50))
    size = (len(items) + jobs - 1) // jobs
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    with tempfile.TemporaryDirectory(prefix="runway-parity-batch-") as d:
        procs = []
        for n, chunk in enumerate(chunks):
            src, dst = os.path.join(d, f"{n}.in.json"), os.path.join(d, f"{n}.out.json")
            with open(src, "w", encoding="utf-8") as f:
                json.dump(chunk, f, ensure_ascii=False)
            err = open(os.path.join(d, f"{n}.err"), "w+b")
            proc = subprocess.Popen([python, os.path.abspath(__file__), op, src, dst],
                                    env=worker_env(), cwd=HERE, stdout=err, stderr=err)
            procs.append((proc, dst, err))
        out: list = []
        for proc, dst, err in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                for p, _, _ in procs:
                    p.kill()
                    p.wait()
                raise
            err.seek(0)
            tail = err.read().decode("utf-8", "replace")[-4000:]
            err.close()
            if proc.returncode != 0 or not os.path.exists(dst):
                raise RuntimeError(f"{python} dagster_batch.py {op} exited {proc.returncode}:\n{tail}")
            with open(dst, encoding="utf-8") as f:
                out.extend(json.load(f))
        return out


def _run_one(python: str, op: str, items: list, timeout: float):
    with tempfile.TemporaryDirectory(prefix="runway-parity-batch-") as d:
        src, dst = os.path.join(d, "in.json"), os.path.join(d, "out.json")
        with open(src, "w", encoding="utf-8") as f:
            json.dump(items, f)
        proc = subprocess.run([python, os.path.abspath(__file__), op, src, dst], env=worker_env(),
                              cwd=HERE, capture_output=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{python} dagster_batch.py {op} exited {proc.returncode}:\n"
                               f"{proc.stderr.decode('utf-8', 'replace')[-4000:]}")
        with open(dst, encoding="utf-8") as f:
            return json.load(f)


# ------------------------------------------------------------------------------------------------
# Worker side (runs under the target venv's python)
# ------------------------------------------------------------------------------------------------


def _versions() -> dict:
    from importlib.metadata import version

    return {"dagster": version("dagster"), "dagster-k8s": version("dagster-k8s"),
            "dagster-celery-k8s": version("dagster-celery-k8s"),
            "python": ".".join(map(str, sys.version_info[:3]))}


def _complete(items: list) -> list:
    import dagster_complete

    out = []
    for skeleton in items:
        try:
            out.append({"ok": True, "case": dagster_complete.complete(skeleton)})
        except BaseException as exc:  # noqa: BLE001 - reported per case, the batch goes on
            if isinstance(exc, KeyboardInterrupt):
                raise
            out.append({"ok": False, "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc()})
    return out


def _render(items: list) -> list:
    import dagster_render

    out = []
    for entry in items:
        try:
            out.append(dagster_render.render(entry))
        except AssertionError as exc:  # the harness itself went wrong (not a Dagster rejection)
            out.append({"ok": False, "harness_error": True, "error": f"AssertionError: {exc}",
                        "traceback": traceback.format_exc()})
    return out


def worker_main(argv: list[str]) -> int:
    op, src, dst = argv
    sys.path.insert(0, HERE)
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    with open(src, encoding="utf-8") as f:
        items = json.load(f)
    if op == "complete":
        result = _complete(items)
    elif op == "render":
        result = _render(items)
    elif op == "version":
        result = _versions()
    else:
        raise SystemExit(f"unknown op {op!r}")
    tmp = dst + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, default=str)
    os.replace(tmp, dst)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
