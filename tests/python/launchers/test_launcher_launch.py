"""Launching through `runway serve`, side by side with the stock K8sRunLauncher on the same
dev cluster: the same Job, events and tags; what the client sends; and the two ways a
launch is refused."""
from __future__ import annotations

import copy
import json

import dagster
import pytest
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._serdes import deserialize_value, serialize_value

import dagster_runway
from dagster_runs import event_log, launch, make_run
from launcher_cluster import (
    IMAGE,
    LOCATION,
    NS,
    SEED,
    comparable_job,
    read_job,
    record_calls,
    without_managed_by,
)


def test_launch_creates_the_stock_job_with_the_stock_events_and_tags(stock, runway, kube):
    tags = {"team": "data", "dagster-k8s/config": json.dumps(
        {"container_config": {"env": [{"name": "FROM_TAG", "value": "1"}]}})}
    s = launch(stock, tags=tags)
    r = launch(runway, tags=tags)

    s_job, s_args = comparable_job(read_job(kube, f"dagster-run-{s.run_id}"), s.run_id)
    r_job, r_args = comparable_job(read_job(kube, f"dagster-run-{r.run_id}"), r.run_id)
    assert without_managed_by(r_job) == s_job
    assert r_job["metadata"]["labels"]["dagster/code-location"] == LOCATION

    # The argv: the same ExecuteRunArgs, with each instance's own ref.
    assert s_args[:3] == r_args[:3] == ["dagster", "api", "execute_run"]
    s_exec, r_exec = deserialize_value(s_args[3]), deserialize_value(r_args[3])
    assert r_exec.run_id == r.run_id
    assert r_exec.job_origin == s_exec.job_origin
    assert r_exec.set_exit_code_on_failure == s_exec.set_exit_code_on_failure
    assert serialize_value(r_exec.instance_ref) == serialize_value(runway.get_ref())
    assert r_exec.instance_ref.run_launcher_data.class_name == "RunwayK8sRunLauncher"

    # The event log, message for message and metadata entry for metadata entry.
    expected = [
        ["PIPELINE_STARTING", None, {}],
        ["ENGINE_EVENT", "[K8sRunLauncher] Creating Kubernetes run worker job",
         {"Kubernetes Job name": "dagster-run-<run-id>", "Kubernetes Namespace": NS,
          "Run ID": "<run-id>"}],
        ["ENGINE_EVENT", "[K8sRunLauncher] Kubernetes run worker job created", {}],
    ]
    assert event_log(stock, s.run_id) == expected
    assert event_log(runway, r.run_id) == expected

    assert s.tags["dagster/image"] == r.tags["dagster/image"] == IMAGE
    assert s.status == r.status == DagsterRunStatus.STARTING


def test_launch_sends_the_config_body_once_then_the_digest(runway):
    launcher = runway.run_launcher
    calls = record_calls(launcher)
    first = launch(runway)
    second = launch(runway)
    assert [m for m, _ in calls] == ["LaunchRun", "LaunchRun"]
    # The caller's Dagster, whose Job the service renders.
    assert {req.dagster_version for _, req in calls} == {dagster.__version__}
    sent = [req.launcher for _, req in calls]
    assert {c.launcher_class for c in sent} == {"K8sRunLauncher"}
    assert sent[0].digest == sent[1].digest == dagster_runway.client.sha256_hex(
        launcher._runway.config_json)
    # Once the service accepted the body, the digest alone.
    assert sent[1].config_json == ""
    # What is sent is the stock config, as the stock class was given it: no runway_* key.
    body = json.loads(launcher._runway.config_json)
    assert not [k for k in body if k.startswith("runway_")]
    assert body == launcher.runway_launcher_config
    assert body["run_k8s_config"]["job_spec_config"]["ttlSecondsAfterFinished"] == 7200
    assert body["service_account_name"] == "dagster"
    run = calls[1][1].run
    assert (run.run_id, run.job_name, run.location_name, run.image, run.resume_attempt) == (
        second.run_id, "example_job", LOCATION, IMAGE, 0)
    assert json.loads(run.container_context_json) == SEED["run"]["container_context"]
    assert first.status == second.status == DagsterRunStatus.STARTING


def test_env_var_sources_are_sent_from_the_launching_process(runway, kube, monkeypatch):
    monkeypatch.setenv("RUNWAY_TEST_FROM_DAEMON", "daemon-value")
    context = copy.deepcopy(SEED["run"]["container_context"])
    context["env_vars"] = ["RUNWAY_TEST_FROM_DAEMON", "LITERAL=1"]
    calls = record_calls(runway.run_launcher)
    run = launch(runway, container_context=context)
    assert dict(calls[0][1].env) == {"RUNWAY_TEST_FROM_DAEMON": "daemon-value"}
    env = read_job(kube, f"dagster-run-{run.run_id}")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "RUNWAY_TEST_FROM_DAEMON", "value": "daemon-value"} in env
    assert {"name": "LITERAL", "value": "1"} in env


def test_a_run_dagster_k8s_refuses_fails_the_same_way(stock, runway):
    tags = {"dagster-k8s/config": json.dumps({"container_config": {"resourcez": {}}})}
    logs = []
    for instance in (stock, runway):
        run = make_run(instance, tags=tags)
        with pytest.raises(Exception, match="resourcez"):
            instance.launch_run(run.run_id, workspace=None)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        logs.append(event_log(instance, run.run_id))
    # Refused while building the container context, before any launcher event.
    assert logs[1] == logs[0]
    assert [e[0] for e in logs[1]] == ["PIPELINE_STARTING", "ENGINE_EVENT", "PIPELINE_FAILURE"]


def test_a_run_the_service_refuses_fails_with_the_services_reason(runway):
    # No image anywhere (the seed launcher config has no job_image): dagster-k8s fails
    # on a check while tagging; runway serve refuses the launch and names the field.
    run = make_run(runway, image=None)
    with pytest.raises(dagster_runway.RunwayError) as err:
        runway.launch_run(run.run_id, workspace=None)
    assert f"LaunchRun of run {run.run_id} failed: INVALID_ARGUMENT" in str(err.value)
    assert "image" in str(err.value)
    failed = runway.get_run_by_id(run.run_id)
    assert failed.status == DagsterRunStatus.FAILURE and "dagster/image" not in failed.tags


