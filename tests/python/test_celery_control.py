"""Celery's own operator tools against Runway workers: the real `celery`
5.7 CLI (`status`, `inspect ...`, `control ...`) on a fleet of two Runway
workers and one Python Celery worker, with RabbitMQ, Redis, PostgreSQL and the
dev cluster on loopback. Assertions are on what the CLI prints and on what the
workers then do (Jobs, stored states, consumed queues)."""
from __future__ import annotations

import time
import uuid

import pytest
from kubernetes import client

from celery_fleet import (NS, celery, celery_json, delete_queues, python_worker,
                          runway_worker, stored_state, wait_until)
from worker_tasks import events_of, step_kwargs, submit
from worker_tasks import celery_task, cluster, instance  # noqa: F401 (fixtures)

SUFFIX = uuid.uuid4().hex[:6]
QUEUE = f"rw-ctl-{SUFFIX}"
EXTRA_QUEUE = f"rw-ctl-extra-{SUFFIX}"
PY_QUEUE = f"rw-ctl-py-{SUFFIX}"
A, B, PY = f"runway-a@{SUFFIX}", f"runway-b@{SUFFIX}", f"py@{SUFFIX}"


@pytest.fixture(scope="module")
def fleet(cluster):
    kubeconfig, _ = cluster
    with runway_worker(kubeconfig, [QUEUE], A, "--concurrency", "4") as a, \
            runway_worker(kubeconfig, [QUEUE], B, "--concurrency", "4") as b, \
            python_worker(PY_QUEUE, PY):
        yield {"a": a, "b": b, "kubeconfig": kubeconfig}
    delete_queues(QUEUE, EXTRA_QUEUE, PY_QUEUE)


def sleeping_step(celery_task, instance, kubeconfig, seconds=60, queue=QUEUE):
    return submit(celery_task, instance, queue, kubeconfig, behaviour="sleep",
                  extra_env=(f"STEP_SLEEP={seconds}",))


def step_jobs(api, run_id):
    return client.BatchV1Api(api).list_namespaced_job(
        NS, label_selector=f"dagster/run-id={run_id}").items


def test_status_and_ping_list_every_node(fleet):
    out = celery("status").stdout
    for node in (A, B, PY):
        assert f"->  {node}: OK" in out, out
    assert "3 nodes online." in out, out
    out = celery("inspect", "ping", "-d", f"{A},{B}").stdout
    assert out.count("        pong") == 2 and "2 nodes online." in out, out


def test_stats_registered_queues_and_conf(fleet):
    stats = celery_json("inspect", "stats", "-d", A)[A]
    assert stats["pid"] == fleet["a"].proc.pid
    assert stats["pool"]["max-concurrency"] == 4
    assert stats["broker"]["hostname"] == "127.0.0.1" and stats["broker"]["port"] == 5672
    assert stats["prefetch_count"] == 4
    assert stats["rusage"]["maxrss"] > 0 and "utime" in stats["rusage"]
    assert "execute_step_k8s_job" in stats["total"]
    out = celery("inspect", "registered", "-d", A).stdout
    assert "    * execute_step_k8s_job" in out, out
    [queue] = celery_json("inspect", "active_queues", "-d", A)[A]
    assert (queue["name"], queue["exchange"]["name"], queue["durable"]) == (QUEUE, QUEUE, True)
    conf = celery_json("inspect", "conf", "-d", A)[A]
    assert conf["broker_url"] == "amqp://guest:********@127.0.0.1:5672//", conf["broker_url"]
    assert conf["task_acks_late"] is True and conf["worker_concurrency"] == 4
    report = celery("inspect", "report", "-d", A).stdout
    assert "software -> runway:" in report and "broker_url: 'amqp://guest:********@" in report
    assert celery_json("inspect", "scheduled", "-d", A) == {A: []}
    clock = celery_json("inspect", "clock", "-d", A)[A]["clock"]
    assert clock > 0


def test_active_reserved_and_query_task_show_the_running_step(fleet, celery_task, instance):
    run, result = sleeping_step(celery_task, instance, fleet["kubeconfig"], seconds=8)

    def running_on():
        both = celery_json("inspect", "active", "-d", f"{A},{B}")
        return [(node, t) for node, ts in both.items() for t in ts if t["id"] == result.id]

    [(node, task)] = wait_until(running_on, "the step to be active")
    assert task["name"] == task["type"] == "execute_step_k8s_job"
    assert task["hostname"] == node and task["time_start"] > 0
    assert task["worker_pid"] == fleet["a" if node == A else "b"].proc.pid
    assert task["acknowledged"] is False  # acks late: nothing before the result
    assert task["delivery_info"]["routing_key"] == QUEUE
    assert task["kwargs"]["job_namespace"] == NS
    assert task["step_job"].startswith("dagster-step-")
    # Flower's form: args and kwargs as their reprs.
    [safe] = celery_task.app.control.inspect(destination=[node], timeout=5).active(safe=True)[node]
    assert safe["kwargs"].startswith("{'") and safe["args"] == "()", safe
    assert f"->  {node}: OK\n    - empty -" in celery("inspect", "reserved", "-d", node).stdout
    query = celery_json("inspect", "query_task", result.id, "-d", node)[node]
    assert query[result.id][0] == "active"
    assert stored_state(result.id) == "STARTED"
    events = events_of(result.get(timeout=90))
    assert events[-1].event_type_value == "STEP_SUCCESS"
    assert celery_json("inspect", "query_task", result.id, "-d", node)[node] == {}


def test_a_python_workers_revoke_never_marks_a_running_step_revoked(fleet, celery_task,
                                                                     instance, cluster):
    """The Python worker revokes what it does not run by writing REVOKED over a
    PENDING state; Runway stores STARTED first, so the running step's state
    stays true, and only Runway's own terminate ends it and stores REVOKED."""
    _, api = cluster
    run, result = sleeping_step(celery_task, instance, fleet["kubeconfig"])
    wait_until(lambda: stored_state(result.id) == "STARTED", "STARTED to be stored")
    out = celery("control", "revoke", result.id, "-d", PY).stdout
    assert f"->  {PY}: OK" in out and f"tasks {{'{result.id}'}} flagged as revoked" in out, out
    time.sleep(1.0)
    assert stored_state(result.id) == "STARTED"
    assert step_jobs(api, run.run_id), "the step is still running"

    out = celery("control", "terminate", "SIGTERM", result.id).stdout
    assert f"terminate: {result.id}" in out, out
    assert f"->  {PY}: OK\n        terminate: tasks unknown" in out, out
    seen = []

    def revoked():
        state = stored_state(result.id)
        seen.append((state, bool(step_jobs(api, run.run_id))))
        return state == "REVOKED"

    wait_until(revoked, "REVOKED to be stored", timeout=30)
    assert not seen[-1][1], "REVOKED is stored only once the step Job is gone"
    assert all(state == "STARTED" for state, _ in seen[:-1]), seen
    revoked_ids = celery_json("inspect", "revoked", "-d", f"{A},{B}")
    assert all(result.id in ids for ids in revoked_ids.values()), revoked_ids


def test_eta_tasks_wait_in_scheduled_and_expired_ones_are_revoked(fleet, celery_task, instance,
                                                                  cluster):
    """`countdown` holds a task until then: `celery inspect scheduled` lists it and no
    Job exists meanwhile, then it runs. `expires` in the past: REVOKED with Celery's
    TaskRevokedError('expired'), and no Job."""
    import json as json_

    import redis
    from worker_env import BACKEND

    _, api = cluster
    run, kwargs = step_kwargs(instance, fleet["kubeconfig"])
    soon = celery_task.si(**kwargs).apply_async(
        queue=QUEUE, routing_key=f"{QUEUE}.execute_step_k8s_job", countdown=8)
    scheduled = wait_until(
        lambda: {n: r for n, r in celery_json("inspect", "scheduled", "-d", f"{A},{B}").items()
                 if r}, "the task in `inspect scheduled`", timeout=20)
    (node, entries), = scheduled.items()
    assert entries[0]["request"]["id"] == soon.id and entries[0]["eta"], entries
    assert not step_jobs(api, run.run_id)
    wait_until(lambda: stored_state(soon.id) == "SUCCESS", "the task ran at its ETA", timeout=90)
    assert len(step_jobs(api, run.run_id)) == 1

    stale_run, kwargs = step_kwargs(instance, fleet["kubeconfig"])
    stale = celery_task.si(**kwargs).apply_async(
        queue=QUEUE, routing_key=f"{QUEUE}.execute_step_k8s_job", expires=-60)
    wait_until(lambda: stored_state(stale.id) == "REVOKED", "the expired task revoked")
    meta = json_.loads(redis.Redis.from_url(BACKEND).get(f"celery-task-meta-{stale.id}"))
    assert meta["result"] == {"exc_type": "TaskRevokedError", "exc_message": ["expired"],
                              "exc_module": "celery.exceptions"}, meta
    assert not step_jobs(api, stale_run.run_id)


def test_consumers_are_added_and_cancelled_at_run_time(fleet, celery_task, instance):
    out = celery("control", "add_consumer", EXTRA_QUEUE, "-d", A).stdout
    assert f"->  {A}: OK\n        add consumer {EXTRA_QUEUE}" in out, out
    names = [q["name"] for q in celery_json("inspect", "active_queues", "-d", A)[A]]
    assert names == [QUEUE, EXTRA_QUEUE], names
    _, result = submit(celery_task, instance, EXTRA_QUEUE, fleet["kubeconfig"])
    assert events_of(result.get(timeout=90))[-1].event_type_value == "STEP_SUCCESS"
    out = celery("control", "cancel_consumer", EXTRA_QUEUE, "-d", A).stdout
    assert f"no longer consuming from {EXTRA_QUEUE}" in out, out
    names = [q["name"] for q in celery_json("inspect", "active_queues", "-d", A)[A]]
    assert names == [QUEUE], names


def test_the_pool_grows_shrinks_and_autoscales(fleet):
    def concurrency():
        return celery_json("inspect", "stats", "-d", B)[B]["pool"]["max-concurrency"]

    assert "pool will grow" in celery("control", "pool_grow", "3", "-d", B).stdout
    assert concurrency() == 7
    assert "pool will shrink" in celery("control", "pool_shrink", "5", "-d", B).stdout
    assert concurrency() == 2
    out = celery("control", "autoscale", "6", "2", "-d", B).stdout
    assert "autoscale now max=6 min=2" in out, out
    assert concurrency() == 6
    assert "autoscale now max=4 min=4" in celery("control", "autoscale", "4", "4", "-d", B).stdout


def test_events_heartbeat_and_what_runway_does_not_do(fleet):
    assert f"->  {A}: OK\n    None" in celery("control", "heartbeat", "-d", A).stdout
    out = celery("control", "enable_events", "-d", A).stdout
    assert "task events enabled" in out or "task events already enabled" in out, out
    assert "task events disabled" in celery("control", "disable_events", "-d", A).stdout
    for argv, why in [(("rate_limit", "execute_step_k8s_job", "10/m"), "does not rate-limit"),
                      (("time_limit", "execute_step_k8s_job", "10"), "time limits"),
                      (("pool_restart",), "no child processes")]:
        out = celery("control", *argv, "-d", A).stdout
        assert f"->  {A}: ERROR" in out and why in out, out
    # A method no CLI knows: Celery's KeyError, from the worker itself.
    from celery import Celery
    from worker_env import BACKEND, BROKER
    app = Celery(broker=BROKER, backend=BACKEND)
    replies = app.control.broadcast("no_such_command", reply=True, destination=[A], timeout=5)
    assert replies == [{A: {"error": "KeyError('no_such_command')"}}], replies


def test_remote_shutdown_drains_the_worker(fleet):
    """Celery sends no reply to shutdown (the CLI then says no node replied);
    the worker drains and exits cleanly, as on SIGTERM."""
    out = celery("control", "shutdown", "-d", B, check=False)
    assert out.returncode == 69 and "No nodes replied" in out.stderr, (out.stdout, out.stderr)
    proc = fleet["b"].proc
    proc.wait(timeout=30)
    assert proc.returncode == 0, fleet["b"].output()[-3000:]
    assert "Got shutdown from remote" in fleet["b"].output()
    out = celery("status").stdout
    assert B not in out and "2 nodes online." in out, out
