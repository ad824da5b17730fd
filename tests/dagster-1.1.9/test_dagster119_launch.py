"""Launch and resume on Dagster 1.1.9, side by side with the stock K8sRunLauncher 0.17.9 on
the same dev cluster: the same events (metadata entries), `dagster/image` tag (the
configured image, set before the Job), run status and resume count; and the request the
Runway launcher sends, as the capturing proxy received it."""
from __future__ import annotations

import hashlib
import json

import pytest
from dagster._core.events import DagsterEventType
from dagster._core.storage.pipeline_run import DagsterRunStatus
from dagster._serdes import deserialize_json_to_dagster_namedtuple

from dagster119 import event_log, launch, make_run, mark
from launcher_cluster import IMAGE, LOCATION, NS, SEED, read_job

EXPECTED_LAUNCH = [
    ["PIPELINE_STARTING", None, {}],
    ["ENGINE_EVENT", "[K8sRunLauncher] Creating Kubernetes run worker job",
     {"Kubernetes Job name": "dagster-run-<run-id>", "Kubernetes Namespace": NS,
      "Run ID": "<run-id>"}],
    ["ENGINE_EVENT", "[K8sRunLauncher] Kubernetes run worker job created", {}],
]


def stock_args(kube, run_id: str, suffix: str = "") -> list[str]:
    job = read_job(kube, f"dagster-run-{run_id}{suffix}")
    return job["spec"]["template"]["spec"]["containers"][0]["args"]


def test_launch_keeps_the_stock_bookkeeping_and_sends_dagster_1_1_9(stock, runway, kube, proxy):
    tags = {"team": "data", "dagster-k8s/config": json.dumps(
        {"container_config": {"env": [{"name": "FROM_TAG", "value": "1"}]}})}
    s = launch(stock, tags=tags)
    r = launch(runway, tags=tags)

    assert event_log(stock, s.run_id) == event_log(runway, r.run_id) == EXPECTED_LAUNCH
    assert s.tags["dagster/image"] == r.tags["dagster/image"] == IMAGE
    assert s.status == r.status == DagsterRunStatus.STARTING
    assert read_job(kube, f"dagster-run-{s.run_id}") is not None
    assert read_job(kube, f"dagster-run-{r.run_id}") is not None

    [request] = [q for q in proxy[1].requests("LaunchRun") if q.run.run_id == r.run_id]
    assert request.dagster_version == "1.1.9"
    assert request.launcher.launcher_class == "K8sRunLauncher"
    config = runway.run_launcher.runway_launcher_config
    assert not [k for k in config if k.startswith("runway_")]
    assert config["job_namespace"] == NS and config["service_account_name"] == "dagster"
    sent = request.run
    assert (sent.job_name, sent.location_name, sent.image, sent.resume_attempt) == (
        "example_job", LOCATION, IMAGE, 0)
    assert dict(sent.tags) == tags and sent.run_config_json == ""
    assert json.loads(sent.container_context_json) == SEED["run"]["container_context"]
    # The stock 1.1.9 argv: ExecuteRunArgs with pipeline_origin and pipeline_run_id.
    assert list(sent.args[:3]) == stock_args(kube, s.run_id)[:3] == [
        "dagster", "api", "execute_run"]
    sent_args = deserialize_json_to_dagster_namedtuple(sent.args[3])
    stock_exec = deserialize_json_to_dagster_namedtuple(stock_args(kube, s.run_id)[3])
    assert sent_args.pipeline_run_id == r.run_id
    assert sent_args.pipeline_origin == stock_exec.pipeline_origin
    assert sent_args.instance_ref.run_launcher_data.class_name == "RunwayK8sRunLauncher"


def test_the_config_body_goes_once_then_the_digest(runway, proxy):
    launch(runway)
    launch(runway)
    config_json = runway.run_launcher._runway.config_json
    digest = hashlib.sha256(config_json.encode()).hexdigest()
    sent = [q.launcher for q in proxy[1].requests("LaunchRun") if q.launcher.digest == digest]
    # The launcher's first launch sent the body; every later one the digest alone.
    assert len(sent) >= 2
    assert sent[0].config_json == config_json
    assert not [c for c in sent[1:] if c.config_json]
    assert json.loads(config_json) == runway.run_launcher.runway_launcher_config


def test_a_run_without_an_image_fails_on_the_tag_before_any_event(stock, runway, proxy):
    # No image in the code location or the launcher config: 0.17.9 tags the run with
    # None, which run storage refuses, before anything else happens.
    logs = []
    for instance in (stock, runway):
        run = make_run(instance, image=None)
        with pytest.raises(Exception, match="dagster/image"):
            instance.launch_run(run.run_id, workspace=None)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        logs.append(event_log(instance, run.run_id))
    assert logs[1] == logs[0]
    assert [e[0] for e in logs[1]] == ["PIPELINE_STARTING", "ENGINE_EVENT", "PIPELINE_FAILURE"]
    assert not [q for q in proxy[1].requests("LaunchRun") if q.run.run_id == run.run_id]


def test_an_invalid_k8s_config_tag_fails_the_same_way(stock, runway, proxy):
    tags = {"dagster-k8s/config": json.dumps({"container_configz": {}})}
    logs = []
    for instance in (stock, runway):
        run = make_run(instance, tags=tags)
        with pytest.raises(Exception, match="dagster-k8s/config"):
            instance.launch_run(run.run_id, workspace=None)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        logs.append(event_log(instance, run.run_id))
    assert logs[1] == logs[0]
    assert not [q for q in proxy[1].requests("LaunchRun") if q.run.run_id == run.run_id]


def test_resume_counts_and_names_the_attempt_as_the_stock_launcher(stock, runway, kube, proxy):
    runs = {}
    for name, instance in (("stock", stock), ("runway", runway)):
        run = mark(instance, launch(instance), DagsterEventType.RUN_START)
        instance.resume_run(run.run_id, workspace=None, attempt_number=1)
        assert instance.count_resume_run_attempts(run.run_id) == 1
        assert read_job(kube, f"dagster-run-{run.run_id}-1") is not None, name
        runs[name] = run
    s, r = runs["stock"], runs["runway"]
    assert event_log(runway, r.run_id) == event_log(stock, s.run_id)
    assert event_log(runway, r.run_id)[-3:] == [
        ["ENGINE_EVENT", "Launching a new run worker to resume run", {}],
        ["ENGINE_EVENT", "[K8sRunLauncher] Creating Kubernetes run worker job",
         {"Kubernetes Job name": "dagster-run-<run-id>-1", "Kubernetes Namespace": NS,
          "Run ID": "<run-id>"}],
        ["ENGINE_EVENT", "[K8sRunLauncher] Kubernetes run worker job created", {}],
    ]
    [request] = [q for q in proxy[1].requests("ResumeRun") if q.run.run_id == r.run_id]
    assert (request.dagster_version, request.run.resume_attempt) == ("1.1.9", 1)
    assert list(request.run.args[:3]) == stock_args(kube, s.run_id, "-1")[:3] == [
        "dagster", "api", "resume_run"]
    sent = deserialize_json_to_dagster_namedtuple(request.run.args[3])
    assert type(sent).__name__ == "ResumeRunArgs" and sent.pipeline_run_id == r.run_id
