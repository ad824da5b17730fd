#!/usr/bin/env python3
"""The Python side of `runway bench worker`.

  worker_bench.py setup --kubeconfig KC --namespace NS
      A fresh PostgreSQL database with Dagster's schema, a STARTED run, and the
      kwargs dagster-celery-k8s's executor would send for one of its steps
      (step key "STEP"). Prints one JSON object.
  worker_bench.py peer --setup FILE --broker URL --backend URL --queue Q --steps N
      The Python peer: a real `celery worker` running dagster-celery-k8s's own
      `execute_step_k8s_job` (8 threads) takes N trivial steps on the same dev
      cluster. Prints steps/s and the time from each step Job's completion to
      its stored result.
  worker_bench.py drop --setup FILE
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime


def setup(args) -> int:
    import psycopg2
    from dagster import DagsterInstance
    from dagster._core.code_pointer import FileCodePointer
    from dagster._core.execution.plan.state import KnownExecutionState
    from dagster._core.execution.retries import RetryMode
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import pack_value
    from dagster_k8s.job import DagsterK8sJobConfig

    db = f"runway_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute(f"CREATE DATABASE {db}")
    home = tempfile.mkdtemp(prefix="runway-bench-dh-")
    with open(os.path.join(home, "dagster.yaml"), "w") as f:
        f.write("storage:\n  postgres:\n    postgres_db:\n      username: postgres\n"
                "      password: ''\n      hostname: 127.0.0.1\n"
                f"      db_name: {db}\n      port: 5432\n      scheme: postgresql+psycopg2\n"
                "telemetry:\n  enabled: false\n")
    instance = DagsterInstance.from_config(home)
    run = create_run_for_test(instance, job_name="bench_job", status=DagsterRunStatus.STARTED)
    origin = JobPythonOrigin("bench_job", RepositoryPythonOrigin(
        executable_path=sys.executable,
        code_pointer=FileCodePointer(python_file="bench.py", fn_name="unused"),
        entry_point=["dagster"]))
    step_args = ExecuteStepArgs(
        job_origin=origin, run_id=run.run_id, step_keys_to_execute=["STEP"],
        instance_ref=instance.get_ref(), retry_mode=RetryMode.DISABLED,
        known_state=KnownExecutionState(), should_verify_step=True,
        print_serialized_events=True)
    job_config = DagsterK8sJobConfig(job_image="runway-bench/step:1",
                                     dagster_home="/opt/dagster/dagster_home",
                                     instance_config_map="dagster-instance")
    kwargs = dict(execute_step_args_packed=pack_value(step_args),
                  job_config_dict=job_config._asdict(), job_namespace=args.namespace,
                  load_incluster_config=False, job_wait_timeout=600.0,
                  per_step_k8s_config={}, user_defined_k8s_config_dict={},
                  kubeconfig_file=args.kubeconfig)
    instance.dispose()
    print(json.dumps({"db": db, "dagster_home": home, "run_id": run.run_id, "kwargs": kwargs}))
    return 0


def drop(args) -> int:
    import psycopg2
    with open(args.setup) as f:
        s = json.load(f)
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute(f"DROP DATABASE IF EXISTS {s['db']} WITH (FORCE)")
    shutil.rmtree(s["dagster_home"], ignore_errors=True)
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (the thread pool keeps the worker in one)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peer(args) -> int:
    from celery.result import AsyncResult
    from dagster_celery.make_app import make_app
    from dagster_celery_k8s.executor import create_k8s_job_task
    from kombu import Connection
    from kubernetes import client, config

    with open(args.setup) as f:
        s = json.load(f)
    conf = tempfile.mkdtemp(prefix="runway-bench-celery-")
    with open(os.path.join(conf, "dagster_celery_config.py"), "w") as f:
        f.write(f"broker_url = {args.broker!r}\nresult_backend = {args.backend!r}\n")
    celery_bin = os.path.join(os.path.dirname(sys.executable), "celery")
    worker = subprocess.Popen(
        [celery_bin, "-A", "dagster_celery_k8s.app", "worker", "-Q", args.queue, "--pool",
         "threads", "-c", "8", "--loglevel", "WARNING", "-n", f"bench-{args.queue}@%h",
         "--without-gossip", "--without-mingle"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=conf))
    app = make_app({"broker": args.broker, "backend": args.backend, "include": [],
                    "config_source": None, "retries": None})
    task = create_k8s_job_task(app)
    api = config.new_client_from_config(config_file=s["kwargs"]["kubeconfig_file"])
    batch = client.BatchV1Api(api)
    try:
        time.sleep(3)  # the worker's start, outside the timing
        results = {}
        cpu = cpu_seconds(worker.pid)
        started = time.time()
        for i in range(args.steps):
            kw = copy.deepcopy(s["kwargs"])
            kw["execute_step_args_packed"]["step_keys_to_execute"] = [f"py{i:04d}"]
            r = task.si(**kw).apply_async(priority=5, queue=args.queue,
                                          routing_key=f"{args.queue}.execute_step_k8s_job")
            results[r.id] = f"py{i:04d}"
        metas = {}
        for tid in results:
            AsyncResult(tid, app=app).get(timeout=600)
            metas[tid] = app.backend.get_task_meta(tid)
        took = time.time() - started
        cpu = cpu_seconds(worker.pid) - cpu
        jobs = {j.metadata.labels.get("dagster/op"): j for j in batch.list_namespaced_job(
            s["kwargs"]["job_namespace"], label_selector=f"dagster/run-id={s['run_id']}").items}
        lat = []
        for tid, step in results.items():
            done = jobs[step].status.completion_time
            stored = metas[tid]["date_done"]
            if isinstance(stored, str):
                stored = datetime.fromisoformat(stored)
            lat.append((stored - done).total_seconds())
        lat.sort()
        print(json.dumps({
            "bench": "worker", "impl": "python celery (dagster-celery-k8s task, 8 threads)",
            "steps": args.steps, "steps_per_s": args.steps / took,
            "completion_to_result_p50_s": lat[len(lat) // 2],
            "completion_to_result_p99_s": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            # The Celery worker process's CPU over the timed steps (its start excluded).
            "own_cpu_us_per_op": cpu * 1e6 / args.steps,
            "note": "Job completionTime has one-second resolution"}))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        api.close()
        shutil.rmtree(conf, ignore_errors=True)
        with Connection(args.broker) as c:
            c.default_channel.queue_delete(args.queue)
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("setup")
    a.add_argument("--kubeconfig", required=True)
    a.add_argument("--namespace", required=True)
    b = sub.add_parser("peer")
    b.add_argument("--setup", required=True)
    b.add_argument("--broker", required=True)
    b.add_argument("--backend", required=True)
    b.add_argument("--queue", required=True)
    b.add_argument("--steps", type=int, default=16)
    c = sub.add_parser("drop")
    c.add_argument("--setup", required=True)
    args = p.parse_args()
    return {"setup": setup, "peer": peer, "drop": drop}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
