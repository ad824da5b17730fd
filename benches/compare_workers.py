#!/usr/bin/env python3
"""`make compare`: what a Dagster user sees with stock Celery workers and with Runway workers.

The same real Dagster jobs under `celery_k8s_job_executor` (scripts/compare_jobs.py: a chain
of 8 ops and a fan-out of 20 ops into one) run on a whole local deployment (scripts/
dagster_stack.py: the dev cluster with its process kubelet, `runway serve` with the
RunwayCeleryK8sRunLauncher, PostgreSQL, `dagster-daemon`, the code location), once with a stock
`celery -A dagster_celery_k8s.app worker` (prefork pool) running dagster-celery-k8s's own
`execute_step_k8s_job` task and once with `runway worker`, both at the same concurrency. Only
the worker differs: the launcher, the run worker and its executor are the same on both sides.

Per job it reports the wall time (RUN_START to RUN_SUCCESS), the per-step overheads (step pod
exit -> the next step's Job created; compare_observe.py says how each is taken) and the
workers' memory, and writes target/compare/compare.json, compare.md and timeline.png.

Usage: RUNWAY_BIN=target/debug/runway .venv/bin/python benches/compare_workers.py
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, HERE)

from compare_jobs import CHAIN_LENGTH, FAN_OUT_WIDTH  # noqa: E402
from compare_observe import ClusterWatch, MemorySampler, run_timings  # noqa: E402
from dagster_stack import BACKEND, NAMESPACE, Options, Stack, celery_run_config  # noqa: E402

JOBS = {
    "chain_8": {f"op_{i}": ([f"op_{i - 1}"] if i > 1 else []) for i in range(1, CHAIN_LENGTH + 1)},
    "fan_out_20": {**{f"leaf_{i:02d}": [] for i in range(1, FAN_OUT_WIDTH + 1)},
                   "gather": [f"leaf_{i:02d}" for i in range(1, FAN_OUT_WIDTH + 1)]},
}
SIDES = ("stock", "runway")
LABELS = {"stock": "stock Celery worker", "runway": "Runway worker"}


def start_stock_worker(stack: Stack, queue: str, concurrency: int) -> int:
    """dagster-celery-k8s's Celery app, as `dagster-celery worker start` runs it: its config
    module (broker and result backend) on PYTHONPATH, the prefork pool. Returns its pid."""
    conf = os.path.join(stack.work, "celery_conf")
    os.makedirs(conf, exist_ok=True)
    with open(os.path.join(conf, "dagster_celery_config.py"), "w") as f:
        f.write(f"broker_url = {stack.broker!r}\nresult_backend = {BACKEND!r}\n")
    celery = os.path.join(os.path.dirname(sys.executable), "celery")
    env, stack.env = stack.env, dict(stack.env, PYTHONPATH=conf)
    try:
        proc = stack.start("celery-worker", [
            celery, "-A", "dagster_celery_k8s.app", "worker", "-Q", queue, "--pool", "prefork",
            "--concurrency", str(concurrency), "--loglevel", "INFO", "-n", f"stock@{queue}",
            "--without-gossip", "--without-mingle", "--without-heartbeat"])
    finally:
        stack.env = env
    deadline = time.time() + 120
    while " ready." not in proc.tail(100_000):
        if proc.popen.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the Celery worker did not start:\n{proc.tail()}")
        time.sleep(0.3)
    return proc.popen.pid


def run_side(side: str, args) -> dict:
    queue = f"compare-{side}-{os.getpid()}"
    options = Options(
        launcher="runway-celery-k8s", max_resume_run_attempts=0, own_vhost=True,
        job_file=os.path.join(ROOT, "scripts", "compare_jobs.py"),
        workers=(queue,) if side == "runway" else (),
        worker_args=("--concurrency", str(args.concurrency)))
    out = {"side": side, "runs": {}}
    with Stack(options) as stack:
        if side == "runway":
            worker_pid = next(p.popen.pid for p in stack.procs
                              if p.name == f"runway-worker-{queue}")
        else:
            worker_pid = start_stock_worker(stack, queue, args.concurrency)
        config = celery_run_config(stack, queue)
        api = stack.kube()
        with ClusterWatch(api, NAMESPACE) as watch, MemorySampler(worker_pid) as mem:
            mem.label = "idle"
            time.sleep(2)
            for job, deps in JOBS.items():
                for i in range(1, args.runs + 1):
                    label = f"{job}#{i}"
                    mem.label = label
                    [run_id] = stack.submit(job, run_config=config)
                    [run] = stack.wait([run_id], timeout=args.timeout)
                    mem.label = "idle"
                    if run.status.value != "SUCCESS":
                        raise RuntimeError(f"{side} {label}: {run.status}\n"
                                           + stack.debug([run_id]))
                    time.sleep(1.5)  # the last pod's exit reaches the watch
                    t = run_timings(stack.instance, run_id, watch, deps, args.concurrency)
                    t["memory"] = mem.summary(label)
                    out["runs"][label] = t
                    print(f"{side:7s} {label:13s} wall {t['wall_s']:6.1f} s, dependency"
                          f" overhead p50 {p50(t['dependency_overhead_s']):.2f} s,"
                          f" RSS peak {t['memory'].get('rss_peak_mib', 0):.0f} MiB", flush=True)
            out["idle_memory"] = mem.summary("idle")
        api.close()
    return out


def p50(d: dict) -> float:
    return statistics.median(d.values()) if d else float("nan")


def machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except OSError:
        pass
    return {"arch": platform.machine(), "cores": os.cpu_count(), "cpu": model,
            "memory_gib": round(mem_kb / 1024 ** 2, 1), "python": platform.python_version()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2,
                        help="runs per job and side; the table shows the last, the JSON all")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="steps each side's worker runs at once")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "compare"))
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--report-only", action="store_true",
                        help="redraw compare.md and timeline.png from the out dir's compare.json")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.report_only:
        with open(os.path.join(args.out, "compare.json")) as f:
            return report(json.load(f), args.out)
    import dagster
    import dagster_celery_k8s

    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "concurrency": args.concurrency, "runs_per_job": args.runs,
        "versions": {"dagster": dagster.__version__,
                     "dagster-celery-k8s": dagster_celery_k8s.__version__,
                     "celery": __import__("celery").__version__,
                     "runway": subprocess.run([os.environ.get("RUNWAY_BIN", os.path.join(
                         ROOT, "target", "debug", "runway")), "--version"], capture_output=True,
                         text=True).stdout.strip(),
                     # target/debug or target/release
                     "runway_build": os.path.basename(os.path.dirname(os.environ.get(
                         "RUNWAY_BIN", "debug/runway")))},
        "sides": {}}
    for side in args.sides.split(","):
        result["sides"][side] = run_side(side, args)
        with open(os.path.join(args.out, "compare.json"), "w") as f:
            json.dump(result, f, indent=1)
    return report(result, args.out)


def report(result: dict, out: str) -> int:
    from compare_chart import markdown, timeline

    with open(os.path.join(out, "compare.md"), "w") as f:
        f.write(markdown(result, JOBS, LABELS))
    timeline(result, JOBS, LABELS, os.path.join(out, "timeline.png"))
    print(open(os.path.join(out, "compare.md")).read())
    print(f"wrote {os.path.relpath(out, ROOT)}/compare.json, compare.md, timeline.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
