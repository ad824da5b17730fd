"""The Runway demo: a Dagster deployment whose runs go through Runway, on this machine.

Starts the dev cluster (its kubelet runs pods as local processes), `runway serve`, a
`runway worker`, and a Dagster instance on PostgreSQL with the daemon, the webserver and a
code location (scripts/example_jobs.py). The instance's run launcher is
`dagster_runway.RunwayCeleryK8sRunLauncher`: the seed deployment's CeleryK8sRunLauncher,
switched to Runway. It submits `fan_in_celery` as the webserver's Launch button does,
follows it live, and prints its result, its Jobs and where to look.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dagster_stack import NAMESPACE, ROOT, Options, Stack, celery_run_config  # noqa: E402

QUEUE = "runway-demo"
JOB = "fan_in_celery"


def say(text: str = "") -> None:
    print(text, flush=True)


def metric_lines(url: str, prefixes: tuple[str, ...]) -> list[str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    except OSError as e:
        return [f"(metrics unavailable: {e})"]
    return [line for line in text.splitlines()
            if line.startswith(prefixes) and "_bucket" not in line and not line.endswith(" 0")]


def follow(stack: Stack, run_id: str, timeout: float) -> None:
    """Prints the run's events as they are written, and each Job as it appears."""
    from kubernetes import client

    batch = client.BatchV1Api(stack.kube())
    seen_events, seen_jobs = 0, set()
    started = time.time()
    while True:
        records = stack.instance.all_logs(run_id)
        for r in records[seen_events:]:
            ev = r.dagster_event if r.is_dagster_event else None
            kind = ev.event_type_value if ev else "LOG"
            if kind in ("STEP_INPUT", "STEP_OUTPUT", "HANDLED_OUTPUT", "LOADED_INPUT",
                        "ASSET_STORE_OPERATION"):
                continue
            msg = (ev.message if ev and ev.message else r.user_message) or ""
            first = msg.splitlines()[0][:110] if msg.strip() else ""
            step = f" [{r.step_key}]" if r.step_key else ""
            say(f"  {time.time() - started:6.1f}s  {kind:<18}{step} {first}")
        seen_events = len(records)
        for job in batch.list_namespaced_job(
                NAMESPACE, label_selector=f"dagster/run-id={run_id}").items:
            if job.metadata.name not in seen_jobs:
                seen_jobs.add(job.metadata.name)
                component = job.metadata.labels.get("app.kubernetes.io/component", "")
                say(f"  {time.time() - started:6.1f}s  + Job {job.metadata.name} ({component})")
        run = stack.instance.get_run_by_id(run_id)
        if run.is_finished:
            return
        if time.time() - started > timeout:
            raise SystemExit(f"the run did not finish in {timeout:g}s:\n{stack.debug([run_id])}")
        time.sleep(0.3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true",
                        help="leave everything running at the end (Ctrl-C stops it)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="how long the run may take (seconds)")
    args = parser.parse_args()

    work = os.path.join(ROOT, "target", "demo")
    shutil.rmtree(work, ignore_errors=True)
    options = Options(launcher="runway-celery-k8s", workers=(QUEUE,), webserver=True, flower=True,
                      # CeleryK8sRunLauncher cannot resume runs (Dagster refuses attempts).
                      max_resume_run_attempts=0, database="runway_demo", work_dir=work)
    say("== Starting: dev cluster, runway serve, runway worker, Dagster (code location,"
        " daemon, webserver), Flower")
    started = time.time()
    with Stack(options) as stack:
        say(f"   up in {time.time() - started:.1f}s; logs in target/demo/*.log")
        say()
        say("== The run launcher in dagster.yaml (the stock keys, plus runway_endpoint)")
        with open(os.path.join(stack.home, "dagster.yaml")) as f:
            text = f.read()
        say("   " + text[text.index("run_launcher:"):text.index("run_monitoring:")]
            .rstrip().replace("\n", "\n   "))
        say()
        say(f"== Submitting {JOB} (celery_k8s_job_executor, queue {QUEUE}) to the queue")
        [run_id] = stack.submit(JOB, run_config=celery_run_config(stack, QUEUE))
        say(f"   run {run_id}: {stack.webserver_url}/runs/{run_id}")
        follow(stack, run_id, args.timeout)

        run = stack.instance.get_run_by_id(run_id)
        stats = stack.instance.get_run_stats(run_id)
        say()
        say(f"== Result: {run.status.value} in "
            f"{(stats.end_time or time.time()) - (stats.launch_time or started):.1f}s"
            f" from launch ({stats.steps_succeeded} steps succeeded,"
            f" {stats.steps_failed} failed)")
        totals = [r.user_message for r in stack.instance.all_logs(run_id)
                  if (r.user_message or "").startswith("total is")]
        if totals:
            say(f"   the last op says: {totals[-1]}")
        from kubernetes import client

        batch = client.BatchV1Api(stack.kube())
        say("   Kubernetes Jobs:")
        for job in sorted(batch.list_namespaced_job(
                NAMESPACE, label_selector=f"dagster/run-id={run_id}").items,
                key=lambda j: j.metadata.creation_timestamp):
            labels = job.metadata.labels
            say(f"     {job.metadata.name:<48} {labels.get('app.kubernetes.io/component'):<12}"
                f" op={labels.get('dagster/op', '-'):<7} succeeded={job.status.succeeded or 0}")
        say()
        say("== Where to look")
        say(f"   Dagster UI:          {stack.webserver_url}/runs/{run_id}")
        say(f"   Runway serve:        {stack.serve_http}/metrics  (gRPC {stack.endpoint})")
        for q, url in stack.worker_http.items():
            say(f"   Runway worker ({q}): {url}/metrics")
        say(f"   Flower:              {stack.flower_url}/worker/runway@{QUEUE}"
            f"  (its tasks: {stack.flower_url}/tasks)")
        say(f"   kubectl:             KUBECONFIG={os.path.relpath(stack.kubeconfig, ROOT)}"
            f" kubectl get jobs,pods -n {NAMESPACE}")
        say("   a few of runway's counters:")
        for line in metric_lines(f"{stack.serve_http}/metrics", ("runway_launch", "runway_jobs"))[:6]:
            say(f"     serve  {line}")
        for url in stack.worker_http.values():
            for line in metric_lines(f"{url}/metrics", ("runway_worker_tasks",))[:6]:
                say(f"     worker {line}")
        ok = run.status.value == "SUCCESS"
        if args.keep:
            say()
            say("== --keep: everything stays up; Ctrl-C stops it all")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                say()
        say("== Stopping what the demo started")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
