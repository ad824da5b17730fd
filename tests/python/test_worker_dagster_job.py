"""A real Dagster job under `celery_k8s_job_executor`, run end to end with
Runway workers only (no Python Celery worker).

The runs are created as `dagster job launch` does (an in-process code location
of tests/python/steps/dagster_job.py, `instance.submit_run`) on an instance
whose run launcher is the stock `CeleryK8sRunLauncher` pointed at the dev
cluster. Its run pod runs the real `dagster api execute_run` through the
process kubelet; the executor publishes each step to RabbitMQ; two
`runway worker`s (one on the default queue, one on the queue an op's
`dagster-celery/queue` tag names) create the step Jobs, whose pods run the
real `dagster api execute_step`, and return the events through Redis.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from kubernetes import client, config

from devcluster import RUNWAY_BIN, dev_cluster
from worker_env import BACKEND, BROKER, fresh_database, postgres_storage, wait_http

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOB_FILE = os.path.join(ROOT, "tests", "python", "steps", "dagster_job.py")
NS = "default"
PG_PASSWORD = "runway-test-pw"  # the server trusts loopback; the value only travels
RUN_TIMEOUT = 240.0  # both runs took 85-130 s on a loaded 2-CPU machine
OK_OPS = {"source", "double", "square", "total"}


@pytest.fixture(scope="module")
def queues():
    """The default queue (every op without a queue tag) and the tagged op's queue."""
    from kombu import Connection

    q1, q2 = f"rw-{uuid.uuid4().hex[:8]}", f"rw-{uuid.uuid4().hex[:8]}"
    yield q1, q2
    with Connection(BROKER) as conn:
        for q in (q1, q2):
            conn.default_channel.queue_delete(q)


@pytest.fixture(scope="module")
def env(queues):
    """The test's own environment: the tagged op's queue (read when the job file
    is loaded here) and the password the instance config names. The venv's bin
    goes first on the PATH the dev cluster hands its pods, as an image would have
    `dagster` on its PATH: the code location's entry point is `["dagster"]`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        mp.setenv("RUNWAY_TEST_Q2", queues[1])
        mp.setenv("DAGSTER_PG_PASSWORD", PG_PASSWORD)
        yield


@pytest.fixture(scope="module")
def cluster(queues, env):
    with dev_cluster() as path:
        api = config.new_client_from_config(config_file=path)
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(NS, {"metadata": {"name": "dagster-instance"},
                                               "data": {"dagster.yaml": "{}"}})
        core.create_namespaced_config_map(NS, {"metadata": {"name": "runway-test-env"},
                                               "data": {"RUNWAY_TEST_Q2": queues[1]}})
        core.create_namespaced_secret(NS, {"metadata": {"name": "dagster-postgresql-secret"},
                                           "stringData": {"postgresql-password": PG_PASSWORD}})
        yield path, api
        api.close()


@pytest.fixture(scope="module")
def instance(cluster, env):
    """A DagsterInstance on a fresh PostgreSQL database whose run launcher is the
    stock CeleryK8sRunLauncher on the dev cluster. Its DAGSTER_HOME is a local
    folder: the pods are local processes and read the same dagster.yaml."""
    from dagster import DagsterInstance

    kubeconfig, _ = cluster
    with fresh_database("runway_dj") as db:
        home = tempfile.mkdtemp(prefix="runway-dh-")
        with open(os.path.join(home, "dagster.yaml"), "w") as f:
            f.write(postgres_storage(db, password="{env: DAGSTER_PG_PASSWORD}") + f"""\
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
run_launcher:
  module: dagster_celery_k8s
  class: CeleryK8sRunLauncher
  config:
    instance_config_map: dagster-instance
    postgres_password_secret: dagster-postgresql-secret
    dagster_home: {home}
    load_incluster_config: false
    kubeconfig_file: {kubeconfig}
    job_namespace: {NS}
    broker: {BROKER}
    backend: {BACKEND}
    env_config_maps: [runway-test-env]
telemetry:
  enabled: false
""")
        inst = DagsterInstance.from_config(home)
        yield inst
        inst.dispose()
        shutil.rmtree(home, ignore_errors=True)


def _start_worker(kubeconfig, queue, hostname):
    log = tempfile.NamedTemporaryFile(prefix="runway-worker-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [RUNWAY_BIN, "worker", "-Q", queue, "--broker-url", BROKER, "--result-backend", BACKEND,
         "--kubeconfig", kubeconfig, "--namespace", NS, "--http-listen", "127.0.0.1:0",
         "--hostname", hostname, "--log-format", "text", "--shutdown-grace-secs", "5"],
        stdout=subprocess.PIPE, stderr=log, text=True,
        env=dict(os.environ, DAGSTER_PG_PASSWORD=PG_PASSWORD),
    )
    line = proc.stdout.readline()
    assert "consuming" in line, line + open(log.name).read()
    http = line.rsplit("http://", 1)[1].strip().rstrip(")")
    wait_http(f"http://{http}/ready")
    return {"proc": proc, "log": log.name, "hostname": hostname}


@pytest.fixture(scope="module")
def workers(cluster, queues):
    """`runway worker -Q q1` and `runway worker -Q q2`, nothing else."""
    kubeconfig, _ = cluster
    started = {}
    try:
        for name, q in zip(("main", "q2"), queues):
            started[name] = _start_worker(kubeconfig, q, f"runway-{name}@{q}")
        yield started
    finally:
        codes = {}
        for name, w in started.items():
            w["proc"].terminate()
            w["proc"].communicate(timeout=30)
            codes[name] = (w["proc"].returncode, open(w["log"]).read()[-3000:])
            os.unlink(w["log"])
        for name, (code, text) in codes.items():
            assert code == 0, f"worker {name} exited {code}:\n{text}"


def launch(instance, kubeconfig, job_name, default_queue):
    """Creates and submits a run as `dagster job launch` does, with the executor's
    run config; the DefaultRunCoordinator hands it straight to the CeleryK8sRunLauncher."""
    from dagster._cli.job import _create_run
    from dagster._core.test_utils import in_process_test_workspace
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    run_config = {"execution": {"config": {
        "job_image": "runway-test/dagster-job:1",
        "job_namespace": NS,
        "load_incluster_config": False,
        "kubeconfig_file": kubeconfig,
        # Every op without a queue tag goes here rather than to "dagster".
        "config_source": {"task_default_queue": default_queue},
        "job_wait_timeout": 180.0,
    }}}
    origin = LoadableTargetOrigin(executable_path=sys.executable, python_file=JOB_FILE,
                                  working_directory=os.path.dirname(JOB_FILE))
    with in_process_test_workspace(instance, origin) as workspace:
        [entry] = workspace.get_code_location_entries().values()
        location = entry.code_location
        assert location, entry.load_error
        [repo] = location.get_repositories().values()
        remote_job = repo.get_full_job(job_name)
        run = _create_run(instance=instance, code_location=location, remote_repo=repo,
                          remote_job=remote_job, run_config=run_config, tags={},
                          op_selection=None, run_id=None)
        instance.submit_run(run.run_id, workspace)
    return run.run_id


def step_events(instance, run_id):
    """{step key: [event types]} from the run's event log."""
    out = {}
    for r in instance.all_logs(run_id):
        if r.is_dagster_event and r.step_key:
            out.setdefault(r.step_key, []).append(r.dagster_event.event_type_value)
    return out


def engine_messages(instance, run_id):
    return [r.dagster_event.message for r in instance.all_logs(run_id) if r.is_dagster_event
            and r.dagster_event.event_type_value == "ENGINE_EVENT"]


def picked_up_by(instance, run_id):
    """{step key: Celery worker name} from the tasks' "picked up" engine events."""
    out = {}
    for r in instance.all_logs(run_id):
        ev = r.dagster_event if r.is_dagster_event else None
        if ev and ev.event_type_value == "ENGINE_EVENT" and "picked up by Celery" in ev.message:
            md = ev.event_specific_data.metadata
            out[r.step_key] = md["Celery worker name"].value
    return out


def debug_dump(instance, api, run_ids, workers) -> str:
    lines = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        lines.append(f"=== run {run_id} {run.job_name} {run.status}")
        for r in instance.all_logs(run_id):
            ev = r.dagster_event if r.is_dagster_event else None
            kind = ev.event_type_value if ev else "LOG"
            msg = (ev.message if ev and ev.message else r.user_message) or ""
            lines.append(f"  {kind} {r.step_key or ''} {msg[:600]}")
            err = r.error_info or (getattr(ev.event_specific_data, "error", None) if ev else None)
            if err is not None:
                lines.append("    " + err.to_string()[:3000].replace("\n", "\n    "))
    core = client.CoreV1Api(api)
    for pod in core.list_namespaced_pod(NS).items:
        lines.append(f"=== pod {pod.metadata.name} {pod.status.phase} "
                     f"{pod.metadata.labels.get('dagster/op', '')}")
        try:
            lines.append(core.read_namespaced_pod_log(pod.metadata.name, NS)[-4000:])
        except Exception as e:  # noqa: BLE001 - diagnostics only
            lines.append(f"(no log: {e})")
    for name, w in workers.items():
        lines.append(f"=== worker {name}")
        lines.append(open(w["log"]).read()[-4000:])
    return "\n".join(lines)


def wait_finished(instance, api, run_ids, workers, timeout=RUN_TIMEOUT):
    """The runs once finished; fails early when a run worker Job fails, as
    nothing else would end a run whose run pod died before starting it."""
    batch = client.BatchV1Api(api)
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = [instance.get_run_by_id(r) for r in run_ids]
        if all(r.is_finished for r in runs):
            return runs
        failed = [j.metadata.name for j in batch.list_namespaced_job(
            NS, label_selector="app.kubernetes.io/component=run_worker").items if j.status.failed]
        if failed:
            raise AssertionError(f"run worker Jobs failed: {failed}\n"
                                 + debug_dump(instance, api, run_ids, workers))
        time.sleep(0.5)
    raise AssertionError("runs did not finish in time:\n" + debug_dump(instance, api, run_ids,
                                                                          workers))


@pytest.fixture(scope="module")
def finished(cluster, instance, queues, workers):
    """Both runs, launched together and waited for."""
    kubeconfig, api = cluster
    started = time.time()
    ok = launch(instance, kubeconfig, "runway_ok", queues[0])
    fail = launch(instance, kubeconfig, "runway_fail", queues[0])
    runs = wait_finished(instance, api, [ok, fail], workers)
    print(f"both runs finished in {time.time() - started:.1f}s")
    return {"ok": runs[0], "fail": runs[1],
            "debug": lambda: debug_dump(instance, api, [ok, fail], workers)}


def step_jobs(api, run_id):
    batch = client.BatchV1Api(api)
    return batch.list_namespaced_job(
        NS, label_selector=f"dagster/run-id={run_id},app.kubernetes.io/component=step_worker").items


def test_the_job_without_the_failing_op_succeeds(cluster, instance, finished):
    from dagster._core.storage.dagster_run import DagsterRunStatus

    run = finished["ok"]
    assert run.status == DagsterRunStatus.SUCCESS, finished["debug"]()
    events = step_events(instance, run.run_id)
    assert set(events) == OK_OPS, events
    for op, types in events.items():
        assert types.count("STEP_START") == 1, (op, types)
        assert types.count("STEP_SUCCESS") == 1, (op, types)
        assert "STEP_FAILURE" not in types, (op, types)
    # `total` checked its inputs, so the outputs crossed the step pods.
    assert "STEP_OUTPUT" in events["total"]


def test_the_failing_op_fails_the_run_and_stops_its_downstream(cluster, instance, finished):
    from dagster._core.events import DagsterEventType
    from dagster._core.storage.dagster_run import DagsterRunStatus

    run = finished["fail"]
    assert run.status == DagsterRunStatus.FAILURE, finished["debug"]()
    events = step_events(instance, run.run_id)
    for op in OK_OPS:
        assert events[op].count("STEP_SUCCESS") == 1, (op, events[op])
        assert "STEP_FAILURE" not in events[op], (op, events[op])
    assert events["explode"].count("STEP_START") == 1, events["explode"]
    assert events["explode"].count("STEP_FAILURE") == 1, events["explode"]
    assert "STEP_SUCCESS" not in events["explode"]
    # The failure is the op's own exception, raised in the step pod.
    [failure] = instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.STEP_FAILURE).records
    error = failure.event_log_entry.dagster_event.event_specific_data.error
    assert "explode was given 3 and refuses it" in error.to_string(), error.to_string()
    # Downstream of it: never started, never submitted.
    assert not {"STEP_START", "STEP_SUCCESS", "STEP_FAILURE"} & set(
        events.get("after_explode", [])), events.get("after_explode")
    messages = engine_messages(instance, run.run_id)
    assert not any('step "after_explode"' in m for m in messages if "Submitting" in m)
    assert "Dependencies for step after_explode failed: ['explode']. Not executing." in [
        r.user_message for r in instance.all_logs(run.run_id)], finished["debug"]()


def test_the_queue_tag_routes_to_the_second_worker(cluster, instance, queues, workers, finished):
    q1, q2 = queues
    for key in ("ok", "fail"):
        run_id = finished[key].run_id
        messages = engine_messages(instance, run_id)
        assert f'Submitting celery task for step "square" to queue "{q2}".' in messages
        for op in OK_OPS - {"square"} | ({"explode"} if key == "fail" else set()):
            assert f'Submitting celery task for step "{op}" to queue "{q1}".' in messages, op
        # Each task was consumed by the worker of its queue only.
        by = picked_up_by(instance, run_id)
        expected = {op: workers["main"]["hostname"] for op in OK_OPS}
        expected["square"] = workers["q2"]["hostname"]
        if key == "fail":
            expected["explode"] = workers["main"]["hostname"]
        assert by == expected, (key, by)
    # Nothing is left in either queue.
    from kombu import Connection
    with Connection(BROKER) as conn:
        for q in queues:
            _, count, consumers = conn.default_channel.queue_declare(q, passive=True)
            assert count == 0 and consumers == 1, (q, count, consumers)


def test_step_jobs_carry_dagster_and_runway_labels(cluster, instance, finished):
    _, api = cluster
    for key, ops in (("ok", OK_OPS), ("fail", OK_OPS | {"explode"})):
        run = finished[key]
        jobs = step_jobs(api, run.run_id)
        by_op = {j.metadata.labels["dagster/op"]: j for j in jobs}
        assert set(by_op) == ops, (key, sorted(by_op))
        assert len(jobs) == len(ops)
        for op, job in by_op.items():
            labels = job.metadata.labels
            assert labels["dagster/run-id"] == run.run_id
            assert labels["dagster/job"] == run.job_name
            assert labels["app.kubernetes.io/component"] == "step_worker"
            assert labels["app.kubernetes.io/managed-by"] == "runway"
            assert job.status.succeeded == 1, (op, job.status)
            [ctr] = job.spec.template.spec.containers
            assert ctr.image == "runway-test/dagster-job:1"
            assert ctr.args[:4] == ["dagster", "api", "execute_step",
                                    "--compressed-input-json"], ctr.args
            env = {e.name: e.value for e in ctr.env}
            assert env["DAGSTER_RUN_STEP_KEY"] == op
            assert env["DAGSTER_RUN_JOB_NAME"] == run.job_name
            assert [s.config_map_ref.name for s in ctr.env_from if s.config_map_ref] == \
                ["runway-test-env"]
        # The run worker Job is Dagster's launcher's, not Runway's.
        batch = client.BatchV1Api(api)
        [run_job] = batch.list_namespaced_job(
            NS, label_selector=f"dagster/run-id={run.run_id},"
                               "app.kubernetes.io/component=run_worker").items
        assert "app.kubernetes.io/managed-by" not in run_job.metadata.labels
