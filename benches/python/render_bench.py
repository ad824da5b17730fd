#!/usr/bin/env python3
"""Per-Job render time of the Python peer: the real dagster-k8s launcher and the
real celery-k8s step task, on the case files Runway's bench uses.

The set-up a deployment does once (launcher loaded from the instance ref, run
record stored, Celery task registered) is done once per case; each timed
iteration is one whole `launch_run` / task call up to the captured
`create_namespaced_job` body, exactly what the parity tests compare.

Usage: render_bench.py [--iterations N] CASE_NAME...   (one JSON line per case)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "parity"))

import dagster_harness as h  # noqa: E402
import dagster_render  # noqa: E402


def bench(case_name: str, iterations: int) -> dict:
    with open(os.path.join(ROOT, "tests", "fixtures", "cases", case_name + ".json")) as f:
        case = json.load(f)
    with h.process_env({}), h.fake_kubernetes():
        once = dagster_render.prepare(case)
        first = once()
        if not first.get("ok"):
            raise SystemExit(f"{case_name}: the Python path did not render: {first}")
        for _ in range(min(20, iterations)):
            once()
        samples = []
        start = time.perf_counter()
        for _ in range(iterations):
            t = time.perf_counter()
            once()
            samples.append((time.perf_counter() - t) * 1e6)
        total = (time.perf_counter() - start) * 1e6
    samples.sort()
    return {
        "case": case_name, "impl": "python", "iterations": iterations,
        "per_job_us": total / iterations, "median_us": statistics.median(samples),
        "p99_us": samples[min(len(samples) - 1, round((len(samples) - 1) * 0.99))],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("cases", nargs="+")
    args = parser.parse_args()
    for name in args.cases:
        print(json.dumps(bench(name, max(1, args.iterations))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
