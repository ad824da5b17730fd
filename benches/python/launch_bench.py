#!/usr/bin/env python3
"""Launch time of the Python peer: the real dagster-k8s `K8sRunLauncher.launch_run`
creating real Jobs on a Kubernetes API server (the dev cluster `runway bench
launch` started), one launch after another as the daemon's run queue does.

The launcher is loaded once from an instance ref (as a daemon loads it); each
timed launch is one whole `launch_run` for a new run id: container context
resolution, Job construction, `create_namespaced_job_with_retries` over HTTP,
the `dagster/image` tag and the engine events.

Usage: launch_bench.py --kubeconfig PATH --case CASE_JSON [--count N] [--threads T]
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "parity"))

import dagster_harness as h  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--case", required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from dagster._core.launcher import LaunchRunContext
    from dagster._core.storage.dagster_run import DagsterRunStatus

    with open(args.case) as f:
        case = json.load(f)
    config = dict(case["launcher"])
    config["load_incluster_config"] = False
    config["kubeconfig_file"] = args.kubeconfig
    ref = h.instance_ref_for(case["launcher_class"], config)
    launcher = ref.run_launcher
    instance = h.InstanceStandIn(ref)
    launcher.register_instance(instance)
    storage = h.run_storage()

    def one() -> float:
        run = dict(case["run"])
        run["run_id"] = str(uuid.uuid4())
        dagster_run = h.dagster_run_for(run, status=DagsterRunStatus.STARTING)
        storage.add_run(dagster_run)  # the run exists before the daemon launches it
        t = time.perf_counter()
        launcher.launch_run(LaunchRunContext(dagster_run=dagster_run, workspace=None))
        return (time.perf_counter() - t) * 1e6

    with h.process_env({}):
        for _ in range(5):
            one()
        start, cpu = time.perf_counter(), time.process_time()
        if args.threads <= 1:
            samples = [one() for _ in range(args.count)]
        else:
            with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
                samples = list(pool.map(lambda _: one(), range(args.count)))
        total = time.perf_counter() - start
        cpu = time.process_time() - cpu
    samples.sort()

    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, round((len(samples) - 1) * p))]

    print(json.dumps({
        "impl": "python", "what": "K8sRunLauncher.launch_run", "launches": args.count,
        "threads": args.threads, "launches_per_s": args.count / total,
        "p50_ms": pct(0.5) / 1000, "p99_ms": pct(0.99) / 1000,
        # This process's CPU over the timed launches only (imports excluded).
        "own_cpu_us_per_op": cpu * 1e6 / args.count,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
