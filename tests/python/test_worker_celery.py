"""`runway worker` against the real Celery 5.7 client and the real Dagster
packages: RabbitMQ, Redis and PostgreSQL on loopback, the dev cluster with its
process kubelet. Tasks are published by dagster-celery-k8s's own task object
(`.si(...).apply_async(...)`, as `_submit_task_k8s_job` does); results are read
with `AsyncResult.get()`; event-log rows written by the worker are read back
through a real DagsterInstance.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import pytest
from kubernetes import client, config

from devcluster import RUNWAY_BIN, dev_cluster
from worker_env import BACKEND, BROKER, fresh_database, postgres_storage, wait_http

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_STEP = os.path.join(ROOT, "tests", "python", "steps", "fake_step.py")
NS = "default"


@pytest.fixture(scope="module")
def cluster():
    with dev_cluster("--images", "*,!*.invalid/*") as path:
        api = config.new_client_from_config(config_file=path)
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(NS, {"metadata": {"name": "dagster-instance"},
                                               "data": {"dagster.yaml": "{}"}})
        core.create_namespaced_secret(NS, {"metadata": {"name": "dagster-postgresql-secret"},
                                           "stringData": {"postgresql-password": "unused"}})
        yield path, api
        api.close()


@pytest.fixture(scope="module")
def instance():
    """A DagsterInstance on a fresh PostgreSQL database."""
    from dagster import DagsterInstance

    with fresh_database("runway_wk") as db:
        home = tempfile.mkdtemp(prefix="runway-dh-")
        with open(os.path.join(home, "dagster.yaml"), "w") as f:
            f.write(postgres_storage(db) + "telemetry:\n  enabled: false\n")
        inst = DagsterInstance.from_config(home)
        yield inst
        inst.dispose()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def queue():
    return f"rw-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def worker(cluster, queue):
    kubeconfig, _ = cluster
    log = tempfile.NamedTemporaryFile(prefix="runway-worker-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [RUNWAY_BIN, "worker", "-Q", queue, "--broker-url", BROKER, "--result-backend", BACKEND,
         "--kubeconfig", kubeconfig, "--namespace", NS, "--http-listen", "127.0.0.1:0",
         "--hostname", f"runway-test@{queue}", "--log-format", "text", "--shutdown-grace-secs", "5"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    line = proc.stdout.readline()
    assert "consuming" in line, line + open(log.name).read()
    http = line.rsplit("http://", 1)[1].strip().rstrip(")")
    wait_http(f"http://{http}/ready")
    yield {"proc": proc, "http": http, "log": log.name}
    proc.terminate()
    proc.communicate(timeout=30)
    text = open(log.name).read()
    os.unlink(log.name)
    assert proc.returncode == 0, text[-3000:]


@pytest.fixture(scope="module")
def celery_task(queue):
    from dagster_celery.make_app import make_app
    from dagster_celery_k8s.executor import create_k8s_job_task

    app = make_app({"broker": BROKER, "backend": BACKEND, "include": [], "config_source": None,
                    "retries": None})
    return create_k8s_job_task(app)


def step_kwargs(instance, kubeconfig, step="my_op", behaviour="succeed",
                image="busybox:1.36", extra_env=(), run=None):
    """A STARTED run (a new one unless given) and the kwargs `_submit_task_k8s_job`
    would send for one of its steps."""
    from dagster._core.code_pointer import FileCodePointer
    from dagster._core.execution.plan.state import KnownExecutionState
    from dagster._core.execution.retries import RetryMode
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import pack_value
    from dagster_k8s.job import DagsterK8sJobConfig

    if run is None:
        run = create_run_for_test(instance, job_name="my_job", status=DagsterRunStatus.STARTED)
    origin = JobPythonOrigin(
        "my_job",
        RepositoryPythonOrigin(
            executable_path=sys.executable,
            code_pointer=FileCodePointer(python_file=FAKE_STEP, fn_name="unused"),
            entry_point=[sys.executable, FAKE_STEP],
        ),
    )
    args = ExecuteStepArgs(
        job_origin=origin, run_id=run.run_id, step_keys_to_execute=[step],
        instance_ref=instance.get_ref(), retry_mode=RetryMode.DISABLED,
        known_state=KnownExecutionState(), should_verify_step=True,
        print_serialized_events=True,
    )
    job_config = DagsterK8sJobConfig(
        job_image=image, dagster_home="/opt/dagster/dagster_home",
        instance_config_map="dagster-instance",
        env_vars=[f"STEP_BEHAVIOUR={behaviour}", *extra_env],
    )
    kwargs = dict(
        execute_step_args_packed=pack_value(args),
        job_config_dict=job_config._asdict(),
        job_namespace=NS,
        load_incluster_config=False,
        job_wait_timeout=120.0,
        per_step_k8s_config={},
        user_defined_k8s_config_dict={},
        kubeconfig_file=kubeconfig,
    )
    return run, kwargs


def submit(celery_task, instance, queue, kubeconfig, priority=5, **kw):
    """Publishes one step as `_submit_task_k8s_job` does."""
    run, kwargs = step_kwargs(instance, kubeconfig, **kw)
    result = celery_task.si(**kwargs).apply_async(
        priority=priority, queue=queue, routing_key=f"{queue}.execute_step_k8s_job")
    return run, result


def run_jobs(api, run_id, present, timeout=30.0):
    """The run's Jobs, once there are some (`present`) or none, or at the timeout."""
    batch = client.BatchV1Api(api)
    deadline = time.time() + timeout
    while True:
        jobs = batch.list_namespaced_job(NS, label_selector=f"dagster/run-id={run_id}").items
        if bool(jobs) == present or time.time() > deadline:
            return jobs
        time.sleep(0.1)


def events_of(serialized):
    from dagster._core.events import DagsterEvent
    from dagster._serdes import deserialize_value

    return [deserialize_value(s, DagsterEvent) for s in serialized]


def engine_messages(instance, run_id):
    return [r.dagster_event.message for r in instance.all_logs(run_id) if r.is_dagster_event
            and r.dagster_event.event_type_value == "ENGINE_EVENT"]


def test_celery_client_gets_the_step_events(cluster, instance, queue, worker, celery_task):
    kubeconfig, api = cluster
    run, result = submit(celery_task, instance, queue, kubeconfig)
    events = events_of(result.get(timeout=90))
    types = [e.event_type_value for e in events]
    assert types == ["ENGINE_EVENT", "ENGINE_EVENT", "STEP_START", "STEP_SUCCESS"], types
    job_name = events[0].event_specific_data.metadata["Kubernetes Job name"].value
    assert events[0].message == (
        f'[CeleryK8sJobExecutor] Executing step "my_op" in Kubernetes job {job_name}.')
    assert events[1].message == "[CeleryK8sJobExecutor] Retrieving logs from Kubernetes Job pods"
    # The engine events are in the run's event log, as the Python task writes them.
    messages = engine_messages(instance, run.run_id)
    assert "[CeleryK8sJobExecutor] Task for step my_op picked up by Celery" in messages
    assert events[0].message in messages
    picked = next(r for r in instance.all_logs(run.run_id) if r.is_dagster_event
                  and "picked up" in r.dagster_event.message)
    md = picked.dagster_event.event_specific_data.metadata
    assert md["Celery worker name"].value == f"runway-test@{queue}"
    # The step Job carries the run record's labels and Runway's.
    job = client.BatchV1Api(api).read_namespaced_job(job_name, NS)
    labels = job.metadata.labels
    assert labels["dagster/run-id"] == run.run_id
    assert labels["dagster/op"] == "my_op"
    assert labels["app.kubernetes.io/component"] == "step_worker"
    assert labels["app.kubernetes.io/managed-by"] == "runway"


def test_failed_step_pod_gives_a_step_failure(cluster, instance, queue, worker, celery_task):
    from dagster._core.events import DagsterEventType

    kubeconfig, _ = cluster
    run, result = submit(celery_task, instance, queue, kubeconfig, step="bad_op",
                         behaviour="crash")
    events = events_of(result.get(timeout=90))
    failures = [e for e in events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1, [e.event_type_value for e in events]
    f = failures[0]
    assert f.step_key == "bad_op"
    assert f.event_specific_data.user_failure_data.label == "K8sError"
    assert "Encountered failed job pods" in f.event_specific_data.error.message
    # Written to the event log too, and readable by Dagster.
    stored = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_FAILURE)
    assert len(stored.records) == 1
    assert stored.records[0].event_log_entry.user_message.startswith(
        "Encountered failed job pods")


def test_unpullable_image_fails_within_seconds(cluster, instance, queue, worker, celery_task):
    kubeconfig, api = cluster
    started = time.time()
    run, result = submit(celery_task, instance, queue, kubeconfig, step="pull_op",
                         image="registry.invalid/nope:1")
    events = events_of(result.get(timeout=60))
    elapsed = time.time() - started
    failure = next(e for e in events if e.event_type_value == "STEP_FAILURE")
    assert "ErrImagePull" in failure.event_specific_data.error.message or \
        "ImagePullBackOff" in failure.event_specific_data.error.message
    assert elapsed < 30, elapsed
    # The retrying Job is removed once the failure is recorded.
    assert not run_jobs(api, run.run_id, present=False, timeout=10)


def test_run_canceled_deletes_the_step_job(cluster, instance, queue, worker, celery_task):
    kubeconfig, api = cluster
    run, result = submit(celery_task, instance, queue, kubeconfig, step="long_op",
                         behaviour="sleep")
    assert run_jobs(api, run.run_id, present=True), "the step Job was never created"
    instance.report_run_canceling(run)
    assert result.get(timeout=30) == []
    assert any("Terminating Kubernetes Job because dagster run status is not STARTED" in m
               for m in engine_messages(instance, run.run_id))
    assert not run_jobs(api, run.run_id, present=False)


def test_revoke_deletes_the_job_and_stores_revoked(cluster, instance, queue, worker, celery_task):
    from celery.exceptions import TaskRevokedError

    kubeconfig, api = cluster
    run, result = submit(celery_task, instance, queue, kubeconfig, step="revoked_op",
                         behaviour="sleep")
    assert run_jobs(api, run.run_id, present=True)
    result.revoke()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=30)
    assert result.state == "REVOKED"
    assert not run_jobs(api, run.run_id, present=False)


def test_refused_messages_get_a_failure_and_the_queue_keeps_flowing(
        cluster, instance, queue, worker, celery_task):
    from celery.result import AsyncResult
    from kombu import Connection, Exchange, Producer

    kubeconfig, _ = cluster
    bad = {
        "pickle": ("application/x-python-serialize", "binary", b"\x80\x04N."),
        "truncated": ("application/json", "utf-8", b'[[], {"execute_step_args_packed": {'),
        "not-a-list": ("application/json", "utf-8", b'{"a": 1}'),
    }
    ids = {}
    with Connection(BROKER) as conn:
        producer = Producer(conn)
        for name, (ctype, enc, body) in bad.items():
            tid = str(uuid.uuid4())
            ids[name] = tid
            producer.publish(body, exchange="", routing_key=queue, content_type=ctype,
                             content_encoding=enc, correlation_id=tid,
                             headers={"lang": "py", "task": "execute_step_k8s_job", "id": tid,
                                      "root_id": tid, "parent_id": None, "group": None},
                             delivery_mode=2)
        # No id at all: dropped, not redelivered forever.
        producer.publish(b"garbage", exchange="", routing_key=queue,
                         content_type="application/json", content_encoding="utf-8")
    for name, tid in ids.items():
        r = AsyncResult(tid, app=celery_task.app)
        with pytest.raises(Exception) as exc:
            r.get(timeout=30)
        assert r.state == "FAILURE", name
        if name == "pickle":
            assert type(exc.value).__name__ == "ContentDisallowed"
            assert "application/json" in str(exc.value)
    # The queue still flows.
    run, result = submit(celery_task, instance, queue, kubeconfig, step="after_bad")
    assert [e.event_type_value for e in events_of(result.get(timeout=90))][-1] == "STEP_SUCCESS"
    with urllib.request.urlopen(f"http://{worker['http']}/metrics") as r:
        metrics = r.read().decode()
    assert "runway_worker_tasks_rejected_total" in metrics


@pytest.fixture(scope="module")
def serve(cluster):
    """`runway serve` with step publishing: SubmitStep and WatchStep."""
    kubeconfig, _ = cluster
    log = tempfile.NamedTemporaryFile(prefix="runway-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [RUNWAY_BIN, "serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
         "--kubeconfig", kubeconfig, "--namespace", NS, "--broker-url", BROKER,
         "--result-backend", BACKEND, "--log-format", "text"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    line = proc.stdout.readline()
    assert "listening on" in line, line + open(log.name).read()
    grpc = line.split("listening on ", 1)[1].split(" ", 1)[0]
    yield f"http://{grpc}"
    proc.terminate()
    proc.communicate(timeout=30)
    os.unlink(log.name)
    assert proc.returncode == 0


def runway_client(endpoint, *args):
    out = subprocess.run([RUNWAY_BIN, "client", "--endpoint", endpoint, *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_runway_publishes_and_a_python_celery_worker_runs_it(cluster, instance, serve,
                                                              celery_task):
    """SubmitStep publishes what Dagster would: dagster-celery-k8s's own task,
    in a real `celery worker`, consumes it, and WatchStep reads its result."""
    from celery.result import AsyncResult

    kubeconfig, _ = cluster
    queue = f"rw-py-{uuid.uuid4().hex[:8]}"
    conf = tempfile.mkdtemp(prefix="runway-celery-")
    with open(os.path.join(conf, "dagster_celery_config.py"), "w") as f:
        f.write(f"broker_url = {BROKER!r}\nresult_backend = {BACKEND!r}\n")
    env = dict(os.environ, PYTHONPATH=conf)
    log = tempfile.NamedTemporaryFile(prefix="celery-worker-", suffix=".log", delete=False)
    celery_bin = os.path.join(os.path.dirname(sys.executable), "celery")
    proc = subprocess.Popen(
        [celery_bin, "-A", "dagster_celery_k8s.app", "worker", "-Q", queue, "--pool", "solo",
         "--loglevel", "INFO", "-n", f"py-{queue}@%h", "--without-gossip", "--without-mingle"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        run, kwargs = step_kwargs(instance, kubeconfig, step="py_op")
        path = os.path.join(conf, "kwargs.json")
        with open(path, "w") as f:
            json.dump(kwargs, f)
        [submitted] = runway_client(serve, "submit-step", "--kwargs-file", path,
                                    "--queue", queue, "--priority", "7")
        assert submitted["queue"] == queue and submitted["priority"] == 7
        states = runway_client(serve, "watch-step", "--task-id", submitted["task_id"])
        assert states[0]["state"] in ("PENDING", "SUCCESS")
        final = states[-1]
        assert final["state"] == "SUCCESS", (final, open(log.name).read()[-4000:])
        types = [e.event_type_value for e in events_of(final["events"])]
        assert types[-2:] == ["STEP_START", "STEP_SUCCESS"], types
        # The Python client reads the same result.
        assert AsyncResult(submitted["task_id"], app=celery_task.app).get(timeout=10) == \
            final["events"]
        # Written by the Python task into the run's event log.
        assert "[CeleryK8sJobExecutor] Task for step py_op picked up by Celery" in \
            engine_messages(instance, run.run_id)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(conf, ignore_errors=True)
        from kombu import Connection
        with Connection(BROKER) as c:
            c.default_channel.queue_delete(queue)


def test_task_events_show_the_worker_and_its_tasks_as_flower_sees_them(
        cluster, instance, celery_task):
    """With --task-events, celery's own event receiver and State (what Flower
    runs on) see the Runway worker online and each task through to SUCCESS."""
    import threading

    from celery.events.state import State

    kubeconfig, _ = cluster
    queue = f"rw-ev-{uuid.uuid4().hex[:8]}"
    app = celery_task.app
    state = State()
    seen = []
    ready = threading.Event()

    def on_event(event):
        seen.append(event["type"])
        state.event(event)

    def capture():
        with app.connection() as conn:
            recv = app.events.Receiver(conn, handlers={"*": on_event})
            holder["recv"] = recv
            ready.set()
            recv.capture(limit=None, timeout=None, wakeup=False)

    holder = {}
    t = threading.Thread(target=capture, daemon=True)
    t.start()
    assert ready.wait(10)
    time.sleep(0.5)  # the receiver's queue is bound
    log = tempfile.NamedTemporaryFile(prefix="runway-ev-", suffix=".log", delete=False)
    name = f"runway-ev@{queue}"
    proc = subprocess.Popen(
        [RUNWAY_BIN, "worker", "-Q", queue, "--broker-url", BROKER, "--result-backend", BACKEND,
         "--kubeconfig", kubeconfig, "--namespace", NS, "--http-listen", "127.0.0.1:0",
         "--hostname", name, "--log-format", "text", "--task-events"],
        stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert "consuming" in proc.stdout.readline()
        run, result = submit(celery_task, instance, queue, kubeconfig, step="ev_op")
        result.get(timeout=90)
        deadline = time.time() + 15
        while time.time() < deadline:
            task = state.tasks.get(result.id)
            if task is not None and task.state == "SUCCESS" and "worker-heartbeat" in seen:
                break
            time.sleep(0.2)
        task = state.tasks.get(result.id)
        assert task is not None, seen
        assert task.state == "SUCCESS", (task.state, seen)
        assert task.name == "execute_step_k8s_job"
        assert task.worker.hostname == name
        assert task.runtime is not None and task.runtime > 0
        assert "ev_op" in task.kwargs
        assert state.workers[name].alive
        assert {"worker-online", "worker-heartbeat", "task-received", "task-started",
                "task-succeeded"} <= set(seen)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        holder["recv"].should_stop = True
        os.unlink(log.name)
        from kombu import Connection
        with Connection(BROKER) as c:
            c.default_channel.queue_delete(queue)
    deadline = time.time() + 10
    while time.time() < deadline and "worker-offline" not in seen:
        time.sleep(0.2)
    assert "worker-offline" in seen
    assert proc.returncode == 0


def test_a_step_longer_than_the_ack_deadline_is_parked_not_lost(cluster, instance, celery_task):
    """RabbitMQ closes a channel whose delivery stays unacknowledged past its
    consumer_timeout. A worker with --ack-deadline-secs 2 parks a copy of the
    running step's message every 2 s and acknowledges the held delivery; the
    copies come back through the dead-letter route, join the running step,
    and after it ends are acknowledged against its result. One result, no
    message left behind."""
    import urllib.request

    from kombu import Connection

    kubeconfig, _ = cluster
    queue = f"rw-dl-{uuid.uuid4().hex[:8]}"
    log = tempfile.NamedTemporaryFile(prefix="runway-dl-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [RUNWAY_BIN, "worker", "-Q", queue, "--broker-url", BROKER, "--result-backend", BACKEND,
         "--kubeconfig", kubeconfig, "--namespace", NS, "--http-listen", "127.0.0.1:0",
         "--hostname", f"runway-dl@{queue}", "--log-format", "text", "--ack-deadline-secs", "2"],
        stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = proc.stdout.readline()
        assert "consuming" in line, line
        http = line.rsplit("http://", 1)[1].strip().rstrip(")")
        run, result = submit(celery_task, instance, queue, kubeconfig, step="long_op",
                             behaviour="sleep", extra_env=("STEP_SLEEP=7",))
        events = events_of(result.get(timeout=90))
        assert [e.event_type_value for e in events][-1] == "STEP_SUCCESS"

        def metric(name):
            with urllib.request.urlopen(f"http://{http}/metrics") as r:
                text = r.read().decode()
            return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                       if l.startswith(name))

        assert metric("runway_worker_tasks_parked_total") >= 2
        # Every copy comes back within a deadline and is answered by the result.
        deadline = time.time() + 15
        with Connection(BROKER) as c:
            ch = c.default_channel
            while time.time() < deadline:
                main = ch.queue_declare(queue, passive=True).message_count
                parked = ch.queue_declare(f"runway.parked.{queue}", passive=True).message_count
                if main == 0 and parked == 0 and metric("runway_worker_tasks_deduplicated_total") >= 1:
                    break
                time.sleep(0.5)
            assert (main, parked) == (0, 0)
        assert metric('runway_worker_tasks_total{status="SUCCESS"}') == 1
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        os.unlink(log.name)
        with Connection(BROKER) as c:
            c.default_channel.queue_delete(queue)
            c.default_channel.queue_delete(f"runway.parked.{queue}")
    assert proc.returncode == 0


def test_rpc_backend_replies_to_the_publisher(cluster, instance):
    """With `rpc://` (dagster-celery's default backend) the result goes to the
    publishing client's reply queue, correlated by task id: the real Celery
    client's `AsyncResult.get()` reads it."""
    from dagster_celery.make_app import make_app
    from dagster_celery_k8s.executor import create_k8s_job_task
    from kombu import Connection

    kubeconfig, _ = cluster
    queue = f"rw-rpc-{uuid.uuid4().hex[:8]}"
    log = tempfile.NamedTemporaryFile(prefix="runway-rpc-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [RUNWAY_BIN, "worker", "-Q", queue, "--broker-url", BROKER, "--result-backend", "rpc://",
         "--kubeconfig", kubeconfig, "--namespace", NS, "--http-listen", "127.0.0.1:0",
         "--hostname", f"runway-rpc@{queue}", "--log-format", "text"],
        stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert "consuming" in proc.stdout.readline()
        app = make_app({"broker": BROKER, "backend": "rpc://", "include": [],
                        "config_source": None, "retries": None})
        task = create_k8s_job_task(app)
        run, kwargs = step_kwargs(instance, kubeconfig, step="rpc_op")
        result = task.si(**kwargs).apply_async(priority=5, queue=queue,
                                               routing_key=f"{queue}.execute_step_k8s_job")
        events = events_of(result.get(timeout=90))
        assert [e.event_type_value for e in events][-2:] == ["STEP_START", "STEP_SUCCESS"]
        assert result.state == "SUCCESS"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        os.unlink(log.name)
        with Connection(BROKER) as c:
            c.default_channel.queue_delete(queue)
    assert proc.returncode == 0
