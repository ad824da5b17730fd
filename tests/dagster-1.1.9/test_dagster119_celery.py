"""RunwayCeleryK8sRunLauncher on Dagster 1.1.9, side by side with the stock
CeleryK8sRunLauncher 0.17.9: launch events and their metadata (namespace from the executor
config: 0.17.9's launcher has no job_namespace), the tag set from the executor's image
before the Job, health, and terminate of STARTED runs only."""
from __future__ import annotations

import json

import pytest
from dagster._core.events import DagsterEventType
from dagster._core.storage.pipeline_run import DagsterRunStatus
from dagster_celery_k8s import CeleryK8sRunLauncher

from dagster119 import event_log, launch, make_run, mark
from launcher_cluster import CELERY_RUN_CONFIG, NS, annotated, job_done, read_job, wait_for

CELERY_IMAGE = CELERY_RUN_CONFIG["execution"]["config"]["job_image"]


def test_celery_launch_keeps_the_stock_bookkeeping(celery_pair, kube, proxy):
    stock, runway = celery_pair
    assert isinstance(runway.run_launcher, CeleryK8sRunLauncher)
    assert not hasattr(stock.run_launcher, "job_namespace")

    s = launch(stock, run_config=CELERY_RUN_CONFIG)
    r = launch(runway, run_config=CELERY_RUN_CONFIG)
    metadata = {"Kubernetes Job name": "dagster-run-<run-id>", "Kubernetes Namespace": NS,
                "Run ID": "<run-id>"}
    expected = [
        ["PIPELINE_STARTING", None, {}],
        ["ENGINE_EVENT", f"[CeleryK8sRunLauncher] You have specified a job_image {CELERY_IMAGE}"
         # (sic: dagster-celery-k8s names the executor's image twice)
         f" in your executor configuration, but also {CELERY_IMAGE} in your user-code"
         f" deployment. Using the job image {CELERY_IMAGE} from executor configuration as it"
         " takes precedence.", {}],
        ["ENGINE_EVENT", "[CeleryK8sRunLauncher] Creating Kubernetes run worker job", metadata],
        ["ENGINE_EVENT", "[CeleryK8sRunLauncher] Kubernetes run worker job created", metadata],
    ]
    assert event_log(stock, s.run_id) == event_log(runway, r.run_id) == expected
    assert s.tags["dagster/image"] == r.tags["dagster/image"] == CELERY_IMAGE
    assert read_job(kube, f"dagster-run-{s.run_id}") is not None
    assert read_job(kube, f"dagster-run-{r.run_id}") is not None

    [request] = [q for q in proxy[1].requests("LaunchRun") if q.run.run_id == r.run_id]
    assert request.dagster_version == "1.1.9"
    assert request.launcher.launcher_class == "CeleryK8sRunLauncher"
    assert json.loads(request.run.run_config_json) == CELERY_RUN_CONFIG

    # Health by 0.17.9's celery rules: never SUCCESS.
    for run in (s, r):
        wait_for(lambda: job_done(kube, f"dagster-run-{run.run_id}"), "the Job to finish")
    want = str(stock.run_launcher.check_run_worker_health(s))
    got = wait_for(lambda: (lambda h: h if str(h) == want else None)(
        runway.run_launcher.check_run_worker_health(r)), f"runway to answer {want}", 10)
    assert want == str(got) == "RUNNING: 'None'"


def test_celery_terminate_keeps_the_stock_rules_and_events(celery_pair, kube):
    never = annotated(**{"runway.dev/scenario": "Never"})
    logs = []
    for instance in celery_pair:
        run = launch(instance, run_config=CELERY_RUN_CONFIG, tags=never)
        assert instance.run_launcher.terminate(run.run_id) is False
        run = mark(instance, run, DagsterEventType.RUN_START)
        assert instance.run_launcher.terminate(run.run_id) is True
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELING
        wait_for(lambda: read_job(kube, f"dagster-run-{run.run_id}") is None, "the Job to go")
        logs.append(event_log(instance, run.run_id))
    assert logs[1] == logs[0]
    refused = ("[CeleryK8sRunLauncher] Unable to terminate dagster job: can_terminate"
               " returned False.")
    assert [e[:2] for e in logs[1]][-5:] == [
        ["ENGINE_EVENT", "[CeleryK8sRunLauncher] Kubernetes run worker job created"],
        ["ENGINE_EVENT", refused],
        ["PIPELINE_START", None],
        ["PIPELINE_CANCELING", "Sending run termination request."],
        ["ENGINE_EVENT", "[CeleryK8sRunLauncher] Dagster Job was terminated successfully."],
    ]


def test_celery_run_without_an_image_fails_as_the_stock_launcher(celery_pair, proxy):
    logs = []
    for instance in celery_pair:
        run = make_run(instance, image=None, run_config={"execution": {"config": {}}})
        with pytest.raises(Exception, match="You have not specified a job_image"):
            instance.launch_run(run.run_id, workspace=None)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        logs.append(event_log(instance, run.run_id))
    assert logs[1] == logs[0]
    assert not [q for q in proxy[1].requests("LaunchRun") if q.run.run_id == run.run_id]
