"""dagster-runway: the Runway launchers in a real DagsterInstance, launching through
`runway serve` on a dev cluster (simulated kubelet), side by side with the stock
dagster-k8s / dagster-celery-k8s launchers on the same cluster.

Each scenario runs once per launcher with its own run id; the Jobs, the event logs, the
tags and the answers are compared after the run id (and pod names) are replaced.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import importlib.util
import json
import os
import socket
import threading
import time
import uuid

import grpc
import pytest
from dagster._core.code_pointer import FileCodePointer
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.instance import DagsterInstance
from dagster._core.launcher.base import WorkerStatus
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.remote_origin import (
    GrpcServerCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._core.test_utils import instance_for_test
from dagster._serdes import deserialize_value, serialize_value
from dagster_celery_k8s import CeleryK8sRunLauncher
from dagster_k8s import K8sRunLauncher
from kubernetes import client, config as kube_config
from kubernetes.client.rest import ApiException

import dagster_runway
from dagster_runway._proto import launcher_pb2 as pb
from dagster_runway._proto import launcher_pb2_grpc as pb_grpc
from devcluster import ROOT, dev_cluster, server_fields_dropped
from runway_serve import SEED_NAMESPACE as NS, create_seed_prerequisites, runway_serve

SEED = json.load(open(os.path.join(ROOT, "tests", "fixtures", "cases", "seed_k8s_run.json")))
IMAGE = SEED["run"]["image"]
LOCATION = SEED["run"]["location_name"]
TOKEN = "runway-test-token"
WAIT = 30.0


# === fixtures ===============================================================================


@pytest.fixture(scope="module")
def kubeconfig():
    with dev_cluster("--kubelet", "simulated", "--images", "*,!*.invalid/*") as path:
        api = kube_config.new_client_from_config(config_file=path)
        create_seed_prerequisites(api)
        api.close()
        yield path


@pytest.fixture(scope="module")
def kube(kubeconfig):
    api = kube_config.new_client_from_config(config_file=kubeconfig)
    yield api
    api.close()


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("runway-token") / "token"
    path.write_text(TOKEN + "\n")
    return str(path)


@pytest.fixture(scope="module")
def endpoint(kubeconfig, token_file):
    with runway_serve(kubeconfig, f"--token-file={token_file}") as addr:
        yield addr


def k8s_config(kubeconfig) -> dict:
    """The seed deployment's K8sRunLauncher config, pointed at the dev cluster."""
    cfg = copy.deepcopy(SEED["launcher"])
    cfg["load_incluster_config"] = False
    cfg["kubeconfig_file"] = kubeconfig
    return cfg


def celery_config(kubeconfig) -> dict:
    return {
        "instance_config_map": "dagster-instance",
        "dagster_home": "/opt/dagster/dagster_home",
        "postgres_password_secret": "dagster-postgresql-secret",
        "load_incluster_config": False,
        "kubeconfig_file": kubeconfig,
        "broker": "pyamqp://guest@127.0.0.1:5672//",
        "backend": "rpc://",
        "service_account_name": "dagster",
        "image_pull_policy": "Always",
        "env_config_maps": ["dagster-pipeline-env"],
        "labels": {"app.aipaas.io/app": "dagster"},
        "job_namespace": NS,
    }


def runway_keys(endpoint, token_file, **extra) -> dict:
    keys = {"runway_endpoint": endpoint, "runway_token_file": token_file,
            "runway_health_mode": "dagster-compat"}
    keys.update(extra)
    return keys


@contextlib.contextmanager
def instance_with(module: str, cls: str, config: dict):
    overrides = {"run_launcher": {"module": module, "class": cls, "config": config}}
    with instance_for_test(overrides=overrides, set_dagster_home=False) as instance:
        yield instance


@pytest.fixture(scope="module")
def stock(kubeconfig):
    with instance_with("dagster_k8s", "K8sRunLauncher", k8s_config(kubeconfig)) as i:
        yield i


@pytest.fixture(scope="module")
def runway(kubeconfig, endpoint, token_file):
    config = {**k8s_config(kubeconfig), **runway_keys(endpoint, token_file)}
    with instance_with("dagster_runway", "RunwayK8sRunLauncher", config) as i:
        yield i


@pytest.fixture(scope="module")
def diagnosing(kubeconfig, endpoint, token_file):
    config = {**k8s_config(kubeconfig),
              **runway_keys(endpoint, token_file, runway_health_mode="diagnose")}
    with instance_with("dagster_runway", "RunwayK8sRunLauncher", config) as i:
        yield i


# === helpers ================================================================================


def origin(job_name: str, image, container_context):
    return JobPythonOrigin(
        job_name,
        RepositoryPythonOrigin(
            executable_path="/usr/local/bin/python",
            code_pointer=FileCodePointer(
                python_file="/example_project/example_repo/repo.py",
                fn_name="example_repo",
                working_directory="/example_project",
            ),
            container_image=image,
            entry_point=["dagster"],
            container_context=container_context,
        ),
    )


def make_run(instance, *, tags=None, image=IMAGE, container_context="seed", run_config=None,
             job_name="example_job") -> DagsterRun:
    if container_context == "seed":
        container_context = SEED["run"]["container_context"]
    run = DagsterRun(
        job_name=job_name,
        run_id=str(uuid.uuid4()),
        run_config=run_config or {},
        tags=tags or {},
        status=DagsterRunStatus.NOT_STARTED,
        job_code_origin=origin(job_name, image, container_context),
        remote_job_origin=RemoteJobOrigin(
            repository_origin=RemoteRepositoryOrigin(
                code_location_origin=GrpcServerCodeLocationOrigin(
                    host="k8s-example-user-code-1", port=3030, location_name=LOCATION
                ),
                repository_name="example_repo",
            ),
            job_name=job_name,
        ),
    )
    instance.add_run(run)
    return run


def launch(instance, **kw) -> DagsterRun:
    run = make_run(instance, **kw)
    instance.launch_run(run.run_id, workspace=None)
    return instance.get_run_by_id(run.run_id)


def annotated(**annotations) -> dict:
    """Run tags whose pod template carries dev-cluster kubelet annotations."""
    return {"dagster-k8s/config": json.dumps(
        {"pod_template_spec_metadata": {"annotations": annotations}})}


def mark(instance, run, event_type: DagsterEventType) -> DagsterRun:
    instance.report_dagster_event(
        DagsterEvent(event_type_value=event_type.value, job_name=run.job_name), run_id=run.run_id)
    return instance.get_run_by_id(run.run_id)


def wait_for(fn, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def read_job(kube, name: str):
    try:
        job = client.BatchV1Api(kube).read_namespaced_job(name, NS)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return client.ApiClient().sanitize_for_serialization(job)


def job_pods(kube, name: str) -> list[str]:
    pods = client.CoreV1Api(kube).list_namespaced_pod(NS, label_selector=f"job-name={name}")
    return [p.metadata.name for p in pods.items]


def job_done(kube, name: str):
    job = read_job(kube, name)
    status = (job or {}).get("status") or {}
    return job if (status.get("succeeded") or status.get("failed")) else None


def gone(kube, name: str) -> bool:
    return read_job(kube, name) is None and not job_pods(kube, name)


def comparable_job(job: dict, run_id: str):
    """The Job without what the API server sets, the run id replaced, and its argv apart."""
    job = server_fields_dropped(job)
    args = job["spec"]["template"]["spec"]["containers"][0].pop("args")
    return json.loads(json.dumps(job).replace(run_id, "<run-id>")), args


def without_managed_by(job: dict) -> dict:
    job = copy.deepcopy(job)
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels.pop("app.kubernetes.io/managed-by") == "runway"
    return job


def event_log(instance, run_id: str) -> list:
    """(event type, message, metadata) of every Dagster event of the run."""
    out = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        metadata = {}
        if event.event_type == DagsterEventType.ENGINE_EVENT:
            data = event.engine_event_data
            metadata = {k: v.value for k, v in data.metadata.items()}
            if data.error:
                metadata["error"] = data.error.message.splitlines()[0]
        out.append([event.event_type_value, event.message, metadata])
    return json.loads(json.dumps(out).replace(run_id, "<run-id>"))


def engine_messages(instance, run_id: str) -> list[str]:
    return [e[1] for e in event_log(instance, run_id) if e[0] == "ENGINE_EVENT"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record_calls(launcher) -> list:
    """Wraps the launcher's client so each unary call is recorded as (method, request)."""
    c = launcher.runway_client
    calls = []
    real = c.call

    def call(method, request, what):
        calls.append((method, request))
        return real(method, request, what)

    c.call = call
    return calls


# === launch =================================================================================


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


# === resume =================================================================================


def test_resume_launches_the_next_attempt_and_health_follows_it(stock, runway, kube):
    results = {}
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


# === terminate ==============================================================================


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


# === the service unreachable ================================================================


def test_unreachable_service_fails_the_launch_naming_endpoint_and_cause(kubeconfig, token_file):
    port = free_port()
    config = {**k8s_config(kubeconfig),
              **runway_keys(f"127.0.0.1:{port}", token_file, runway_retry_seconds=1.0)}
    with instance_with("dagster_runway", "RunwayK8sRunLauncher", config) as instance:
        run = make_run(instance)
        started = time.monotonic()
        with pytest.raises(dagster_runway.RunwayError) as err:
            instance.launch_run(run.run_id, workspace=None)
        elapsed = time.monotonic() - started
        message = str(err.value)
        assert f"runway serve at 127.0.0.1:{port}" in message
        assert f"LaunchRun of run {run.run_id} failed: UNAVAILABLE" in message
        assert "gave up after" in message and "runway_retry_seconds" in message
        assert 1.0 <= elapsed < 10, elapsed
        failed = instance.get_run_by_id(run.run_id)
        assert failed.status == DagsterRunStatus.FAILURE
        assert "dagster/image" not in failed.tags
        assert any(f"127.0.0.1:{port}" in m for m in engine_messages(instance, run.run_id))

        health = instance.run_launcher.check_run_worker_health(failed)
        assert health.status == WorkerStatus.UNKNOWN and f"127.0.0.1:{port}" in health.msg

        running = mark(instance, make_run(instance), DagsterEventType.RUN_START)
        assert instance.run_launcher.terminate(running.run_id) is None
        assert engine_messages(instance, running.run_id)[-1] == (
            "[K8sRunLauncher] Run was not terminated successfully; encountered error in delete_job")


def test_a_restarted_service_is_waited_for_and_relearns_the_config(kubeconfig, token_file):
    port = free_port()
    config = {**k8s_config(kubeconfig),
              **runway_keys(f"127.0.0.1:{port}", token_file, runway_retry_seconds=60)}
    with instance_with("dagster_runway", "RunwayK8sRunLauncher", config) as instance:
        launcher = instance.run_launcher
        calls = record_calls(launcher)
        with runway_serve(kubeconfig, f"--token-file={token_file}", listen=f"127.0.0.1:{port}"):
            launch(instance)
        assert [bool(req.launcher.config_json) for _, req in calls] == [True]

        # The service is down; it comes back 2.5 s later, knowing no config. (gRPC may
        # hold the first call on a channel whose server went away for about a second
        # before failing it, so the service stays away longer than that.)
        sleeps = []
        real_sleep = launcher.runway_client._sleep
        launcher.runway_client._sleep = lambda s: (sleeps.append(s), real_sleep(s))
        ready = threading.Event()
        stop = threading.Event()

        def restart():
            time.sleep(2.5)
            with runway_serve(kubeconfig, f"--token-file={token_file}", listen=f"127.0.0.1:{port}"):
                ready.set()
                stop.wait(WAIT)

        thread = threading.Thread(target=restart)
        thread.start()
        try:
            run = launch(instance)
        finally:
            stop.set()
            thread.join()
        assert ready.is_set()
        assert run.status == DagsterRunStatus.STARTING and run.tags["dagster/image"] == IMAGE
        assert sleeps, "the launch should have waited for the service"
        # Digest alone first (refused: UNKNOWN_CONFIG_DIGEST), then the body.
        assert [bool(req.launcher.config_json) for _, req in calls[1:]] == [False, True]


def test_token_tls_and_mtls(kubeconfig, tmp_path, token_file):
    certs = make_certs(tmp_path)
    with runway_serve(kubeconfig, f"--tls-cert={certs['server.crt']}", f"--tls-key={certs['server.key']}",
                      f"--tls-client-ca={certs['ca.crt']}", f"--token-file={token_file}") as addr:
        good = {**k8s_config(kubeconfig), **runway_keys(
            f"localhost:{addr.rsplit(':', 1)[1]}", token_file, runway_tls_ca_file=certs["ca.crt"],
            runway_tls_cert_file=certs["client.crt"], runway_tls_key_file=certs["client.key"])}
        with instance_with("dagster_runway", "RunwayK8sRunLauncher", good) as instance:
            assert launch(instance).tags["dagster/image"] == IMAGE

        wrong = tmp_path / "wrong-token"
        wrong.write_text("not-it")
        with instance_with("dagster_runway", "RunwayK8sRunLauncher", {**good, "runway_token_file": str(wrong)}) as instance:
            run = make_run(instance)
            with pytest.raises(dagster_runway.RunwayError, match="UNAUTHENTICATED: the bearer token"):
                instance.launch_run(run.run_id, workspace=None)

        no_client_cert = {k: v for k, v in good.items() if k not in ("runway_tls_cert_file", "runway_tls_key_file")}
        no_client_cert["runway_retry_seconds"] = 0.5
        with instance_with("dagster_runway", "RunwayK8sRunLauncher", no_client_cert) as instance:
            run = make_run(instance)
            # The server requires a client certificate: the handshake fails.
            with pytest.raises(dagster_runway.RunwayError,
                               match=f"runway serve at localhost:.*LaunchRun of run {run.run_id} failed: UNAVAILABLE"):
                instance.launch_run(run.run_id, workspace=None)


def make_certs(tmp_path) -> dict:
    """A CA, a server certificate for localhost, and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    out = {}

    def write(name, data):
        path = tmp_path / name
        path.write_bytes(data)
        out[name] = str(path)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def pem_key(k):
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = key()
    ca = (x509.CertificateBuilder().subject_name(name("runway test ca")).issuer_name(name("runway test ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    write("ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    for leaf, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                        ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        k = key()
        cert = (x509.CertificateBuilder().subject_name(name(f"runway test {leaf}")).issuer_name(ca.subject)
                .public_key(k.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        write(f"{leaf}.crt", cert.public_bytes(serialization.Encoding.PEM))
        write(f"{leaf}.key", pem_key(k))
    return out


# === the celery variant =====================================================================


@pytest.fixture(scope="module")
def celery_pair(kubeconfig, endpoint, token_file):
    with instance_with("dagster_celery_k8s", "CeleryK8sRunLauncher", celery_config(kubeconfig)) as s:
        config = {**celery_config(kubeconfig), **runway_keys(endpoint, token_file)}
        with instance_with("dagster_runway", "RunwayCeleryK8sRunLauncher", config) as r:
            yield s, r


CELERY_RUN_CONFIG = {"execution": {"config": {
    "job_image": "docker.io/dagster/user-code-example:celery", "job_namespace": NS,
    "env_config_maps": ["dagster-dagster-user-deployments-k8s-example-user-code-1-user-env"],
    "labels": {"from": "executor"}}}}


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


def load_launcher(cls: str, config: dict):
    """The launcher as dagster.yaml's run_launcher section loads it."""
    import yaml
    from dagster._core.launcher import RunLauncher
    from dagster._serdes import ConfigurableClassData

    return ConfigurableClassData("dagster_runway", cls, yaml.safe_dump(config)).rehydrate(
        as_type=RunLauncher)


def test_config_type_is_the_stock_one_plus_the_runway_keys(kubeconfig, endpoint, token_file):
    for stock_cls, runway_cls in ((K8sRunLauncher, dagster_runway.RunwayK8sRunLauncher),
                                  (CeleryK8sRunLauncher, dagster_runway.RunwayCeleryK8sRunLauncher)):
        assert issubclass(runway_cls, stock_cls)
        keys = set(runway_cls.config_type())
        assert keys == set(stock_cls.config_type()) | dagster_runway.RUNWAY_KEYS

    good = {**k8s_config(kubeconfig), **runway_keys(endpoint, token_file)}
    launcher = load_launcher("RunwayK8sRunLauncher", good)
    assert launcher.supports_check_run_worker_health is True
    assert launcher.supports_resume_run is True and launcher.supports_run_worker_crash_recovery
    assert launcher.inst_data.config_dict == good
    settings = launcher.runway_client.settings
    assert (settings.timeout_seconds, settings.retry_seconds) == (30.0, 30.0)
    # Every stock key keeps its meaning.
    assert (launcher.job_namespace, launcher.image_pull_policy, launcher.env_config_maps) == (
        NS, "Always", ["dagster-pipeline-env"])

    with pytest.raises(Exception, match="RunwayHealthMode"):
        load_launcher("RunwayK8sRunLauncher", {**good, "runway_health_mode": "sometimes"})
    with pytest.raises(Exception, match="runway_endpoint"):
        load_launcher("RunwayK8sRunLauncher", k8s_config(kubeconfig))
    with pytest.raises(Exception, match="runway_tls_key_file go together"):
        load_launcher("RunwayK8sRunLauncher", {**good, "runway_tls_cert_file": token_file})


# === the committed stubs ====================================================================


def test_stubs_are_current(tmp_path):
    path = os.path.join(ROOT, "python", "dagster-runway", "tools", "gen_stubs.py")
    spec = importlib.util.spec_from_file_location("gen_stubs", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for fresh in gen.generate(str(tmp_path)):
        name = os.path.basename(fresh)
        with open(fresh) as f, open(os.path.join(gen.STUB_DIR, name)) as g:
            assert f.read() == g.read(), (
                f"dagster_runway/_proto/{name} is stale: run python/dagster-runway/tools/gen_stubs.py")
