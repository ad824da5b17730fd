"""Broker and result-backend restarts in the middle of 1,000 tasks.

Two `runway worker`s share one queue on the loopback RabbitMQ, which is
restarted (`rabbitmqctl stop_app` / `start_app`: durable queues and persistent
messages survive, every connection drops) while the tasks run. Results go to a
Redis of the test's own with an append-only file, which is shut down and
started again on the same port (the machine's Redis keeps nothing on disk, so a
restart of it would erase the very results being counted). Steps run on the
dev cluster's simulated kubelet; each pod prints a real STEP_SUCCESS event.

Every task must end with exactly one SUCCESS result holding its own step's
event, and every step Job must exist exactly once, never recreated.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
import redis
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from devcluster import RUNWAY_BIN, dev_cluster
from worker_env import BROKER
from worker_tasks import NS, events_of, step_kwargs
from worker_tasks import instance  # noqa: F401 (fixture)
from waits import free_port

TASKS = 1000


class OwnRedis:
    """A redis-server that persists to an append-only file, so it can be restarted."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="runway-redis-")
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if redis.Redis(port=self.port).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def restart(self):
        try:
            redis.Redis(port=self.port).shutdown(save=False)
        except redis.ConnectionError:
            pass  # shutdown closes the connection it came on
        self.proc.wait(timeout=10)
        time.sleep(1.0)
        self.start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def rabbitmqctl(*args):
    out = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="module")
def backend():
    r = OwnRedis()
    r.start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def cluster():
    with dev_cluster("--kubelet", "simulated") as path:
        api = config.new_client_from_config(config_file=path)
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(NS, {"metadata": {"name": "dagster-instance"},
                                               "data": {"dagster.yaml": "{}"}})
        yield path, api
        api.close()


def ready(meta) -> bool:
    return bool(meta) and json.loads(meta)["status"] in ("SUCCESS", "FAILURE", "REVOKED")


def start_worker(kubeconfig, queue, backend_url, name):
    log = tempfile.NamedTemporaryFile(prefix=f"runway-{name}-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [RUNWAY_BIN, "worker", "-Q", queue, "--broker-url", BROKER,
         "--result-backend", backend_url, "--kubeconfig", kubeconfig, "--namespace", NS,
         "--http-listen", "127.0.0.1:0", "--hostname", f"{name}@{queue}", "--concurrency", "600",
         "--log-format", "text", "--shutdown-grace-secs", "10", "--kube-qps", "0"],
        stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    assert "consuming" in line, line + open(log.name).read()
    http = line.rsplit("http://", 1)[1].strip().rstrip(")")
    return proc, log.name, http


def stored_results(http) -> dict[str, float]:
    """`runway_worker_tasks_total` by state: one per result the worker stored."""
    import urllib.request
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("runway_worker_tasks_total{"):
            state = line.split('status="', 1)[1].split('"', 1)[0]
            out[state] = out.get(state, 0) + float(line.rsplit(" ", 1)[1])
    return out


def test_every_task_gets_one_result_through_broker_and_backend_restarts(
        cluster, backend, instance):
    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._core.execution.plan.objects import StepSuccessData
    from dagster._serdes import serialize_value
    from dagster_celery.make_app import make_app
    from dagster_celery_k8s.executor import create_k8s_job_task

    kubeconfig, api = cluster
    queue = f"rw-rs-{uuid.uuid4().hex[:8]}"
    backend_url = f"redis://127.0.0.1:{backend.port}/0"
    batch = client.BatchV1Api(api)

    # Every Job the cluster ever adds, counted by name, from before the first task.
    added: dict[str, set[str]] = {}
    stop = threading.Event()

    def count_jobs():
        # A server may end a watch at any time, as a real one does: the count
        # resumes from the last revision seen (relisting after a 410), so no
        # Job goes uncounted. Relisted Jobs keep their uid: no false repeats.
        rv = None
        while not stop.is_set():
            w = watch.Watch()
            since = {"resource_version": rv} if rv else {}
            try:
                for ev in w.stream(batch.list_namespaced_job, NS, timeout_seconds=600, **since):
                    meta = ev["object"].metadata
                    rv = meta.resource_version
                    if ev["type"] == "ADDED":
                        added.setdefault(meta.name, set()).add(meta.uid)
                    if stop.is_set():
                        w.stop()
            except ApiException as e:
                if e.status != 410:
                    raise
                rv = None
            except urllib3.exceptions.ProtocolError:
                time.sleep(0.1)
    watcher = threading.Thread(target=count_jobs, daemon=True)
    watcher.start()

    workers = [start_worker(kubeconfig, queue, backend_url, f"rw{i}") for i in range(2)]
    app = make_app({"broker": BROKER, "backend": backend_url, "include": [], "retries": None,
                    "config_source": None})
    task = create_k8s_job_task(app)
    ids = {}
    try:
        run, _ = step_kwargs(instance, kubeconfig, step="warmup")
        messages = []
        for i in range(TASKS):
            step = f"s{i:04d}"
            done = DagsterEvent(event_type_value=DagsterEventType.STEP_SUCCESS.value,
                                job_name="my_job", step_key=step, message=f"done {step}",
                                event_specific_data=StepSuccessData(duration_ms=1.0))
            _, kwargs = step_kwargs(instance, kubeconfig, step=step, run=run)
            # Long enough that most steps are still running when the broker goes.
            kwargs["user_defined_k8s_config_dict"] = {"pod_template_spec_metadata": {
                "annotations": {"runway.dev/duration-ms": str(30000 + (i % 7) * 1000),
                                "runway.dev/log": serialize_value(done) + "\n"}}}
            messages.append((step, kwargs))
        for step, kwargs in messages:
            res = task.si(**kwargs).apply_async(priority=5, queue=queue,
                                                 routing_key=f"{queue}.execute_step_k8s_job")
            ids[res.id] = step
        r = redis.Redis(port=backend.port)

        def stored():
            # Results, not the STARTED records of running steps.
            return sum(1 for tid in ids if ready(r.get(f"celery-task-meta-{tid}")))

        # Restart the broker while tasks are running, then the backend.
        before = stored()
        assert before < TASKS // 2, f"{before} tasks finished before the broker restart"
        rabbitmqctl("stop_app")
        time.sleep(2)
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
        mid = stored()
        assert mid < TASKS, "every task finished before the backend restart"
        backend.restart()
        r = redis.Redis(port=backend.port)

        deadline = time.time() + 300
        while stored() < TASKS and time.time() < deadline:
            time.sleep(0.5)
        assert stored() == TASKS, f"{TASKS - stored()} tasks without a result"

        for tid, step in ids.items():
            meta = r.get(f"celery-task-meta-{tid}")
            m = json.loads(meta)
            assert m["status"] == "SUCCESS", (step, m)
            types = [(e.event_type_value, e.step_key) for e in events_of(m["result"])]
            assert ("STEP_SUCCESS", step) in types, (step, types)
        # Exactly one Job per step, each added once and never recreated.
        time.sleep(1)
        stop.set()
        mine = {n: u for n, u in added.items() if "warmup" not in n}
        jobs = batch.list_namespaced_job(NS, label_selector=f"dagster/run-id={run.run_id}").items
        assert len({j.metadata.name for j in jobs}) == TASKS
        # The watch counted every one of them, so the next check covers all.
        unseen = {j.metadata.name for j in jobs} - set(mine)
        assert not unseen, f"the Job watch missed {len(unseen)} of {TASKS} Jobs"
        assert all(len(u) == 1 for u in mine.values()), \
            {n: len(u) for n, u in mine.items() if len(u) > 1}
        # Exactly one stored result per task: no task ran to completion twice.
        counts = [stored_results(http) for _, _, http in workers]
        assert sum(c.get("SUCCESS", 0) for c in counts) == TASKS, counts
        assert all(set(c) <= {"SUCCESS"} for c in counts), counts
    finally:
        stop.set()
        for proc, _, _ in workers:
            proc.terminate()
        for proc, log, _ in workers:
            proc.communicate(timeout=60)
            text = open(log).read()
            os.unlink(log)
            assert proc.returncode == 0, text[-3000:]
        from kombu import Connection
        with Connection(BROKER) as c:
            c.default_channel.queue_delete(queue)
