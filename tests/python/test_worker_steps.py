"""`runway serve`'s SubmitStep and WatchStep, Celery events, parking and the
`rpc://` backend, against the real Celery 5.7 client and the real Dagster
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
from kubernetes import client

from devcluster import RUNWAY_BIN
from worker_env import BACKEND, BROKER
from worker_tasks import NS, engine_messages, events_of, step_kwargs, submit
from worker_tasks import celery_task, cluster, instance  # noqa: F401 (fixtures)


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
