"""Terminate through `runway serve`, side by side with the stock K8sRunLauncher: the
cancellation events, and the run's step Jobs deleted with it."""
from __future__ import annotations

import uuid

import grpc
from dagster._core.events import DagsterEventType
from dagster._core.storage.dagster_run import DagsterRunStatus
from kubernetes import client

from dagster_runway._proto import launcher_pb2 as pb
from dagster_runway._proto import launcher_pb2_grpc as pb_grpc
from dagster_runs import event_log, launch, mark
from launcher_cluster import (
    IMAGE,
    NS,
    TOKEN,
    WAIT,
    annotated,
    gone,
    job_pods,
    read_job,
    wait_for,
)


def test_terminate_cancels_as_the_stock_launcher_and_deletes_step_jobs(stock, runway, kube, endpoint):
    never = annotated(**{"runway.dev/scenario": "Never"})
    runs = {}
    for name, instance in (("stock", stock), ("runway", runway)):
        run = mark(instance, launch(instance, tags=never), DagsterEventType.RUN_START)
        wait_for(lambda: job_pods(kube, f"dagster-run-{run.run_id}"), "the run pod")
        runs[name] = run
    r = runs["runway"]

    # A step Job of the Runway run, as `runway worker` labels them.
    step = f"dagster-step-{uuid.uuid4().hex}"
    client.BatchV1Api(kube).create_namespaced_job(NS, {
        "metadata": {"name": step, "labels": {
            "dagster/run-id": r.run_id, "dagster/op": "op_a",
            "app.kubernetes.io/part-of": "dagster", "app.kubernetes.io/managed-by": "runway"}},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"annotations": {"runway.dev/scenario": "Never"}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "dagster", "image": IMAGE}]}}},
    })
    with grpc.insecure_channel(endpoint) as channel:
        stub = pb_grpc.RunLauncherStub(channel)
        stream = stub.WatchRuns(
            pb.WatchRunsRequest(run_ids=[r.run_id], include_current=True, include_step_jobs=True),
            metadata=[("authorization", f"Bearer {TOKEN}")], timeout=WAIT)
        seen = False
        for t in stream:
            if t.job_name == step:
                seen = True
                stream.cancel()
                break
        assert seen, "the service never indexed the step Job"

    for name, instance in (("stock", stock), ("runway", runway)):
        run = runs[name]
        assert instance.run_launcher.terminate(run.run_id) is True
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELING
        job = f"dagster-run-{run.run_id}"
        if name == "runway":
            wait_for(lambda: gone(kube, job), "the Job and its pods to go")
        else:
            # dagster-k8s deletes the Job with the API's default (orphan) propagation, then
            # the pods; on the dev cluster the orphaned pod may linger, finalized.
            wait_for(lambda: read_job(kube, job) is None, "the Job to go")
        # The Job is gone: terminating again reports it, as dagster-k8s's delete_job does.
        assert instance.run_launcher.terminate(run.run_id) is False
        # The run worker (or run monitoring) reports CANCELED; then there is nothing to do.
        instance.report_run_canceled(instance.get_run_by_id(run.run_id))
        assert instance.run_launcher.terminate(run.run_id) is False
    wait_for(lambda: gone(kube, step), "the step Job and its pod to go")

    s_log = event_log(stock, runs["stock"].run_id)
    assert event_log(runway, r.run_id) == s_log
    assert [e[:2] for e in s_log] == [
        ["PIPELINE_STARTING", None],
        ["ENGINE_EVENT", "[K8sRunLauncher] Creating Kubernetes run worker job"],
        ["ENGINE_EVENT", "[K8sRunLauncher] Kubernetes run worker job created"],
        ["PIPELINE_START", None],
        ["PIPELINE_CANCELING", "Sending run termination request."],
        ["ENGINE_EVENT", "[K8sRunLauncher] Run was terminated successfully."],
        ["PIPELINE_CANCELING", "Sending run termination request."],
        ["ENGINE_EVENT",
         "[K8sRunLauncher] Run was not terminated successfully; delete_job returned False"],
        # The terminate of a CANCELED run writes nothing.
        ["PIPELINE_CANCELED",
         "This run has been marked as canceled from outside the execution context."],
    ]


