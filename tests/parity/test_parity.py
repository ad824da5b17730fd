"""Runway <-> Dagster parity tests.

    .venv/bin/python -m pytest tests/parity -q

Environment:
    PARITY_SEED     corpus seed (default gen_cases.DEFAULT_SEED)
    PARITY_COUNT    corpus size (default 1200)
    RUNWAY_BIN      runway binary (default <repo>/target/debug/runway)
    PARITY_REPORT   where to write the failure report (default: in the pytest temp dir)
    PARITY_JOBS     parallel `runway render` processes (default: CPU count)

The corpus (case files) is written under pytest's temp dir. Each entry is rendered by the real
Python packages (dagster_render.render) and by `runway render --case FILE --output json` with the
entry's env on top of a minimal base env, and the Jobs are compared byte for byte after key sorting;
the `--compressed-input-json` argument of step Jobs is compared decompressed.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import copy
import difflib
import json
import os
import subprocess
import sys
import time
import zlib

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import dagster_harness  # noqa: E402
import dagster_render  # noqa: E402
import gen_cases  # noqa: E402

SEED = int(os.environ.get("PARITY_SEED", gen_cases.DEFAULT_SEED))
COUNT = int(os.environ.get("PARITY_COUNT", gen_cases.DEFAULT_COUNT))
K8S_VERSION = "1.36.0"
MAX_REPORTED_DIFFS = 25

# Feature tags the corpus must cover (with at least MIN_PER_FEATURE entries at the default size).
REQUIRED_FEATURES = [
    "kind:k8s_run", "kind:celery_run", "kind:step", "seed_case",
    "labels", "env", "env_from", "env_config_maps", "env_secrets", "env_vars_kv", "env_vars_from_env",
    "env_value_from", "cc_env", "volumes", "volume_mounts", "camel_keys", "snake_keys", "resources",
    "numeric_quantity", "affinity", "tolerations", "node_selector", "sidecar", "init_containers",
    "container_security_context", "pod_security_context", "image_pull_policy", "image_pull_secrets",
    "service_account_name", "scheduler_name", "launcher_run_k8s_config", "container_config",
    "pod_template_spec_metadata", "pod_spec_config", "job_config", "job_metadata", "annotations",
    "owner_references", "job_spec_config", "ttl", "backoff_limit", "active_deadline_seconds",
    "job_spec_template_ignored", "tag_config", "tag_merge_deep", "tag_merge_shallow",
    "tag_merge_absent", "resource_requirements_tag", "container_context", "cc_env_vars",
    "cc_namespace", "cc_run_k8s_config", "cc_merge_shallow", "cc_merge_deep",
    "allowlist_fields_pass", "allowlist_fields_violate", "allowlist_env_vars", "env_source",
    "env_source_in_array", "resume", "fail_pod_on_run_failure", "long_job_name", "odd_job_name",
    "unicode_name", "long_op_name", "odd_op_name", "odd_location_name", "code_location",
    "per_step_k8s_config", "per_step_other_key_ignored", "retry_attempt", "retries_enabled",
    "retries_disabled", "celery_run_config", "celery_legacy_run_config", "celery_job_image",
    "celery_job_namespace", "celery_list_concat", "celery_labels", "celery_image_override",
    "celery_ignored_fields", "celery_current_image", "op_tag_config", "command", "user_args_replaced",
    "container_name_override", "container_config_image", "automount_override",
    "restart_policy_override", "type_coercion", "load_incluster_config_false", "job_namespace",
    "dagster_home", "job_image", "origin_image", "error",
    # invalid cases Dagster rejects
    "error:unknown_k8s_key", "error:camel_and_snake", "error:incluster_with_kubeconfig",
    "error:init_rejects_key", "error:env_source_unset", "error:env_vars_unset",
    "error:seed_resources", "error:allowlist_violation", "error:no_image",
    "error:launcher_unknown_key",
]
MIN_PER_FEATURE = 3


# ------------------------------------------------------------------------------------------------
# Session fixtures: corpus, Python renders, runway renders
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def corpus():
    t0 = time.monotonic()
    entries = gen_cases.generate(SEED, COUNT)
    return {"entries": entries, "gen_seconds": time.monotonic() - t0}


@pytest.fixture(scope="session")
def corpus_dir(corpus, tmp_path_factory):
    d = tmp_path_factory.mktemp("parity-corpus")
    for i, e in enumerate(corpus["entries"]):
        base = d / f"{i:05d}"
        (base.with_suffix(".case.json")).write_text(json.dumps(e["case"], ensure_ascii=False),
                                                    encoding="utf-8")
        (base.with_suffix(".env.json")).write_text(json.dumps(e["env"]), encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def python_results(corpus):
    t0 = time.monotonic()
    results = [dagster_render.render(e) for e in corpus["entries"]]
    return {"results": results, "seconds": time.monotonic() - t0}


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


@pytest.fixture(scope="session")
def runway_results(corpus, corpus_dir):
    binary = runway_bin()
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(
            f"runway binary not found at {binary}: build it with `cargo build -p runway --features dev-cluster` (or set RUNWAY_BIN "
            "to the binary) before running the parity comparison",
            pytrace=False,
        )
    entries = corpus["entries"]
    jobs = int(os.environ.get("PARITY_JOBS", os.cpu_count() or 4))
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(run_runway, binary, str(corpus_dir / f"{i:05d}.case.json"), e["env"])
            for i, e in enumerate(entries)
        ]
        results = [f.result() for f in futures]
    return {"results": results, "seconds": time.monotonic() - t0}


# ------------------------------------------------------------------------------------------------
# Comparison helpers
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


def canonical(job) -> str:
    return json.dumps(normalize_job(job), sort_keys=True)


def pretty(job) -> list[str]:
    return json.dumps(normalize_job(job), sort_keys=True, indent=1, ensure_ascii=False).splitlines()


def validate_job(job) -> str | None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


def report_path(tmp_path_factory) -> str:
    if os.environ.get("PARITY_REPORT"):
        return os.environ["PARITY_REPORT"]
    return str(tmp_path_factory.getbasetemp() / "parity-report.txt")


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


def test_generator_is_deterministic(corpus):
    n = min(COUNT, 250)
    again = gen_cases.generate(SEED, n)
    assert json.dumps(again, sort_keys=True) == json.dumps(corpus["entries"][:n], sort_keys=True)
    other = gen_cases.generate(SEED + 1, n)
    assert json.dumps(other, sort_keys=True) != json.dumps(again, sort_keys=True)
    names = [e["name"] for e in corpus["entries"]]
    assert len(names) == len(set(names)), "entry names must be unique"


def test_generator_feature_coverage(corpus):
    entries = corpus["entries"]
    counts = collections.Counter(f for e in entries for f in e["features"])
    kinds = collections.Counter(
        "step" if e["case"]["kind"] == "step" else e["case"]["launcher_class"] for e in entries
    )
    errors = sum(e["expect"] == "error" for e in entries)
    lines = [f"{counts[f]:5d}  {f}" for f in sorted(counts)]
    print("\nfeature coverage:\n" + "\n".join(lines))
    print(f"kinds: {dict(kinds)}; expected errors: {errors}/{len(entries)}")
    if COUNT < gen_cases.DEFAULT_COUNT:
        pytest.skip(f"coverage thresholds apply to the default corpus size (PARITY_COUNT={COUNT})")
    assert len(entries) >= 1000
    missing = [f for f in REQUIRED_FEATURES if counts[f] < MIN_PER_FEATURE]
    assert not missing, f"features covered by fewer than {MIN_PER_FEATURE} entries: {missing}"
    n = len(entries)
    assert 0.44 <= kinds["K8sRunLauncher"] / n <= 0.56, kinds
    assert 0.11 <= kinds["CeleryK8sRunLauncher"] / n <= 0.19, kinds
    assert 0.29 <= kinds["step"] / n <= 0.41, kinds
    assert 0.05 <= errors / n <= 0.10, errors


def test_python_side(corpus, python_results):
    """Dagster itself: outcome as intended by the generator, Jobs valid for k8s 1.36 (strict),
    and the run-worker argv in the Job equals the argv stored in the case."""
    problems = []
    for e, out in zip(corpus["entries"], python_results["results"]):
        got = "ok" if out["ok"] else "error"
        if got != e["expect"]:
            problems.append(f"{e['name']}: expected {e['expect']}, Dagster gave {got}: "
                            f"{out.get('error', '')[:300]}")
            continue
        if not out["ok"]:
            continue
        invalid = validate_job(out["job"])
        if invalid:
            problems.append(f"{e['name']}: Dagster Job fails kubernetes-validate: {invalid[:500]}")
        if e["case"]["kind"] == "run":
            args = out["job"]["spec"]["template"]["spec"]["containers"][0].get("args")
            if args != e["case"]["run"]["args"]:
                problems.append(f"{e['name']}: launcher argv differs from the case's run.args")
    n = len(corpus["entries"])
    print(f"\npython: generated {n} cases in {corpus['gen_seconds']:.1f}s, "
          f"rendered in {python_results['seconds']:.1f}s")
    assert not problems, "\n".join(problems[:50])


def test_parity_with_runway(corpus, python_results, runway_results, tmp_path_factory):
    entries = corpus["entries"]
    py = python_results["results"]
    rw = runway_results["results"]
    identical = runs = steps = errors_agreed = 0
    failures = []  # (name, kind, text)
    for e, p, r in zip(entries, py, rw):
        name = e["name"]
        if r.get("crash"):
            failures.append((name, "runway crashed", r["error"]))
            continue
        if p["ok"] != r["ok"]:
            if p["ok"]:
                failures.append((name, "outcome", f"Dagster rendered a Job, runway errored: {r['error'][:1000]}"))
            else:
                failures.append((name, "outcome", f"Dagster rejected the case ({p['error'][:500]}), "
                                                  "runway rendered a Job"))
            continue
        if not p["ok"]:
            identical += 1
            errors_agreed += 1
            continue
        if canonical(p["job"]) == canonical(r["job"]):
            identical += 1
            if e["case"]["kind"] == "step":
                steps += 1
            else:
                runs += 1
            invalid = validate_job(r["job"])
            if invalid:
                failures.append((name, "k8s validation", f"runway Job fails kubernetes-validate: {invalid[:1000]}"))
            continue
        diff = "\n".join(difflib.unified_diff(pretty(p["job"]), pretty(r["job"]), "dagster", "runway",
                                              n=3, lineterm=""))
        failures.append((name, "job differs", diff))

    total = len(entries)
    summary = (f"parity: {identical}/{total} identical ({runs} runs, {steps} steps, "
               f"{errors_agreed} errors agreed); python {python_results['seconds']:.1f}s, "
               f"runway {runway_results['seconds']:.1f}s")
    print("\n" + summary)
    if failures:
        by_kind = collections.Counter(k for _, k, _ in failures)
        path = report_path(tmp_path_factory)
        with open(path, "w", encoding="utf-8") as f:
            f.write(summary + "\n")
            f.write(f"failures by kind: {dict(by_kind)}\n\n")
            for name, kind, text in failures[:MAX_REPORTED_DIFFS]:
                f.write(f"=== {name} [{kind}]\n{text}\n\n")
            if len(failures) > MAX_REPORTED_DIFFS:
                f.write(f"... and {len(failures) - MAX_REPORTED_DIFFS} more: "
                        + ", ".join(n for n, _, _ in failures[MAX_REPORTED_DIFFS:]) + "\n")
        first = "\n".join(f"=== {n} [{k}]\n{t[:3000]}" for n, k, t in failures[:3])
        pytest.fail(f"{summary}\n{len(failures)} mismatches {dict(by_kind)}; report: {path}\n{first}",
                    pytrace=False)
