"""Terminate on Dagster 1.1.9, side by side with the stock K8sRunLauncher 0.17.9: only a
STARTED run is terminated (`can_terminate`, with its refusal reported), then the stock
cancellation events."""
from __future__ import annotations

from dagster._core.events import DagsterEventType
from dagster._core.storage.pipeline_run import DagsterRunStatus

from dagster119 import event_log, launch, mark
from launcher_cluster import NS, annotated, gone, job_pods, read_job, wait_for

REFUSED = "[K8sRunLauncher] Unable to terminate run; can_terminate returned False"


def test_terminate_keeps_the_stock_rules_and_events(stock, runway, kube, proxy):
    never = annotated(**{"runway.dev/scenario": "Never"})
    runs = {}
    for name, instance in (("stock", stock), ("runway", runway)):
        # STARTING: 0.17.9 refuses, and reports why.
        run = launch(instance, tags=never)
        assert instance.run_launcher.terminate(run.run_id) is False
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTING

        run = mark(instance, run, DagsterEventType.RUN_START)
        wait_for(lambda: job_pods(kube, f"dagster-run-{run.run_id}"), "the run pod")
        assert instance.run_launcher.terminate(run.run_id) is True
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELING
        job = f"dagster-run-{run.run_id}"
        if name == "runway":
            wait_for(lambda: gone(kube, job), "the Job and its pods to go")
        else:
            wait_for(lambda: read_job(kube, job) is None, "the Job to go")
        # CANCELING is not STARTED: refused again.
        assert instance.run_launcher.terminate(run.run_id) is False
        runs[name] = run

    s_log = event_log(stock, runs["stock"].run_id)
    assert event_log(runway, runs["runway"].run_id) == s_log
    assert [e[:2] for e in s_log] == [
        ["PIPELINE_STARTING", None],
        ["ENGINE_EVENT", "[K8sRunLauncher] Creating Kubernetes run worker job"],
        ["ENGINE_EVENT", "[K8sRunLauncher] Kubernetes run worker job created"],
        ["ENGINE_EVENT", REFUSED],
        ["PIPELINE_START", None],
        ["PIPELINE_CANCELING", "Sending run termination request."],
        ["ENGINE_EVENT", "[K8sRunLauncher] Run was terminated successfully."],
        ["ENGINE_EVENT", REFUSED],
    ]
    [request] = [q for q in proxy[1].requests("TerminateRun")
                 if q.run_id == runs["runway"].run_id]
    assert (request.resume_attempt, request.namespace, request.include_step_jobs) == (
        0, NS, True)
