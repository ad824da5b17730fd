"""Health, debug info and the run watcher on Dagster 1.1.9, side by side with the stock
K8sRunLauncher 0.17.9: its health answers (a finished Job is judged by its counters alone,
whatever the run status), a CheckRunHealthResult of its two fields, and a run that cannot
start failed through its `report_run_failed`."""
from __future__ import annotations

import time

from dagster._core.events import DagsterEventType
from dagster._core.launcher import RunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.pipeline_run import DagsterRunStatus
from dagster_k8s import K8sRunLauncher

from dagster119 import launch, make_run, mark
from launcher_cluster import NS, WAIT, annotated, job_done, job_pods, wait_for


def finished_pair(stock, runway, kube, tags):
    """The same run launched under both, once both Jobs have finished."""
    s, r = launch(stock, tags=tags), launch(runway, tags=tags)
    for run in (s, r):
        wait_for(lambda: job_done(kube, f"dagster-run-{run.run_id}"), "the Job to finish")
    return s, r


def answers(stock, runway, s, r):
    want = stock.run_launcher.check_run_worker_health(s)
    # The service's index learns of the Job's end from its watch a moment later.
    got = wait_for(
        lambda: (lambda h: h if h.status == want.status else None)(
            runway.run_launcher.check_run_worker_health(r)),
        f"runway to answer {want}", timeout=10)
    assert type(got) is CheckRunHealthResult and CheckRunHealthResult._fields == (
        "status", "msg")
    return str(want), str(got)


def test_health_answers_as_dagster_k8s_0_17_9(stock, runway, kube, proxy):
    s, r = finished_pair(stock, runway, kube, {})
    assert answers(stock, runway, s, r) == ("SUCCESS: 'None'",) * 2
    # A finished Job of a STARTED run is still SUCCESS to 0.17.9 (0.17.20 made it a failure).
    s, r = mark(stock, s, DagsterEventType.RUN_START), mark(runway, r, DagsterEventType.RUN_START)
    assert answers(stock, runway, s, r) == ("SUCCESS: 'None'",) * 2
    sent = [q for q in proxy[1].requests("CheckRunWorkerHealth") if q.run_id == r.run_id]
    assert {q.run_status for q in sent} == {""}

    s, r = finished_pair(stock, runway, kube, annotated(**{"runway.dev/exit-code": "1"}))
    assert answers(stock, runway, s, r) == ("FAILED: 'K8s job failed'",) * 2

    # A run without a Job: 0.17.9 fails to read it and says UNKNOWN with the API error.
    for instance in (stock, runway):
        missing = make_run(instance)
        assert instance.run_launcher.check_run_worker_health(missing).status == (
            WorkerStatus.UNKNOWN)


def test_debug_info_is_there_though_dagster_1_1_9_never_asks(stock, runway, kube):
    assert not hasattr(RunLauncher, "get_run_worker_debug_info")
    assert not hasattr(K8sRunLauncher, "get_run_worker_debug_info")
    tags = annotated(**{"runway.dev/exit-code": "3", "runway.dev/log": "boom"})
    _, r = finished_pair(stock, runway, kube, tags)
    [pod] = job_pods(kube, f"dagster-run-{r.run_id}")
    text = runway.run_launcher.get_run_worker_debug_info(r)
    assert f"Debug information for pod {pod}:" in text and "boom" in text
    assert runway.run_launcher.get_run_worker_debug_info(make_run(runway)) is None


def test_a_starting_run_whose_image_cannot_be_pulled_fails_within_seconds(runway):
    started = time.monotonic()
    run = launch(runway, image="registry.invalid/missing:1")
    assert run.status in (DagsterRunStatus.STARTING, DagsterRunStatus.FAILURE)
    run = wait_for(lambda: (r := runway.get_run_by_id(run.run_id)).is_finished and r,
                   "the run to fail")
    assert run.status == DagsterRunStatus.FAILURE
    assert time.monotonic() - started < WAIT
    [failure] = [e for e in runway.all_logs(run.run_id)
                 if e.dagster_event and e.dagster_event.event_type
                 == DagsterEventType.PIPELINE_FAILURE]
    message = failure.dagster_event.message
    assert message.startswith(f"Run worker Job dagster-run-{run.run_id} in namespace {NS}"
                              " cannot start (ErrImagePull"), message
