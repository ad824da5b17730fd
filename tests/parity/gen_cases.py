"""Deterministic generator of the Runway <-> Dagster parity corpus, for a given Dagster version.

    generate(seed, count, dagster_version="1.13.27" | "1.1.9" | <any 1.x.y>, python=None)
        -> list[{"name", "case", "env", "features", "expect"}]

`case` is what `runway render --case FILE` reads; `env` is the process environment (on top of a
minimal base env) both implementations run with; `features` are coverage tags; `expect` is the
outcome the generator intends ("ok" or "error"), checked against Dagster by test_parity.py.

Generator modes (gen_base.Accepts), chosen by generator_mode(dagster_version):
- "1.13" (the 1.13 line): everything 1.13 accepts (merge_behavior, allowlists, per_step_k8s_config,
  container-context env, ...). This corpus is unchanged by the version work: same seed, same
  entries, no `dagster_version` in the case files.
- "1.1.9" (lines up to 1.1: the first Job-shape change the research locates, the container name
  override of dagster-k8s 0.17.15, lies inside the 1.1 line): only what 0.17.9's launchers,
  container-context parser, tag parser and step task accept, plus a share of cases using keys
  1.13 accepts and 1.1.9 refuses (`newer_key`, expected to be rejected). Case files carry
  `"dagster_version": "<version>"` at top level.
- "intersection" (1.2 .. 1.12): only inputs both 1.1.9 and 1.13 accept (no rejections).

Everything Dagster computes for a case (run-worker argv, Celery step kwargs) is computed with the
REAL Dagster of that version (dagster_complete.py): in-process for the 1.13 line (the project venv
is Dagster 1.13.27), else by dagster_batch.py workers under `python` (default .venv-1.1.9's for
"1.1.9").

Usage: python gen_cases.py [--seed N] [--count N] [--dagster-version V] [--python PY] [--out DIR]
"""

from __future__ import annotations

import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from gen_base import (  # noqa: E402
    ACCEPTS_1_1_9,
    ACCEPTS_1_13,
    ACCEPTS_INTERSECTION,
    Accepts,
    Builder,
)
from gen_runs import (  # noqa: E402
    CELERY_RUN_ERRORS,
    CELERY_RUN_ERRORS_1_1_9,
    CELERY_RUN_NEWER_KEY_ERRORS,
    K8S_RUN_ERRORS,
    K8S_RUN_ERRORS_1_1_9,
    K8S_RUN_NEWER_KEY_ERRORS,
    run_case_celery,
    run_case_k8s,
)
from gen_seed import FIXTURE_NAMES, fixed_entries as fixed_skeletons  # noqa: E402

__all__ = ["FIXTURE_NAMES", "generate", "fixed_entries", "generator_mode"]
from gen_steps import STEP_ERRORS, STEP_ERRORS_1_1_9, STEP_NEWER_KEY_ERRORS, step_case  # noqa: E402

DEFAULT_SEED = 20251125
DEFAULT_COUNT = 1200
NEWEST_VERSION = "1.13.27"
SEED_VERSION = "1.1.9"
VENV_1_1_9_PYTHON = os.path.join(REPO_ROOT, ".venv-1.1.9", "bin", "python")


def parse_version(version: str) -> tuple[int, int, int]:
    parts = [int(p) for p in version.split(".")[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def generator_mode(dagster_version: str) -> Accepts:
    line = parse_version(dagster_version)[:2]
    if line <= (1, 1):
        return ACCEPTS_1_1_9
    if line >= parse_version(NEWEST_VERSION)[:2]:
        return ACCEPTS_1_13
    return ACCEPTS_INTERSECTION


# Every error_period-th generated entry is an invalid case; the invalid cases rotate through all
# (case kind, error) pairs of the mode so that each kind of rejection is covered evenly (1.13: ~8%
# of the corpus; 1.1.9: ~14%, about a third of them newer keys).
ERROR_PERIOD = 12
ERROR_PERIOD_1_1_9 = 7


def _pairs(k8s, celery, step) -> list[tuple[str, str]]:
    return [("k8s-run", e) for e in k8s] + [("celery-run", e) for e in celery] + [("step", e) for e in step]


ERROR_PAIRS = _pairs(K8S_RUN_ERRORS, CELERY_RUN_ERRORS, STEP_ERRORS)
ERROR_PAIRS_1_1_9 = _pairs(K8S_RUN_ERRORS_1_1_9 + K8S_RUN_NEWER_KEY_ERRORS,
                           CELERY_RUN_ERRORS_1_1_9 + CELERY_RUN_NEWER_KEY_ERRORS,
                           STEP_ERRORS_1_1_9 + STEP_NEWER_KEY_ERRORS)


def _error_plan(accepts: Accepts) -> tuple[int, list[tuple[str, str]]]:
    if accepts is ACCEPTS_1_13:
        return ERROR_PERIOD, ERROR_PAIRS
    if accepts.common_errors or accepts.newer_key_errors:
        return ERROR_PERIOD_1_1_9, ERROR_PAIRS_1_1_9
    return 0, []


def generate_skeleton(seed: int, i: int, accepts: Accepts = ACCEPTS_1_13) -> dict:
    """Entry i before completion (case without run.args / task_kwargs)."""
    key = f"runway-parity:{seed}:{i}" if accepts is ACCEPTS_1_13 else f"runway-parity:{accepts.mode}:{seed}:{i}"
    rng = random.Random(key)
    b = Builder(rng, accepts)
    r = rng.random()
    kind = "k8s-run" if r < 0.50 else "celery-run" if r < 0.65 else "step"
    error = None
    period, pairs = _error_plan(accepts)
    if period and i % period == period // 2:
        kind, error = pairs[(i // period) % len(pairs)]
    if kind == "k8s-run":
        case = run_case_k8s(b, error)
    elif kind == "celery-run":
        case = run_case_celery(b, error)
    else:
        case = step_case(b, error)
    if error:
        b.feat("error")
    name = f"{i:04d}-{kind}" + (f"-err-{error}" if error else "")
    entry = {"name": name, "case": case, "env": dict(sorted(b.env.items())),
             "features": sorted(b.features), "expect": "error" if error else "ok"}
    return json.loads(json.dumps(entry))  # exactly what a JSON corpus file holds


def _finish(entry: dict, case: dict, dagster_version: str | None) -> dict:
    pending = entry["case"].get("pending") or {}
    features = set(entry["features"])
    if pending.get("retries_feature"):
        retry_mode = case["task_kwargs"]["execute_step_args_packed"]["retry_mode"]["__enum__"]
        features.add("retries_disabled" if retry_mode.endswith("DISABLED") else "retries_enabled")
    if dagster_version:
        case = {"dagster_version": dagster_version, **case}
    return json.loads(json.dumps({**entry, "case": case, "features": sorted(features)}))


def complete_entries(skeletons: list[dict], python: str | None = None,
                     dagster_version: str | None = None, jobs: int | None = None,
                     drop_failed: bool = False) -> list[dict]:
    """Entries with their cases completed by the real Dagster (in-process when python is None).
    A case that version cannot complete (its executor refuses the config) is an error, or with
    drop_failed (the compat sweep, on versions between the generator modes) left out."""
    if python is None:
        import dagster_complete

        cases = [dagster_complete.complete(e["case"]) for e in skeletons]
    else:
        import dagster_batch

        results = dagster_batch.run_batch(python, "complete", [e["case"] for e in skeletons], jobs=jobs)
        failed = [(e["name"], r) for e, r in zip(skeletons, results) if not r["ok"]]
        if drop_failed:
            kept = [(e, r) for e, r in zip(skeletons, results) if r["ok"]]
            skeletons, results = [e for e, _ in kept], [r for _, r in kept]
        elif failed:
            name, r = failed[0]
            raise RuntimeError(f"{len(failed)} cases could not be completed with {python}; first: "
                               f"{name}: {r['error']}\n{r.get('traceback', '')}")
        cases = [r["case"] for r in results]
    return [_finish(e, c, dagster_version) for e, c in zip(skeletons, cases)]


def generate_skeletons(seed: int, count: int, accepts: Accepts) -> list[dict]:
    entries = fixed_skeletons(accepts)[:count]
    i = 0
    while len(entries) < count:
        entries.append(generate_skeleton(seed, i, accepts))
        i += 1
    return entries


def generate(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT,
             dagster_version: str = NEWEST_VERSION, python: str | None = None,
             jobs: int | None = None, drop_failed: bool = False,
             accepts: Accepts | None = None) -> list[dict]:
    """The corpus for `dagster_version`, completed by that version's real Dagster: in-process
    for the 1.13 line unless `python` is given, else by `python` (default for the 1.1 line:
    .venv-1.1.9's interpreter). `accepts` overrides the version's generator mode (the sweep
    also feeds the full 1.13 corpus to older versions, whose refusals must then agree)."""
    accepts = accepts or generator_mode(dagster_version)
    skeletons = generate_skeletons(seed, count, accepts)
    if python is None and accepts is not ACCEPTS_1_13:
        if parse_version(dagster_version)[:2] != parse_version(SEED_VERSION)[:2]:
            raise ValueError(f"give the python of a Dagster {dagster_version} venv")
        python = VENV_1_1_9_PYTHON
    stamp = None if accepts is ACCEPTS_1_13 else dagster_version
    return complete_entries(skeletons, python, stamp, jobs, drop_failed)


def fixed_entries() -> list[dict]:
    """The 1.13 fixed entries, completed in-process (make_fixtures.py writes four of them)."""
    return complete_entries(fixed_skeletons(ACCEPTS_1_13))


def main(argv: list[str]) -> int:
    import argparse
    from collections import Counter

    parser = argparse.ArgumentParser(description="write the parity corpus")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("PARITY_SEED", DEFAULT_SEED)))
    parser.add_argument("--count", type=int, default=int(os.environ.get("PARITY_COUNT", DEFAULT_COUNT)))
    parser.add_argument("--dagster-version", default=NEWEST_VERSION)
    parser.add_argument("--python", help="python of a venv with that Dagster (default: see generate)")
    parser.add_argument("--out", help="directory for <name>.json entries (default: print summary)")
    args = parser.parse_args(argv)
    entries = generate(args.seed, args.count, args.dagster_version, args.python)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for e in entries:
            with open(os.path.join(args.out, e["name"] + ".json"), "w", encoding="utf-8") as f:
                json.dump(e, f, indent=1, ensure_ascii=False)
    c = Counter(f for e in entries for f in e["features"])
    for feat, n in sorted(c.items()):
        print(f"{n:6d}  {feat}")
    print(f"{len(entries)} entries for Dagster {args.dagster_version} "
          f"(mode {generator_mode(args.dagster_version).mode}), "
          f"{sum(e['expect'] == 'error' for e in entries)} expected errors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
