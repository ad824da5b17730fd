"""How the parity tests render with runway and compare Jobs: `runway render` over a corpus
(in parallel, PARITY_JOBS), and the comparable form of a Job (the compressed step input
decoded, Dagster 1.1.9's hash-ordered lists as multisets; see test_parity.py), its
canonical and pretty text, and its kubernetes-validate --strict check.

tools/compat_sweep.py uses the same runner and comparison."""

from __future__ import annotations

import base64
import concurrent.futures
import copy
import json
import os
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import dagster_harness  # noqa: E402

K8S_VERSION = "1.36.0"
MULTISET_VERSIONS = {"1.1.9"}
MULTISET_PATHS = [
    ("spec", "template", "spec", "containers", 0, "env"),
    ("spec", "template", "spec", "containers", 0, "envFrom"),
    ("spec", "template", "spec", "containers", 0, "volumeMounts"),
    ("spec", "template", "spec", "volumes"),
    ("spec", "template", "spec", "imagePullSecrets"),
]


# ------------------------------------------------------------------------------------------------
# runway render
# ------------------------------------------------------------------------------------------------


def runway_bin() -> str:
    path = os.environ.get("RUNWAY_BIN") or os.path.join(REPO_ROOT, "target", "debug", "runway")
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def run_runway(binary: str, case_path: str, env: dict) -> dict:
    proc_env = {**dagster_harness.base_env(), **env}
    try:
        proc = subprocess.run(
            [binary, "render", "--case", case_path, "--output", "json"],
            env=proc_env, capture_output=True, timeout=60,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "crash": True, "error": "runway render timed out after 60s"}
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode == 0:
        try:
            return {"ok": True, "job": json.loads(proc.stdout.decode("utf-8"))}
        except ValueError as exc:
            return {"ok": False, "crash": True, "error": f"exit 0 but stdout is not JSON: {exc}"}
    if proc.returncode == 2:
        return {"ok": False, "error": stderr}
    return {"ok": False, "crash": True, "error": f"exit code {proc.returncode}: {stderr[-2000:]}"}


def run_runway_all(binary: str, paths: list[str], envs: list[dict]) -> list[dict]:
    jobs = int(os.environ.get("PARITY_JOBS", os.cpu_count() or 4))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_runway, binary, p, env) for p, env in zip(paths, envs)]
        return [f.result() for f in futures]



# ------------------------------------------------------------------------------------------------
# Comparison
# ------------------------------------------------------------------------------------------------


def decode_compressed(value: str):
    return json.loads(zlib.decompress(base64.b64decode(value)).decode("utf-8"))


def normalize_job(job):
    """Job with `--compressed-input-json <b64>` (and DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS, should it
    appear) replaced by the decoded JSON, so that compression/serialization details don't count."""
    job = copy.deepcopy(job)
    spec = (((job or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in spec.get("containers") or []:
        args = container.get("args")
        if isinstance(args, list):
            for i, arg in enumerate(args[:-1]):
                if arg == "--compressed-input-json" and isinstance(args[i + 1], str):
                    try:
                        args[i + 1] = {"decoded_compressed_input_json": decode_compressed(args[i + 1])}
                    except Exception as exc:  # noqa: BLE001
                        args[i + 1] = {"undecodable_compressed_input_json": str(exc)}
        for env in container.get("env") or []:
            if env.get("name") == "DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS" and isinstance(env.get("value"), str):
                try:
                    env["value"] = {"decoded": decode_compressed(env["value"])}
                except Exception as exc:  # noqa: BLE001
                    env["value"] = {"undecodable": str(exc)}
    return job


def multiset_lists(job, version: str, case: dict):
    """The Job with the hash-ordered lists of `version` (MULTISET_PATHS) in a canonical order."""
    if version not in MULTISET_VERSIONS or case.get("launcher_class") != "K8sRunLauncher":
        return job
    for path in MULTISET_PATHS:
        node = job
        for key in path[:-1]:
            ok = isinstance(node, dict) and key in node if isinstance(key, str) else \
                isinstance(node, list) and len(node) > key
            if not ok:
                node = None
                break
            node = node[key]
        if isinstance(node, dict) and isinstance(node.get(path[-1]), list):
            node[path[-1]] = sorted(node[path[-1]], key=lambda x: json.dumps(x, sort_keys=True))
    return job


def comparable(job, version: str, case: dict):
    return multiset_lists(normalize_job(job), version, case)


def canonical(job, version: str = "1.13.27", case: dict | None = None) -> str:
    return json.dumps(comparable(job, version, case or {}), sort_keys=True)


def pretty(job, version: str = "1.13.27", case: dict | None = None) -> list[str]:
    return json.dumps(comparable(job, version, case or {}), sort_keys=True, indent=1,
                      ensure_ascii=False).splitlines()


_VALIDATED: dict[str, str | None] = {}


def validate_job(job, key: str | None = None) -> str | None:
    """kubernetes-validate --strict for K8S_VERSION; `key` (a comparable canonical form) caches
    the answer: a Job equal to one already validated (list order aside) has the same answer."""
    if key is not None and key in _VALIDATED:
        return _VALIDATED[key]
    import kubernetes_validate

    try:
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
        result = None
    except Exception as exc:  # noqa: BLE001
        result = f"{type(exc).__name__}: {exc}"
    if key is not None:
        _VALIDATED[key] = result
    return result
