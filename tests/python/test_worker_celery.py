"""`runway worker` against the real Celery 5.7 client and the real Dagster
packages: RabbitMQ, Redis and PostgreSQL on loopback, the dev cluster with its
process kubelet. Tasks are published by dagster-celery-k8s's own task object
(`.si(...).apply_async(...)`, as `_submit_task_k8s_job` does); results are read
with `AsyncResult.get()`; event-log rows written by the worker are read back
through a real DagsterInstance.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pytest
from kubernetes import client

from devcluster import RUNWAY_BIN
from worker_env import BACKEND, BROKER, wait_http
from worker_tasks import NS, engine_messages, events_of, run_jobs, submit
from worker_tasks import celery_task, cluster, instance  # noqa: F401 (fixtures)


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
