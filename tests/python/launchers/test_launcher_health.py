"""Resume, health and debug info through `runway serve`, side by side with the stock
K8sRunLauncher; and the run watcher that fails a STARTING run whose pod cannot start."""
from __future__ import annotations

import json
import time
import uuid

import dagster
from dagster._core.events import DagsterEventType
from dagster._core.launcher.base import WorkerStatus
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._serdes import deserialize_value

from dagster_runway._proto import launcher_pb2 as pb
from dagster_runs import event_log, launch, make_run, mark
from launcher_cluster import (
    NS,
    WAIT,
    annotated,
    comparable_job,
    job_done,
    job_pods,
    read_job,
    record_calls,
    wait_for,
    without_managed_by,
)


def test_resume_launches_the_next_attempt_and_health_follows_it(stock, runway, kube):
    results = {}
    calls = record_calls(runway.run_launcher)
    for name, instance in (("stock", stock), ("runway", runway)):
        run = launch(instance)
        run = mark(instance, run, DagsterEventType.RUN_START)
        instance.resume_run(run.run_id, workspace=None, attempt_number=1)
        assert instance.count_resume_run_attempts(run.run_id) == 1
        job = read_job(kube, f"dagster-run-{run.run_id}-1")
        assert job is not None, f"{name}: no Job for the first resume attempt"
        results[name] = (run, *comparable_job(job, run.run_id))

    (s, s_job, s_args), (r, r_job, r_args) = results["stock"], results["runway"]
    assert without_managed_by(r_job) == s_job
    [(method, request)] = [c for c in calls if c[0] == "ResumeRun"]
    assert (request.run.resume_attempt, request.dagster_version) == (1, dagster.__version__)
    assert r_args[:3] == s_args[:3] == ["dagster", "api", "resume_run"]
    assert deserialize_value(r_args[3]).job_origin == deserialize_value(s_args[3]).job_origin
    assert event_log(runway, r.run_id) == event_log(stock, s.run_id)
    assert event_log(runway, r.run_id)[-3:] == [
        ["ENGINE_EVENT", "Launching a new run worker to resume run", {}],
        ["ENGINE_EVENT", "[K8sRunLauncher] Creating Kubernetes run worker job",
         {"Kubernetes Job name": "dagster-run-<run-id>-1", "Kubernetes Namespace": NS,
          "Run ID": "<run-id>"}],
        ["ENGINE_EVENT", "[K8sRunLauncher] Kubernetes run worker job created", {}],
    ]

    # Health and debug info now concern attempt 1's Job.
    run_worker = runway.run_launcher.check_run_worker_health(runway.get_run_by_id(r.run_id))
    assert run_worker.run_worker_id == f"dagster-run-{r.run_id}-1"


# === health and debug info ==================================================================


def health_pair(stock, runway, kube, tags, statuses):
    """Launches the same run under both, waits for both Jobs to finish, and returns
    [(stock answer, runway answer)] for each run status in turn."""
    s, r = launch(stock, tags=tags), launch(runway, tags=tags)
    for run in (s, r):
        wait_for(lambda: job_done(kube, f"dagster-run-{run.run_id}"), "the Job to finish")
    answers = []
    for status in statuses:
        if status is not None:
            s, r = mark(stock, s, status), mark(runway, r, status)
        want = stock.run_launcher.check_run_worker_health(s)
        # The service's index learns of the Job's end from its watch a moment later.
        got = wait_for(
            lambda: (lambda h: h if h.status == want.status else None)(
                runway.run_launcher.check_run_worker_health(r)),
            f"runway to answer {want}", timeout=10)
        answers.append((str(want), str(got)))
    return s, r, answers


def test_health_answers_as_dagster_k8s_in_compat_mode(stock, runway, kube):
    _, _, answers = health_pair(stock, runway, kube, {}, [None, DagsterEventType.RUN_START])
    assert answers == [
        ("SUCCESS: 'None'", "SUCCESS: 'None'"),
        ("FAILED: 'Run has not completed but K8s job has no active pods'",) * 2,
    ]
    _, _, answers = health_pair(stock, runway, kube, annotated(**{"runway.dev/exit-code": "1"}), [None])
    assert answers == [("FAILED: 'K8s job failed'",) * 2]

    # A run whose Job does not exist.
    for instance in (stock, runway):
        missing = make_run(instance)
        answer = instance.run_launcher.check_run_worker_health(missing)
        assert str(answer) == f"UNKNOWN: 'Job dagster-run-{missing.run_id} could not be found'"


def test_health_diagnoses_pod_failures_the_stock_launcher_cannot_see(stock, diagnosing, kube):
    tags = {"dagster-k8s/config": json.dumps({"container_config": {"image": "registry.invalid/none:1"}})}
    s, r = launch(stock, tags=tags), launch(diagnosing, tags=tags)
    answer = wait_for(
        lambda: (lambda h: h if h.status == WorkerStatus.FAILED else None)(
            diagnosing.run_launcher.check_run_worker_health(r)),
        "the image pull failure to be diagnosed")
    assert "registry.invalid/none:1" in answer.msg and "Pull" in answer.msg, answer.msg
    assert answer.run_worker_id == f"dagster-run-{r.run_id}"
    # dagster-k8s looks at Job counters only: the pod that cannot start is RUNNING to it.
    assert stock.run_launcher.check_run_worker_health(s).status == WorkerStatus.RUNNING

    missing = make_run(diagnosing)
    answer = diagnosing.run_launcher.check_run_worker_health(missing)
    assert (answer.status, answer.msg) == (
        WorkerStatus.NOT_FOUND, f"Job dagster-run-{missing.run_id} could not be found")


def test_a_starting_run_whose_image_cannot_be_pulled_fails_within_seconds(runway):
    started = time.monotonic()
    run = launch(runway, image="registry.invalid/missing:1")
    # The launch itself succeeds; the watcher may fail the run before this line reads it.
    assert run.status in (DagsterRunStatus.STARTING, DagsterRunStatus.FAILURE)
    run = wait_for(lambda: (r := runway.get_run_by_id(run.run_id)).is_finished and r,
                   "the run to fail")
    assert run.status == DagsterRunStatus.FAILURE
    assert time.monotonic() - started < WAIT
    [failure] = runway.get_records_for_run(
        run.run_id, of_type=DagsterEventType.RUN_FAILURE).records
    message = failure.event_log_entry.dagster_event.message
    assert message.startswith(f"Run worker Job dagster-run-{run.run_id} in namespace {NS}"
                              " cannot start (ErrImagePull"), message
    assert "registry.invalid/missing:1" in message, message


def test_the_run_watcher_leaves_started_and_foreign_runs_alone(runway):
    watcher = runway.run_launcher._runway_watcher
    run = mark(runway, launch(runway), DagsterEventType.RUN_START)
    failed = dict(job_name=f"dagster-run-{run.run_id}", namespace=NS,
                  status=pb.WORKER_STATUS_FAILED, reason="ErrImagePull", message="x")
    # STARTED belongs to the monitoring daemon, which may resume it.
    assert watcher.handle(pb.RunTransition(run_id=run.run_id, **failed)) is False
    # Another deployment's run, a step Job, and an older attempt's Job.
    assert watcher.handle(pb.RunTransition(run_id=str(uuid.uuid4()), **failed)) is False
    starting = launch(runway)
    step = dict(failed, step_key="op")
    assert watcher.handle(pb.RunTransition(run_id=starting.run_id, **step)) is False
    old = dict(failed, job_name=f"dagster-run-{starting.run_id}-7")
    assert watcher.handle(pb.RunTransition(run_id=starting.run_id, **old)) is False
    assert runway.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
    assert runway.get_run_by_id(starting.run_id).status == DagsterRunStatus.STARTING


def test_debug_info_is_dagster_k8s_text(stock, runway, kube):
    tags = annotated(**{"runway.dev/exit-code": "3", "runway.dev/log": "boom"})
    s, r, _ = health_pair(stock, runway, kube, tags, [None])
    texts = []
    for instance, run in ((stock, s), (runway, r)):
        pods = job_pods(kube, f"dagster-run-{run.run_id}")
        assert len(pods) == 1
        text = instance.run_launcher.get_run_worker_debug_info(run, include_container_logs=False)
        texts.append(text.replace(pods[0], "<pod>").replace(run.run_id, "<run-id>"))
    assert texts[1] == texts[0]
    assert "Debug information for pod <pod>:" in texts[1]
    assert "Terminated with exit code 3" in texts[1]
    assert "kubectl describe job dagster-run-<run-id>" in texts[1]

    with_logs = runway.run_launcher.get_run_worker_debug_info(r)
    assert "Last 25 log lines for container 'dagster':" in with_logs and "boom" in with_logs
    assert runway.run_launcher.get_run_worker_debug_info(make_run(runway)) is None


