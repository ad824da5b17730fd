"""Real Dagster 1.1.9 end to end on Runway workers (issue 17 item 7), run by .venv-1.1.9's
pytest (`make python-test-1.1.9`), so the harness reads the 1.1.9 instance with 1.1.9 itself.

Everything is the real program, from .venv-1.1.9 (scripts/dagster_stack.py): PostgreSQL
storage, the QueuedRunCoordinator, `dagster-daemon` with run monitoring, the code location
scripts/example_jobs.py served by 1.1.9's `dagster api grpc` (its origin names .venv-1.1.9's
Python, so the run and step pods the dev cluster's process kubelet starts run 1.1.9's
`dagster api execute_run / execute_step`), `runway serve`, and `runway worker --dagster-version
1.1.9` as the only Celery worker of the queue. The launcher has the seed's CeleryK8sRunLauncher
keys. Two switches a seed user can make:

- the seed's own: `dagster_runway.RunwayCeleryK8sRunLauncher` + `celery_k8s_job_executor` +
  Runway workers;
- the smallest: the stock 0.17.9 `CeleryK8sRunLauncher`, only its Celery workers replaced.

The Celery result backend is `rpc://`: .venv-1.1.9 has no `redis` package (compat errata 13).
"""
from __future__ import annotations

import os
import sys

import pytest

from e2e119 import (SEED_LAUNCHER, built_for_119, create_seed_objects, jobs, run_objects,
                    step_error, step_events, wait_until)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from dagster_stack import Options, Stack, celery_run_config  # noqa: E402
from example_jobs import held_started_path  # noqa: E402

# 1.1.9 sends every op without a `dagster-celery/queue` tag to "dagster" (its config_source
# task_default_queue does not route), the queue of the seed chart's Celery workers: the stacks
# have a RabbitMQ vhost of their own, so it meets no one else's.
QUEUE = "dagster"
OPS = {"source", "double", "square", "total"}


def options(launcher: str, **kw) -> Options:
    # CeleryK8sRunLauncher cannot resume runs: 1.1.9 refuses resume attempts for it.
    return Options(launcher=launcher, backend="rpc://", max_resume_run_attempts=0,
                   start_timeout_seconds=120, extra_launcher_config=dict(SEED_LAUNCHER), **kw)


@pytest.fixture(scope="module")
def seed():
    """RunwayCeleryK8sRunLauncher; its stack runs the dev cluster, serve and the worker."""
    with Stack(options("runway-celery-k8s", workers=(QUEUE,), own_vhost=True,
                       worker_args=("--dagster-version", "1.1.9"))) as stack:
        create_seed_objects(stack)
        yield stack


@pytest.fixture(scope="module")
def stock(seed):
    """A second 1.1.9 instance, with the stock CeleryK8sRunLauncher, on the same cluster and
    the same `runway worker`."""
    with Stack(options("stock-celery-k8s"), cluster=seed) as stack:
        yield stack


def run(stack, job: str, timeout: float = 240):
    [run_id] = stack.submit(job, run_config=celery_run_config(stack, QUEUE))
    [done] = stack.wait([run_id], timeout=timeout)
    return run_id, done


def assert_steps_on_runway_workers(stack, run_id, ops) -> None:
    """One step Job per op, created by the Runway worker as 1.1.9 builds it, from the seed's
    launcher keys."""
    steps = jobs(stack, run_id, "step_worker")
    assert sorted(j["metadata"]["labels"]["dagster/op"] for j in steps) == sorted(ops)
    for job in steps:
        labels, pod = job["metadata"]["labels"], job["spec"]["template"]["spec"]
        assert labels["app.kubernetes.io/managed-by"] == "runway", labels
        assert built_for_119(job) == [], job["metadata"]["name"]
        assert labels["app.aipaas.io/component"] == "celery-k8s-run-launcher", labels
        assert pod["serviceAccountName"] == SEED_LAUNCHER["service_account_name"]
        assert pod["imagePullSecrets"] == SEED_LAUNCHER["image_pull_secrets"]
        [ctr] = pod["containers"]
        assert ctr["args"][:3] == [stack.o.python, "-m", "dagster"], ctr["args"]
        assert {"configMapRef": {"name": "dagster-pipeline-env"}} in ctr["envFrom"]


def assert_succeeds(stack, run_id, done) -> None:
    assert done.status.value == "SUCCESS", stack.debug([run_id])
    steps = step_events(stack, run_id)
    assert set(steps) == OPS, steps
    for op, types in steps.items():
        assert types.count("STEP_SUCCESS") == 1 and "STEP_FAILURE" not in types, (op, types)
    # total checked its inputs, which crossed the step pods through the fs IO manager.
    assert "total is 15" in [r.user_message for r in stack.instance.all_logs(run_id)]
    assert_steps_on_runway_workers(stack, run_id, OPS)


def assert_fails_with_the_step_error(stack, run_id, done) -> None:
    assert done.status.value == "FAILURE", stack.debug([run_id])
    steps = step_events(stack, run_id)
    assert steps["explode"].count("STEP_FAILURE") == 1, steps
    assert "STEP_START" not in steps.get("after", []), steps
    assert "explode was given 3 and refuses it" in step_error(stack, run_id, "explode")
    assert_steps_on_runway_workers(stack, run_id, {"source", "explode"})


# === the seed's switch: RunwayCeleryK8sRunLauncher + Runway workers ===========================


def test_seed_switch_multi_op_job_succeeds(seed):
    run_id, done = run(seed, "fan_in_celery")
    assert_succeeds(seed, run_id, done)
    # The run worker Job came through runway serve, built as 1.1.9 builds it.
    [worker] = jobs(seed, run_id, "run_worker")
    assert worker["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "runway"
    assert built_for_119(worker) == []


def test_seed_switch_failing_op_fails_the_run_with_the_step_error(seed):
    run_id, done = run(seed, "fails_celery")
    assert_fails_with_the_step_error(seed, run_id, done)


def test_seed_switch_terminate_cancels_and_leaves_no_job_or_pod(seed):
    [run_id] = seed.submit("held_celery", run_config=celery_run_config(seed, QUEUE))
    wait_until(lambda: os.path.exists(held_started_path(run_id)), "the step never started",
               180, lambda: seed.debug([run_id]))
    os.unlink(held_started_path(run_id))
    [step] = jobs(seed, run_id, "step_worker")
    assert step["metadata"]["labels"]["dagster/op"] == "wait_for_release"
    names = (f"dagster-run-{run_id}", step["metadata"]["name"])
    assert len([o for o in run_objects(seed, run_id, names) if o.startswith("pod/")]) == 2
    # 0.17.9 terminates STARTED runs only: the op runs, so the run is STARTED.
    assert seed.instance.run_launcher.terminate(run_id) is True
    [done] = seed.wait([run_id], timeout=120)
    assert done.status.value == "CANCELED", seed.debug([run_id])
    # The step stayed in flight until the signalled run worker revoked it: a step answered
    # before that signal (with [], or a failure once its Job is deleted) would be settled
    # by the run worker, and the run would end FAILURE.
    revoked = 'celery task for running step "wait_for_release" was revoked.'
    messages = [e.user_message for e in seed.instance.all_logs(run_id)]
    assert revoked in messages, seed.debug([run_id])
    wait_until(lambda: not run_objects(seed, run_id, names), "Jobs or pods are left", 60,
               lambda: str(run_objects(seed, run_id, names)))


# === the smallest switch: stock CeleryK8sRunLauncher, Runway workers only =====================


def test_stock_launcher_multi_op_job_succeeds_on_runway_workers(stock):
    run_id, done = run(stock, "fan_in_celery")
    assert_succeeds(stock, run_id, done)
    # The run worker Job is the stock launcher's own.
    [worker] = jobs(stock, run_id, "run_worker")
    assert "app.kubernetes.io/managed-by" not in worker["metadata"]["labels"]
    assert built_for_119(worker) == []


def test_stock_launcher_failing_op_fails_the_run_with_the_step_error(stock):
    run_id, done = run(stock, "fails_celery")
    assert_fails_with_the_step_error(stock, run_id, done)
