"""RunwayCeleryK8sRunLauncher side by side with the stock CeleryK8sRunLauncher, and the
InstanceRef both Runway classes put in their run workers' argv."""
from __future__ import annotations

import pytest
from dagster._core.instance import DagsterInstance
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._serdes import deserialize_value
from dagster_celery_k8s import CeleryK8sRunLauncher
from dagster_k8s import K8sRunLauncher

from dagster_runs import engine_messages, event_log, launch, make_run
from launcher_cluster import (
    CELERY_RUN_CONFIG,
    NS,
    comparable_job,
    job_done,
    read_job,
    wait_for,
    without_managed_by,
)


def test_celery_launch_matches_the_stock_launcher(celery_pair, kube):
    stock, runway = celery_pair
    assert isinstance(runway.run_launcher, CeleryK8sRunLauncher)
    body = runway.run_launcher.runway_launcher_config
    assert body["broker"] == "pyamqp://guest@127.0.0.1:5672//" and body["retries"] == {"enabled": {}}
    assert not [k for k in body if k.startswith("runway_")]

    s = launch(stock, run_config=CELERY_RUN_CONFIG)
    r = launch(runway, run_config=CELERY_RUN_CONFIG)
    s_job, s_args = comparable_job(read_job(kube, f"dagster-run-{s.run_id}"), s.run_id)
    r_job, r_args = comparable_job(read_job(kube, f"dagster-run-{r.run_id}"), r.run_id)
    assert without_managed_by(r_job) == s_job
    assert deserialize_value(r_args[3]).job_origin == deserialize_value(s_args[3]).job_origin
    metadata = {"Kubernetes Job name": "dagster-run-<run-id>", "Kubernetes Namespace": NS,
                "Run ID": "<run-id>"}
    expected = [
        ["PIPELINE_STARTING", None, {}],
        ["ENGINE_EVENT", "[CeleryK8sRunLauncher] You have specified a job_image"
         " docker.io/dagster/user-code-example:celery in your executor configuration, but also"
         # (sic: dagster-celery-k8s names the executor's image twice)
         " docker.io/dagster/user-code-example:celery in your user-code deployment. Using the job image"
         " docker.io/dagster/user-code-example:celery from executor configuration as it takes"
         " precedence.", {}],
        ["ENGINE_EVENT", "[CeleryK8sRunLauncher] Creating Kubernetes run worker job", metadata],
        ["ENGINE_EVENT", "[CeleryK8sRunLauncher] Kubernetes run worker job created", metadata],
    ]
    assert event_log(stock, s.run_id) == event_log(runway, r.run_id) == expected
    assert s.tags["dagster/image"] == r.tags["dagster/image"] == "docker.io/dagster/user-code-example:celery"

    # Health (celery-k8s rules: never SUCCESS) and terminate, as the stock class.
    for instance, run in ((stock, s), (runway, r)):
        wait_for(lambda: job_done(kube, f"dagster-run-{run.run_id}"), "the Job to finish")
    assert str(stock.run_launcher.check_run_worker_health(s)) == "RUNNING: 'None'"
    assert str(runway.run_launcher.check_run_worker_health(r)) == "RUNNING: 'None'"
    for instance, run in ((stock, s), (runway, r)):
        assert instance.run_launcher.terminate(run.run_id) is True
        assert engine_messages(instance, run.run_id)[-1] == (
            "[CeleryK8sRunLauncher] Dagster Job was terminated successfully.")

    # No image anywhere: the stock error, before any event.
    for instance in (stock, runway):
        run = make_run(instance, image=None, run_config={"execution": {"config": {}}})
        with pytest.raises(Exception, match="You have not specified a job_image"):
            instance.launch_run(run.run_id, workspace=None)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE


# === the instance ref run pods get ==========================================================


@pytest.mark.parametrize("variant", ["k8s", "celery"])
def test_the_instance_ref_in_the_run_worker_args_loads_the_runway_class(variant, runway, celery_pair, kube):
    instance = runway if variant == "k8s" else celery_pair[1]
    run_config = CELERY_RUN_CONFIG if variant == "celery" else None
    run = launch(instance, run_config=run_config)
    args = read_job(kube, f"dagster-run-{run.run_id}")["spec"]["template"]["spec"]["containers"][0]["args"]
    ref = deserialize_value(args[3]).instance_ref
    data = ref.run_launcher_data
    want = "RunwayK8sRunLauncher" if variant == "k8s" else "RunwayCeleryK8sRunLauncher"
    assert (data.module_name, data.class_name) == ("dagster_runway", want)
    # What a run pod does with it: rehydrate the instance and its launcher.
    with DagsterInstance.from_ref(ref) as in_pod:
        launcher = in_pod.run_launcher
        assert type(launcher).__name__ == want
        assert launcher.runway_launcher_config == instance.run_launcher.runway_launcher_config
        if variant == "k8s":
            assert isinstance(launcher, K8sRunLauncher)
            assert launcher.job_namespace == NS and launcher.service_account_name == "dagster"
        else:
            # celery_k8s_job_executor's requirement, and what it reads off the launcher.
            assert isinstance(launcher, CeleryK8sRunLauncher)
            job_config = launcher.get_k8s_job_config("img:1", {})
            assert job_config.env_config_maps == ["dagster-pipeline-env"]


