"""Two `runway worker`s under faults, one after the other, with a few hundred
overlapping steps in all.

The pieces are real and the suite's own: a throwaway RabbitMQ node (its own
node name, ports and Mnesia, so the system broker is never touched), a Redis
with an append-only file, PostgreSQL behind a TCP proxy the test cuts (the
tasks' InstanceRef names the proxy), and a dev cluster (simulated kubelet) on a
fixed port. Tasks are dagster-celery-k8s's own `execute_step_k8s_job`
messages; each step's pod runs 3-6 s and its outcome is scripted (every fifth
exits 1, the others print a real STEP_START and STEP_SUCCESS), so what the
step really did is known. `--ack-deadline-secs 4` makes most deliveries be
parked once, so the parking queues are in the chaos too.

Each fault gets a fresh run of 64 steps. After it, from the stores:
- every task has exactly one ready result in Redis (counted from Redis's own
  PUBLISHes), saying what its step did (STEP_SUCCESS, or the K8sError
  STEP_FAILURE of a pod that exited 1);
- every step Job was added exactly once (a watch started before the first
  task counts uids, across the cluster's restart);
- the event log has no STEP_FAILURE for a step that succeeded, and every engine
  event a clean run writes (learnt from a first, fault-free round);
- no message is left in any queue of the node, parking queues included.

One fault cannot keep "what the step did" by design: when the dev cluster
restarts empty, the Jobs of steps still running vanish with it. Those steps
must fail saying their Job could not be found (never a timeout, never a
success); a step whose Job had surely finished before must keep its scripted
outcome, or (its pod's log gone with the cluster) report no step event at
all; steps published after the restart run normally. A Job created in the
last moment before the stop may never reach the test's watch: such a step is
known by the Job its worker announced in the event log, and must fail the
same way. See `cluster_outcomes`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid

import pytest

import report
from checks import UNSEEN_JOB, Verdict, event_rows, judge, queue_leftovers, shape
from fleet import (READY, JobWatch, RefHolder, ResultLog, Worker, publish, publisher,
                   scripted_steps, worker_argv)
from services import DevCluster, OwnRabbit, OwnRedis, TcpProxy, wait_for
from worker_env import fresh_database, postgres_storage

STEPS = 64
SETTLE_SECS = 120


class Rig:
    def __init__(self, stack: list):
        self.rabbit, self.redis = OwnRabbit(), OwnRedis()
        stack += [self.rabbit, self.redis]
        self.rabbit.start()
        self.redis.start()
        self.proxy = TcpProxy(5432)
        self.cluster = DevCluster()
        stack += [self.proxy, self.cluster]
        self.cluster.start()
        self.jobs = JobWatch(self.cluster)
        self.results = ResultLog(self.redis)
        stack += [self.jobs, self.results]
        self.queue = f"chaos-{uuid.uuid4().hex[:8]}"
        argv = worker_argv(self.cluster.kubeconfig, self.queue, self.rabbit.url, self.redis.url)
        self.workers = [Worker(f"chaos-{n}@runway", argv) for n in ("a", "b")]
        for w in self.workers:
            w.start()
        self.task = publisher(self.rabbit.kombu_url)
        self.expected = None

    def counters(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for w in self.workers:
            for k, n in w.counters().items():
                out[k] = out.get(k, 0) + n
        return out

    def steps(self, prefix: str, count: int):
        from dagster._core.storage.dagster_run import DagsterRunStatus
        from dagster._core.test_utils import create_run_for_test

        run = create_run_for_test(self.instance, job_name="chaos_job",
                                  status=DagsterRunStatus.STARTED)
        return run, scripted_steps(RefHolder(self.ref), self.cluster.kubeconfig, run, prefix,
                                   count)

    def round(self, fault: str, fault_fn, count: int = STEPS, publish_over: float = 0.0,
              allowed=None, restarted: bool = False) -> Verdict:
        run, steps = self.steps(re.sub(r"[^a-z0-9]+", "_", fault.lower()).strip("_"), count)
        before = self.counters()
        t0 = time.monotonic()
        pub = threading.Thread(target=publish, args=(self.task, self.queue, steps, publish_over))
        pub.start()
        time.sleep(0.5)
        fault_fn(steps)
        pub.join()
        r = self.redis.client()

        def metas():
            return {s.task_id: r.get(f"celery-task-meta-{s.task_id}") for s in steps}

        def all_ready():
            return all(m and json.loads(m)["status"] in READY for m in metas().values())
        v = Verdict(fault, count)
        try:
            wait_for(all_ready, "every result", SETTLE_SECS, every=0.5)
        except AssertionError as e:
            v.bad(str(e))
        try:
            wait_for(lambda: not queue_leftovers(self.rabbit), "empty queues", 30, every=1)
        except AssertionError:
            left = queue_leftovers(self.rabbit)
            v.queue_left = sum(q["messages"] + q["messages_unacknowledged"] for q in left)
            v.bad(f"messages left: {left}")
        v.seconds = time.monotonic() - t0
        try:  # every worker is back in service (reconnected, watches synced) for the next round
            wait_for(lambda: all(w.ready()[0] == 200 for w in self.workers), "/ready", 30)
        except AssertionError:
            v.bad(f"not ready after the fault: {[w.ready() for w in self.workers]}")
        time.sleep(0.5)  # the Job watch and the result log catch up
        judge(v, steps, run.run_id, metas(), self.results.count, self.jobs,
              event_rows(self.dsn, run.run_id), self.expected or
              {"succeeded": set(), "failed": set()}, allowed)
        after = self.counters()
        for name, n in after.items():
            short = name.removeprefix("runway_worker_").removesuffix("_total")
            if not restarted and n - before[name]:
                v.evidence[short] = int(n - before[name])
        v.evidence["taken over"] = sum(
            any("since job name already exists" in m for _, m in rows)
            for rows in event_rows(self.dsn, run.run_id).values())
        stored = v.evidence.get("tasks", 0)
        if not restarted and stored != count:
            v.duplicates += max(0, stored - count)
            v.bad(f"the workers counted {stored} stored results for {count} tasks")
        for w in self.workers:
            if w.proc.poll() is not None:
                v.bad(f"{w.name} exited {w.proc.returncode}: {w.output()[-1500:]}")
        report.FAULTS.append(v.row())
        self.last = (run, steps)
        return v


@pytest.fixture(scope="module")
def rig(request):
    stack: list = []
    home = tempfile.mkdtemp(prefix="runway-chaos-dh-")
    try:
        with fresh_database("runway_chaos") as db:
            from dagster import DagsterInstance
            from dagster._core.instance.ref import InstanceRef

            with open(os.path.join(home, "dagster.yaml"), "w") as f:
                f.write(postgres_storage(db) + "telemetry:\n  enabled: false\n")
            instance = DagsterInstance.from_config(home)
            rig = Rig(stack)
            # The tasks' InstanceRef names the proxy: the workers reach PostgreSQL through it.
            proxied = os.path.join(home, "proxied")
            os.makedirs(proxied)
            with open(os.path.join(proxied, "dagster.yaml"), "w") as f:
                f.write(postgres_storage(db).replace("port: 5432", f"port: {rig.proxy.port}")
                        + "telemetry:\n  enabled: false\n")
            rig.instance, rig.ref = instance, InstanceRef.from_dir(proxied)
            rig.dsn = {"host": "127.0.0.1", "user": "postgres", "dbname": db}
            yield rig
            codes = [w.stop() for w in rig.workers]
            instance.dispose()
            assert codes == [0, 0], [w.output()[-2000:] for w in rig.workers]
            if not request.session.testsfailed:  # else kept for the post-mortem
                for w in rig.workers:
                    os.unlink(w.log)
    finally:
        for thing in reversed(stack):
            thing.close()
        shutil.rmtree(home, ignore_errors=True)


def assert_clean(v: Verdict):
    assert not v.problems, "\n".join(v.problems)


def test_a_clean_round_sets_the_expected_engine_events(rig):
    """No fault: every step ends as scripted; the event-log rows it writes per step
    (engine events, the K8sError STEP_FAILURE) are what the fault rounds must have."""
    v = rig.round("clean", lambda steps: None, count=20)
    run, steps = rig.last
    rows = event_rows(rig.dsn, run.run_id)
    shapes = {"succeeded": [], "failed": []}
    for s in steps:
        job = rig.jobs.steps.get(f"{run.run_id}/{s.key}", "")
        shapes["failed" if s.fails else "succeeded"].append(shape(rows.get(s.key, []), s.key, job))
    rig.expected = {k: set.intersection(*v_) for k, v_ in shapes.items()}
    assert any(t == "ENGINE_EVENT" for t, _ in rig.expected["succeeded"]), rig.expected
    assert ("STEP_FAILURE", "Encountered failed job pods for job <job> in namespace default") \
        in rig.expected["failed"], rig.expected
    assert_clean(v)


def test_sigstop_past_the_claim_ttl_and_the_heartbeat(rig):
    """Worker a is stopped for 36 s (the claim TTL is 30 s, the heartbeat 5 s) with
    steps in hand: RabbitMQ drops it, worker b takes its steps over once the claims
    lapse (reusing the Jobs), and a, resumed, finds its claims lost and stores
    nothing."""
    a = rig.workers[0]

    def fault(steps):
        time.sleep(2.5)
        a.pause()
        try:
            time.sleep(36)
        finally:
            a.resume()
    v = rig.round("SIGSTOP 36 s", fault)
    assert_clean(v)
    assert v.evidence["taken over"] > 0 and v.evidence.get("claims_lost", 0) > 0, v.evidence


def test_sigkill_mid_run_and_restart(rig):
    """Worker a is SIGKILLed with steps in hand and started again at once under the
    same name: its deliveries come back, and its steps are taken over (by b or the
    new a) when the dead process's claims lapse."""
    a = rig.workers[0]

    def fault(steps):
        time.sleep(2.5)
        a.kill()
        a.start()
    v = rig.round("SIGKILL + restart", fault, restarted=True)
    assert_clean(v)
    assert v.evidence["taken over"] > 0, v.evidence


def test_rabbitmq_stopped_and_started(rig):
    """The whole RabbitMQ node stops for 3 s with steps running (every connection
    drops; durable queues and persistent messages are kept): /ready says so, the
    workers reconnect, and the redelivered tasks join their running copies."""
    def fault(steps):
        time.sleep(2.5)
        rig.rabbit.stop()
        try:
            wait_for(lambda: all("broker not connected" in w.ready()[1] for w in rig.workers),
                     "/ready to say the broker is gone", 15)
            time.sleep(1)
        finally:
            rig.rabbit.start()
    v = rig.round("RabbitMQ stop/start", fault)
    assert_clean(v)
    assert v.evidence.get("broker_connects", 0) >= 2, v.evidence


def test_redis_restarted_from_its_append_only_file(rig):
    """The result backend (claims and results) is shut down for 2 s and started
    again from its AOF while steps start, run and finish."""
    def fault(steps):
        time.sleep(2.5)
        rig.redis.restart(down_for=2.0)
    assert_clean(rig.round("Redis restart (AOF)", fault, publish_over=6))


def test_postgresql_cut_for_20_seconds(rig):
    """Every PostgreSQL connection of the workers is cut and refused for 20 s while
    steps start and finish: /ready says so, event writes are retried, and no
    event is lost (the patience is 300 s)."""
    def fault(steps):
        time.sleep(2.5)
        rig.proxy.cut()
        try:
            wait_for(lambda: all("PostgreSQL unreachable" in w.ready()[1] for w in rig.workers),
                     "/ready to say PostgreSQL is gone", 15)
            time.sleep(18)
        finally:
            rig.proxy.restore()
    v = rig.round("PostgreSQL cut 20 s", fault, publish_over=10)
    assert_clean(v)
    assert v.evidence.get("event_write_retries", 0) > 0, v.evidence


def test_dev_cluster_restarted_empty(rig):
    """The dev cluster stops and starts again empty on the same port while steps
    run and more are published. Designed outcomes (module docstring): a step whose
    Job was surely still running fails with its Job "could not be found"; one
    whose Job had surely finished keeps its scripted outcome or reports no step
    event (its log is gone); no Job is ever created twice."""
    moment = {}

    def fault(steps):
        time.sleep(4)
        moment["restart"] = time.time()
        rig.cluster.stop()
        rig.cluster.start()

    def cluster_outcomes(step, outcome, job):
        epochs = rig.jobs.epochs.get(job, set())
        if not epochs:
            # Named by the worker's announce row, never seen by the test's watch: created
            # on the stopping cluster, whose watch died before its ADDED event.
            return UNSEEN_JOB if job and outcome.kind == "vanished" else None
        old = rig.cluster.starts - 1
        if epochs != {old}:
            return None  # created after the restart: it must do what it was scripted to
        added = rig.jobs.added_at.get((job, old), 0)
        ends = added + step.duration_ms / 1000
        if outcome.kind == "vanished" and ends > moment["restart"] - 2:
            return "running Job vanished"
        if outcome.kind == "no-step-events" and ends < moment["restart"] + 2:
            return "finished Job's log vanished"
        return None
    v = rig.round("dev cluster restart", fault, publish_over=8, allowed=cluster_outcomes)
    assert v.designed.get("running Job vanished", 0) > 0, "no step was running at the restart"
    assert_clean(v)
