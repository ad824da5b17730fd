"""Runway <-> Dagster parity tests, per Dagster version.

    .venv/bin/python -m pytest tests/parity -q

Versions (PARITY_VERSIONS, default "1.13.27,1.1.9"):
- 1.13.27: the corpus of gen_cases.generate(seed, count) (unchanged by the version work),
  rendered in-process by the project venv's Dagster 1.13.27 / dagster-k8s 0.29.27.
- 1.1.9: gen_cases.generate(seed, count, "1.1.9"): case files carry "dagster_version": "1.1.9";
  completed and rendered by the real Dagster 1.1.9 / dagster-k8s / dagster-celery-k8s 0.17.9 in
  .venv-1.1.9 (dagster_batch.py workers, PYTHONHASHSEED=dagster_batch.HASH_SEED).

Environment:
    PARITY_SEED     corpus seed (default gen_cases.DEFAULT_SEED; the same for every version)
    PARITY_COUNT    corpus size per version (default 1200)
    PARITY_VERSIONS comma-separated versions to check (default: all above)
    RUNWAY_BIN      runway binary (default <repo>/target/debug/runway)
    PARITY_REPORT   failure report path; the version is inserted before the extension
                    (default: parity-report-<version>.txt in the pytest temp dir)
    PARITY_JOBS     parallel `runway render` processes (default: CPU count)

Each entry is rendered by the real Python packages of its version and by
`runway render --case FILE --output json` with the entry's env on top of a minimal base env, and
the Jobs are compared byte for byte after key sorting; the `--compressed-input-json` argument of
step Jobs is compared decompressed.

One exception, Dagster 1.1.9 only (dagster-k8s < 0.21.3): K8sContainerContext.merge de-duplicates
the launcher's and the code location's list fields through a Python set, sorted by the salted
str hash (`sorted(set(...), key=hash)`), so their order changes with PYTHONHASHSEED. In the Jobs
of K8sRunLauncher run cases of the 1.1.9 corpus, these lists are compared as multisets (each
list's elements sorted by their key-sorted JSON on both sides, duplicates kept):
    spec.template.spec.containers[0].env           (the env_vars part is hash-ordered)
    spec.template.spec.containers[0].envFrom       (config maps, then secrets, each hash-ordered)
    spec.template.spec.containers[0].volumeMounts
    spec.template.spec.volumes
    spec.template.spec.imagePullSecrets
CeleryK8sRunLauncher run Jobs and celery step Jobs concatenate those lists without a set and are
compared in order, like every 1.13 Job. (Rendering the 1.1.9 corpus under PYTHONHASHSEED 0, 1, 2
and 3 changes exactly these five paths, and only in K8sRunLauncher Jobs.)
"""

from __future__ import annotations

import collections
import difflib
import json
import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import dagster_batch  # noqa: E402
import dagster_render  # noqa: E402
import gen_cases  # noqa: E402
import parity_summary  # noqa: E402
from parity_features import MIN_PER_FEATURE, RATIOS, required_features  # noqa: E402
from parity_jobs import canonical, pretty, run_runway_all, runway_bin, validate_job  # noqa: E402

SEED = int(os.environ.get("PARITY_SEED", gen_cases.DEFAULT_SEED))
COUNT = int(os.environ.get("PARITY_COUNT", gen_cases.DEFAULT_COUNT))
VERSIONS = [v.strip() for v in os.environ.get("PARITY_VERSIONS", "1.13.27,1.1.9").split(",") if v.strip()]
MAX_REPORTED_DIFFS = 25

# The python of each version that is not the project venv's (gen_cases.generate's default for 1.1).
VERSION_PYTHON = {"1.1.9": gen_cases.VENV_1_1_9_PYTHON}


# ------------------------------------------------------------------------------------------------
# Session fixtures: corpus, Python renders, runway renders (one set per version)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", params=VERSIONS)
def version(request):
    return request.param


def version_python(version: str) -> str | None:
    python = VERSION_PYTHON.get(version)
    if python and not (os.path.isfile(python) and os.access(python, os.X_OK)):
        pytest.fail(f"Dagster {version} parity needs {python} (scripts/bootstrap.sh creates it; "
                    f"set PARITY_VERSIONS to skip that version)", pytrace=False)
    return python


_CACHE: dict = collections.defaultdict(dict)


def _cached(version: str, key: str, fn):
    if key not in _CACHE[version]:
        _CACHE[version][key] = fn()
    return _CACHE[version][key]


@pytest.fixture(scope="session")
def corpus(version):
    def make():
        python = version_python(version)
        t0 = time.monotonic()
        entries = gen_cases.generate(SEED, COUNT, version, python=python)
        return {"entries": entries, "gen_seconds": time.monotonic() - t0}
    return _cached(version, "corpus", make)


@pytest.fixture(scope="session")
def corpus_dir(version, corpus, tmp_path_factory):
    def make():
        d = tmp_path_factory.mktemp(f"parity-corpus-{version}")
        for i, e in enumerate(corpus["entries"]):
            base = d / f"{i:05d}"
            (base.with_suffix(".case.json")).write_text(json.dumps(e["case"], ensure_ascii=False),
                                                        encoding="utf-8")
            (base.with_suffix(".env.json")).write_text(json.dumps(e["env"]), encoding="utf-8")
        return d
    return _cached(version, "corpus_dir", make)


@pytest.fixture(scope="session")
def python_results(version, corpus):
    def make():
        python = version_python(version)
        t0 = time.monotonic()
        if python is None:
            results = [dagster_render.render(e) for e in corpus["entries"]]
        else:
            results = dagster_batch.run_batch(python, "render", corpus["entries"])
        return {"results": results, "seconds": time.monotonic() - t0}
    return _cached(version, "python_results", make)


@pytest.fixture(scope="session")
def runway_results(version, corpus, corpus_dir):
    def make():
        binary = runway_bin()
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            pytest.fail(
                f"runway binary not found at {binary}: build it with `cargo build -p runway --features "
                "dev-cluster` (or set RUNWAY_BIN to the binary) before running the parity comparison",
                pytrace=False,
            )
        entries = corpus["entries"]
        t0 = time.monotonic()
        results = run_runway_all(binary, [str(corpus_dir / f"{i:05d}.case.json") for i in range(len(entries))],
                                 [e["env"] for e in entries])
        return {"results": results, "seconds": time.monotonic() - t0}
    return _cached(version, "runway_results", make)


def report_path(tmp_path_factory, version: str) -> str:
    if os.environ.get("PARITY_REPORT"):
        root, ext = os.path.splitext(os.environ["PARITY_REPORT"])
        return f"{root}-{version}{ext or '.txt'}"
    return str(tmp_path_factory.getbasetemp() / f"parity-report-{version}.txt")


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


def test_generator_is_deterministic(version, corpus):
    n = min(COUNT, 250 if VERSION_PYTHON.get(version) is None else 100)
    python = version_python(version)
    again = gen_cases.generate(SEED, n, version, python=python)
    assert json.dumps(again, sort_keys=True) == json.dumps(corpus["entries"][:n], sort_keys=True)
    other = gen_cases.generate_skeletons(SEED + 1, n, gen_cases.generator_mode(version))
    mine = gen_cases.generate_skeletons(SEED, n, gen_cases.generator_mode(version))
    assert json.dumps(other, sort_keys=True) != json.dumps(mine, sort_keys=True)
    names = [e["name"] for e in corpus["entries"]]
    assert len(names) == len(set(names)), "entry names must be unique"
    stamped = {e["case"].get("dagster_version") for e in corpus["entries"]}
    assert stamped == ({None} if gen_cases.generator_mode(version) is gen_cases.ACCEPTS_1_13 else {version})


def test_generator_feature_coverage(version, corpus):
    entries = corpus["entries"]
    counts = collections.Counter(f for e in entries for f in e["features"])
    kinds = collections.Counter(
        "step" if e["case"]["kind"] == "step" else e["case"]["launcher_class"] for e in entries
    )
    errors = sum(e["expect"] == "error" for e in entries)
    lines = [f"{counts[f]:5d}  {f}" for f in sorted(counts)]
    print(f"\n[{version}] feature coverage:\n" + "\n".join(lines))
    print(f"[{version}] kinds: {dict(kinds)}; expected errors: {errors}/{len(entries)}")
    if COUNT < gen_cases.DEFAULT_COUNT:
        pytest.skip(f"coverage thresholds apply to the default corpus size (PARITY_COUNT={COUNT})")
    assert len(entries) >= 1000
    missing = [f for f in required_features(version) if counts[f] < MIN_PER_FEATURE]
    assert not missing, f"[{version}] features covered by fewer than {MIN_PER_FEATURE} entries: {missing}"
    n = len(entries)
    (k8s_lo, k8s_hi), (cel_lo, cel_hi), (step_lo, step_hi), (err_lo, err_hi) = RATIOS[version]
    assert k8s_lo <= kinds["K8sRunLauncher"] / n <= k8s_hi, kinds
    assert cel_lo <= kinds["CeleryK8sRunLauncher"] / n <= cel_hi, kinds
    assert step_lo <= kinds["step"] / n <= step_hi, kinds
    assert err_lo <= errors / n <= err_hi, errors


def test_python_side(version, corpus, python_results):
    """Dagster itself: outcome as intended by the generator, Jobs valid for k8s 1.36 (strict),
    and the run-worker argv in the Job equals the argv stored in the case."""
    problems = []
    for e, out in zip(corpus["entries"], python_results["results"]):
        if out.get("harness_error"):
            problems.append(f"{e['name']}: harness error: {out['error'][:300]}")
            continue
        got = "ok" if out["ok"] else "error"
        if got != e["expect"]:
            problems.append(f"{e['name']}: expected {e['expect']}, Dagster {version} gave {got}: "
                            f"{out.get('error', '')[:300]}")
            continue
        if not out["ok"]:
            continue
        invalid = validate_job(out["job"], canonical(out["job"], version, e["case"]))
        if invalid:
            problems.append(f"{e['name']}: Dagster Job fails kubernetes-validate: {invalid[:500]}")
        if e["case"]["kind"] == "run":
            args = out["job"]["spec"]["template"]["spec"]["containers"][0].get("args")
            if args != e["case"]["run"]["args"]:
                problems.append(f"{e['name']}: launcher argv differs from the case's run.args")
    n = len(corpus["entries"])
    print(f"\n[{version}] python: generated {n} cases in {corpus['gen_seconds']:.1f}s, "
          f"rendered in {python_results['seconds']:.1f}s")
    assert not problems, f"[Dagster {version}]\n" + "\n".join(problems[:50])


# Only an older release's corpus holds keys its Dagster lacks.
OLDER_VERSIONS = [v for v in VERSIONS if v != "1.13.27"]


@pytest.mark.parametrize("version", OLDER_VERSIONS, indirect=True)
def test_newer_keys_are_accepted_by_the_newest(version, corpus):
    """The 1.1.9 corpus's `newer_key` cases are rejections only because 1.1.9 lacks the key: the
    project venv's Dagster 1.13.27 (args recomputed by it) renders every one of them."""
    newer = [e for e in corpus["entries"] if "newer_key" in e["features"]]
    assert newer, f"the {version} corpus has no newer-key case: the generator lost that feature"
    import dagster_complete

    problems = []
    for e in newer:
        case = {k: v for k, v in e["case"].items() if k != "dagster_version"}
        if case["kind"] == "run":
            case = dagster_complete.complete({**case, "run": {k: v for k, v in case["run"].items() if k != "args"}})
        out = dagster_render.render({"name": e["name"], "case": case, "env": e["env"]})
        if not out["ok"]:
            problems.append(f"{e['name']}: Dagster {gen_cases.NEWEST_VERSION} rejects it too: {out['error'][:300]}")
    assert not problems, "\n".join(problems[:30])


def test_parity_with_runway(version, corpus, python_results, runway_results, tmp_path_factory):
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
                failures.append((name, "outcome", f"Dagster {version} rendered a Job, runway errored: "
                                                  f"{r['error'][:1000]}"))
            else:
                failures.append((name, "outcome", f"Dagster {version} rejected the case "
                                                  f"({p['error'][:500]}), runway rendered a Job"))
            continue
        if not p["ok"]:
            identical += 1
            errors_agreed += 1
            continue
        expected, got = canonical(p["job"], version, e["case"]), canonical(r["job"], version, e["case"])
        if expected == got:
            identical += 1
            if e["case"]["kind"] == "step":
                steps += 1
            else:
                runs += 1
            invalid = validate_job(r["job"], got)
            if invalid:
                failures.append((name, "k8s validation", f"runway Job fails kubernetes-validate: {invalid[:1000]}"))
            continue
        diff = "\n".join(difflib.unified_diff(pretty(p["job"], version, e["case"]),
                                              pretty(r["job"], version, e["case"]),
                                              f"dagster {version}", "runway", n=3, lineterm=""))
        failures.append((name, "job differs", diff))

    total = len(entries)
    summary = (f"parity Dagster {version}: {identical}/{total} identical ({runs} runs, {steps} steps, "
               f"{errors_agreed} errors agreed); generated {corpus['gen_seconds']:.1f}s, "
               f"python {python_results['seconds']:.1f}s, runway {runway_results['seconds']:.1f}s")
    parity_summary.add(summary)
    print("\n" + summary)
    if failures:
        by_kind = collections.Counter(k for _, k, _ in failures)
        path = report_path(tmp_path_factory, version)
        with open(path, "w", encoding="utf-8") as f:
            f.write(summary + "\n")
            f.write(f"failures by kind: {dict(by_kind)}\n\n")
            for name, kind, text in failures[:MAX_REPORTED_DIFFS]:
                f.write(f"=== [{version}] {name} [{kind}]\n{text}\n\n")
            if len(failures) > MAX_REPORTED_DIFFS:
                f.write(f"... and {len(failures) - MAX_REPORTED_DIFFS} more: "
                        + ", ".join(n for n, _, _ in failures[MAX_REPORTED_DIFFS:]) + "\n")
        first = "\n".join(f"=== [{version}] {n} [{k}]\n{t[:3000]}" for n, k, t in failures[:3])
        pytest.fail(f"{summary}\n{len(failures)} mismatches {dict(by_kind)}; "
                    f"report: {path}\n{first}", pytrace=False)