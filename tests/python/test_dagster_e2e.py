"""Real Dagster runs end to end through Runway.

Everything is the real program: PostgreSQL storage, the QueuedRunCoordinator, `dagster-daemon`
with run monitoring, a code location served by `dagster api grpc` (scripts/example_jobs.py),
`runway serve`, `runway worker`, and the dev cluster whose process kubelet runs the run and step
pods' `dagster api execute_run / resume_run / execute_step`. The runs are submitted as the
webserver does and taken by the daemon (scripts/dagster_stack.py). What the tests read back
from the stack (events, Jobs and pods, the stock launcher's Job): e2e_runs.py.
"""
from __future__ import annotations

import difflib
import json
import os
import signal
import statistics
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from dagster_stack import NAMESPACE, Options, Stack, celery_run_config  # noqa: E402
from e2e_runs import (batch, comparable, events, run_objects, run_worker_pid,  # noqa: E402
                      step_events, stock_job, wait_until, without_defaults)
from example_jobs import held_release_path, held_started_path  # noqa: E402

# Three nodes of 2 CPUs: the queueing test's run pods ask for one CPU each, so six
# run at a time and the rest wait Pending, as on a small real cluster.
NODE_CPU_MILLIS = 2000
# `make queue-latency` queues the 200; the test command queues 40, because on the
# 2-CPU CI machine 200 process-kubelet run workers take about 15 minutes to run.
QUEUED_RUNS = int(os.environ.get("RUNWAY_E2E_QUEUED_RUNS", "40"))
CELERY_QUEUE = "runway-e2e"


@pytest.fixture(scope="module")
def k8s():
    options = Options(
        launcher="runway-k8s",
        workers=(CELERY_QUEUE,),
        node_cpu_millis=NODE_CPU_MILLIS,
        # Long enough that a run held Pending by the queueing test is not failed for it:
        # a fast failure here must come from Runway, not from these timeouts.
        start_timeout_seconds=3600,
        serve_args=("--unschedulable-grace-secs=3600",),
    )
    with Stack(options) as stack:
        yield stack


@pytest.fixture(scope="module")
def celery(k8s):
    """A second Dagster instance on the same cluster and service, with the
    RunwayCeleryK8sRunLauncher; its steps go to k8s's `runway worker -Q runway-e2e`."""
    # CeleryK8sRunLauncher cannot resume runs, and Dagster refuses resume attempts for it.
    options = Options(launcher="runway-celery-k8s", max_resume_run_attempts=0)
    with Stack(options, cluster=k8s) as stack:
        yield stack


# === RunwayK8sRunLauncher ======================================================================


def test_a_multi_op_job_succeeds_and_its_job_is_the_stock_one(k8s):
    [run_id] = k8s.submit("fan_in")
    [run] = k8s.wait([run_id], timeout=240)
    assert run.status.value == "SUCCESS", k8s.debug([run_id])
    steps = step_events(k8s, run_id)
    assert set(steps) == {"source", "double", "square", "total"}, steps
    for op, types in steps.items():
        assert types.count("STEP_SUCCESS") == 1 and "STEP_FAILURE" not in types, (op, types)
    messages = [r.user_message for r in k8s.instance.all_logs(run_id)]
    assert "total is 15" in messages

    # The run ends in the event log a moment before its process exits.
    job = wait_until(lambda: (j := batch(k8s).read_namespaced_job(
        f"dagster-run-{run_id}", NAMESPACE)).status.succeeded == 1 and j,
        "the run worker Job did not complete", 60)
    actual = comparable(k8s.kube().sanitize_for_serialization(job))
    labels = actual["metadata"]["labels"]
    assert labels.pop("app.kubernetes.io/managed-by") == "runway"
    assert actual["spec"]["template"]["metadata"]["labels"].pop(
        "app.kubernetes.io/managed-by") == "runway"
    expected = comparable(stock_job(k8s, run))
    # The stock launcher names the namespace in the create call, not in the body.
    expected["metadata"]["namespace"] = NAMESPACE
    actual = without_defaults(actual, expected)
    assert actual == expected, "\n".join(difflib.unified_diff(
        json.dumps(expected, indent=1, sort_keys=True).splitlines(),
        json.dumps(actual, indent=1, sort_keys=True).splitlines(), "stock", "runway",
        lineterm=""))
    assert run.tags["dagster/image"] == expected["spec"]["template"]["spec"]["containers"][0][
        "image"]


def test_a_failing_op_fails_the_run_with_the_step_error(k8s):
    from dagster._core.events import DagsterEventType

    [run_id] = k8s.submit("fails")
    [run] = k8s.wait([run_id], timeout=180)
    assert run.status.value == "FAILURE", k8s.debug([run_id])
    steps = step_events(k8s, run_id)
    assert steps["explode"].count("STEP_FAILURE") == 1, steps
    assert "after" not in steps or "STEP_START" not in steps["after"], steps
    [failure] = k8s.instance.get_records_for_run(
        run_id, of_type=DagsterEventType.STEP_FAILURE).records
    error = failure.event_log_entry.dagster_event.event_specific_data.error
    assert "explode was given 3 and refuses it" in error.to_string()
    # The run worker exits 0 after a failed run (fail_pod_on_run_failure is off): its
    # Job completes and nothing is left running.
    wait_until(lambda: batch(k8s).read_namespaced_job(
        f"dagster-run-{run_id}", NAMESPACE).status.succeeded == 1,
        "the run worker Job did not complete", 60)


def test_an_image_that_cannot_be_pulled_fails_the_run_within_seconds(k8s):
    from dagster._core.events import DagsterEventType

    tags = {"dagster-k8s/config": json.dumps(
        {"container_config": {"image": "registry.invalid/missing:1"}})}
    started = time.time()
    [run_id] = k8s.submit("tiny", tags=tags)
    [run] = k8s.wait([run_id], timeout=60)
    took = time.time() - started
    assert run.status.value == "FAILURE", k8s.debug([run_id])
    # Not the start timeout (an hour here, 180 s by default): the watch saw the pod.
    assert took < 30, took
    [failure] = k8s.instance.get_records_for_run(
        run_id, of_type=DagsterEventType.RUN_FAILURE).records
    message = failure.event_log_entry.dagster_event.message
    assert f"dagster-run-{run_id}" in message, message
    assert "ErrImagePull" in message or "ImagePullBackOff" in message, message
    assert "registry.invalid/missing:1" in message, message


def test_terminate_cancels_the_run_and_leaves_nothing_behind(k8s):
    [run_id] = k8s.submit("held")
    wait_until(lambda: os.path.exists(held_started_path(run_id)), "the op never started", 120,
               lambda: k8s.debug([run_id]))
    assert k8s.instance.run_launcher.terminate(run_id) is True
    [run] = k8s.wait([run_id], timeout=120)
    assert run.status.value == "CANCELED", k8s.debug([run_id])
    messages = [r.dagster_event.message for r in events(k8s, run_id)]
    assert "[K8sRunLauncher] Run was terminated successfully." in messages, messages
    wait_until(lambda: not run_objects(k8s, run_id), "Jobs or pods are left", 60,
               lambda: str(run_objects(k8s, run_id)))


def test_a_killed_run_worker_is_resumed_by_run_monitoring(k8s):
    [run_id] = k8s.submit("held")
    wait_until(lambda: os.path.exists(held_started_path(run_id)), "the op never started", 120,
               lambda: k8s.debug([run_id]))
    os.unlink(held_started_path(run_id))
    os.kill(run_worker_pid(run_id), signal.SIGKILL)

    resumed = "Launching a new run worker to resume run"
    wait_until(lambda: resumed in [r.dagster_event.message for r in events(k8s, run_id)],
               "run monitoring did not resume the run", 120, lambda: k8s.debug([run_id]))
    # Dagster reports the resume before it calls the launcher (`resume_run`), so the
    # resumed run's Job can follow the event by a moment.
    resumed_job = f"dagster-run-{run_id}-1"
    wait_until(lambda: f"job/{resumed_job}" in run_objects(k8s, run_id),
               "the resumed run's Job was not created", 60, lambda: k8s.debug([run_id]))
    job = batch(k8s).read_namespaced_job(resumed_job, NAMESPACE)
    args = job.spec.template.spec.containers[0].args
    assert args[:3] == [sys.executable, "-m", "dagster"] and args[3:5] == ["api", "resume_run"]
    assert job.metadata.labels["app.kubernetes.io/managed-by"] == "runway"
    # The resumed worker runs the op again; this time it may finish.
    wait_until(lambda: os.path.exists(held_started_path(run_id)), "the op did not run again",
               120, lambda: k8s.debug([run_id]))
    open(held_release_path(run_id), "w").close()
    [run] = k8s.wait([run_id], timeout=120)
    assert run.status.value == "SUCCESS", k8s.debug([run_id])
    first = batch(k8s).read_namespaced_job(f"dagster-run-{run_id}", NAMESPACE)
    assert first.status.failed == 1


# === RunwayCeleryK8sRunLauncher with Runway workers ===========================================


def test_the_job_under_celery_k8s_runs_its_steps_on_runway_workers(celery):
    [run_id] = celery.submit("fan_in_celery", run_config=celery_run_config(celery, CELERY_QUEUE))
    [run] = celery.wait([run_id], timeout=300)
    assert run.status.value == "SUCCESS", celery.debug([run_id])
    steps = step_events(celery, run_id)
    assert set(steps) == {"source", "double", "square", "total"}, steps
    jobs = batch(celery).list_namespaced_job(
        NAMESPACE, label_selector=f"dagster/run-id={run_id},"
                                  "app.kubernetes.io/component=step_worker").items
    assert sorted(j.metadata.labels["dagster/op"] for j in jobs) == sorted(steps)
    for j in jobs:
        assert j.metadata.labels["app.kubernetes.io/managed-by"] == "runway"
        assert j.status.succeeded == 1
    picked = [r.dagster_event for r in events(celery, run_id)
              if "picked up by Celery" in (r.dagster_event.message or "")]
    assert {e.event_specific_data.metadata["Celery worker name"].value for e in picked} == {
        f"runway@{CELERY_QUEUE}"}


def test_terminate_under_celery_k8s_deletes_the_step_jobs_too(celery):
    [run_id] = celery.submit("held_celery", run_config=celery_run_config(celery, CELERY_QUEUE))
    wait_until(lambda: os.path.exists(held_started_path(run_id)), "the step never started", 180,
               lambda: celery.debug([run_id]))
    assert any(o.startswith("job/dagster-step-") for o in run_objects(celery, run_id))
    assert celery.instance.run_launcher.terminate(run_id) is True
    [run] = celery.wait([run_id], timeout=120)
    assert run.status.value == "CANCELED", celery.debug([run_id])
    wait_until(lambda: not run_objects(celery, run_id), "Jobs or pods are left", 60,
               lambda: str(run_objects(celery, run_id)))


# === Many queued runs, against the stock launcher ==============================================


def launch_latencies(stack, run_ids) -> list[float]:
    """Per run, STARTING to the launcher's "Kubernetes run worker job created" (compat
    errata 11: 1.13 writes no DEQUEUED event; the daemon writes STARTING, then launches)."""
    out = []
    for run_id in run_ids:
        starting = created = None
        for r in events(stack, run_id):
            ev = r.dagster_event
            if ev.event_type_value == "PIPELINE_STARTING":
                starting = r.timestamp
            elif (ev.message or "").endswith("Kubernetes run worker job created"):
                created = r.timestamp
        assert starting is not None and created is not None, stack.debug([run_id])
        out.append(created - starting)
    return out


def all_launched(stack, run_ids) -> bool:
    """No run left QUEUED and every run's Job created: one query and one list, so that
    polling does not take the CPU the daemon is measured on."""
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

    if stack.instance.get_runs_count(RunsFilter(run_ids=run_ids,
                                                statuses=[DagsterRunStatus.QUEUED])):
        return False
    names = {j.metadata.name for j in batch(stack).list_namespaced_job(
        NAMESPACE, label_selector="app.kubernetes.io/component=run_worker").items}
    return all(f"dagster-run-{r}" in names for r in run_ids)


def quantile(values, q) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def queue_and_measure(stack, tags) -> tuple[list[str], list[float], float]:
    started = time.time()
    run_ids = stack.submit("tiny", count=QUEUED_RUNS, tags=tags)
    deadline = time.time() + 600
    while not all_launched(stack, run_ids):
        assert time.time() < deadline, "not every run's Job was created\n" + stack.debug(run_ids)
        time.sleep(1.0)
    wall = time.time() - started
    # The "created" event follows the create call; give the last one its moment.
    time.sleep(1.0)
    return run_ids, launch_latencies(stack, run_ids), wall


def test_queued_runs_all_succeed_and_their_launch_latency_is_compared_with_stock(k8s):
    tags = {"dagster-k8s/config": json.dumps({"container_config": {
        "resources": {"requests": {"cpu": "1"}}}})}
    # Both launchers are measured with the kubelet paused, so neither pays for running pods
    # while it launches; the stock runs are then dropped and the Runway runs run.
    k8s.faults(pauseKubelet=True)
    try:
        with Stack(Options(launcher="stock-k8s", start_timeout_seconds=3600,
                           poll_interval_seconds=k8s.o.poll_interval_seconds),
                   cluster=k8s) as stock:
            stock_ids, stock_lat, stock_wall = queue_and_measure(stock, tags)
            for run_id in stock_ids:
                batch(k8s).delete_namespaced_job(f"dagster-run-{run_id}", NAMESPACE,
                                                 propagation_policy="Background")
        runway_ids, runway_lat, runway_wall = queue_and_measure(k8s, tags)
    finally:
        k8s.faults(pauseKubelet=False)
    runs = k8s.wait(runway_ids, timeout=30 * QUEUED_RUNS)
    assert [r.status.value for r in runs] == ["SUCCESS"] * QUEUED_RUNS, k8s.debug(
        [r.run_id for r in runs if r.status.value != "SUCCESS"])
    jobs = batch(k8s).list_namespaced_job(
        NAMESPACE, label_selector="app.kubernetes.io/component=run_worker").items
    names = {j.metadata.name for j in jobs}
    assert all(f"dagster-run-{r}" in names for r in runway_ids)

    report = {
        "runs": QUEUED_RUNS,
        "runway": {"p50_ms": quantile(runway_lat, 0.5) * 1e3,
                   "p99_ms": quantile(runway_lat, 0.99) * 1e3,
                   "submit_to_last_created_s": runway_wall},
        "stock": {"p50_ms": quantile(stock_lat, 0.5) * 1e3,
                  "p99_ms": quantile(stock_lat, 0.99) * 1e3,
                  "submit_to_last_created_s": stock_wall},
    }
    report["ratio_p50"] = report["stock"]["p50_ms"] / report["runway"]["p50_ms"]
    report["ratio_p99"] = report["stock"]["p99_ms"] / report["runway"]["p99_ms"]
    os.makedirs(os.path.join(ROOT, "target"), exist_ok=True)
    with open(os.path.join(ROOT, "target", "e2e-queue-latency.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"\ndequeue (STARTING) to Job created, {QUEUED_RUNS} queued runs:",
          json.dumps(report, indent=2))