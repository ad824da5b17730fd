"""The worker side of the chaos suite: `runway worker` processes that can be
paused, killed and restarted; scripted step tasks published as
dagster-celery-k8s publishes them; and two observers that count from the stores
themselves: every Job the cluster ever added (by uid), and every ready result
Redis ever published."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field

import redis

from devcluster import RUNWAY_BIN

NS = "default"
READY = ("SUCCESS", "FAILURE", "REVOKED")
# `runway_worker_tasks_total` is one per result a worker stored; the others are evidence
# that a fault did what it should have (claims lost, redeliveries joined, retries).
COUNTERS = ("runway_worker_tasks_total", "runway_worker_claims_lost_total",
            "runway_worker_tasks_deduplicated_total", "runway_worker_tasks_parked_total",
            "runway_worker_broker_connects_total", "runway_worker_result_store_retries_total",
            "runway_worker_event_write_retries_total")


@dataclass
class Worker:
    """One `runway worker`; `name` is its RUNWAY_HOSTNAME."""
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    http: str = ""
    log: str = ""
    exits: list[int] = field(default_factory=list)

    def start(self):
        if not self.log:
            self.log = tempfile.NamedTemporaryFile(
                prefix=f"runway-chaos-{self.name.split('@')[0]}-", suffix=".log",
                delete=False).name
        err = open(self.log, "a")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=err, text=True,
                                     env=dict(os.environ, RUNWAY_HOSTNAME=self.name))
        err.close()
        line = self.proc.stdout.readline()
        assert "consuming" in line, line + self.output()
        self.http = line.rsplit("http://", 1)[1].strip().rstrip(")")

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.exits.append(self.proc.returncode)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        self.exits.append(self.proc.returncode)
        return self.proc.returncode

    def counters(self) -> dict[str, float]:
        """This process's counters (summed over labels) that tell what a fault did."""
        with urllib.request.urlopen(f"http://{self.http}/metrics", timeout=10) as r:
            text = r.read().decode()
        out = dict.fromkeys(COUNTERS, 0.0)
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in out:
                out[name] += float(line.rsplit(" ", 1)[1])
        return out

    def ready(self) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.http}/ready", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def output(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()


def worker_argv(kubeconfig: str, queue: str, broker: str, backend: str) -> list[str]:
    return [RUNWAY_BIN, "worker", "-Q", queue, "--broker-url", broker, "--result-backend", backend,
            "--kubeconfig", kubeconfig, "--namespace", NS, "--http-listen", "127.0.0.1:0",
            "--concurrency", "32", "--kube-qps", "0", "--log-format", "text",
            "--shutdown-grace-secs", "10",
            # Steps run 3-6 s: most deliveries are parked once, so parking is in the chaos too.
            "--ack-deadline-secs", "4"]


class JobWatch:
    """Every Job the dev cluster ever added, by name: its uids (a recreated Job has
    two), which cluster start (`epoch`) it lived in and when it was first seen there.
    It follows the cluster through restarts (a new connection relists)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.uids: dict[str, set[str]] = {}
        self.epochs: dict[str, set[int]] = {}
        self.added_at: dict[tuple[str, int], float] = {}  # (name, epoch) -> first seen
        self.steps: dict[str, str] = {}  # "<run id>/<step>" -> Job name
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        from kubernetes import client, config, watch

        while not self.stopping:
            epoch = self.cluster.starts
            try:
                api = config.new_client_from_config(config_file=self.cluster.kubeconfig)
                w = watch.Watch()
                for ev in w.stream(client.BatchV1Api(api).list_namespaced_job, NS,
                                   timeout_seconds=20, _request_timeout=30):
                    self._note(ev["object"], epoch)
                    if self.stopping:
                        w.stop()
                api.close()
            except Exception:
                time.sleep(0.2)

    def _note(self, job, epoch: int):
        name, labels = job.metadata.name, job.metadata.labels or {}
        self.uids.setdefault(name, set()).add(job.metadata.uid)
        self.epochs.setdefault(name, set()).add(epoch)
        self.added_at.setdefault((name, epoch), time.time())
        if "dagster/op" in labels:
            self.steps[f"{labels.get('dagster/run-id')}/{labels['dagster/op']}"] = name

    def close(self):
        self.stopping = True


class ResultLog:
    """Counts every ready meta Redis PUBLISHes (the fenced STORE publishes once
    per write), by task id, resubscribing after a Redis restart."""

    def __init__(self, own_redis):
        self.redis = own_redis
        self.count: dict[str, int] = {}
        self.stopping = False
        self.subscribed = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        assert self.subscribed.wait(10)

    def _run(self):
        prefix = "celery-task-meta-"
        while not self.stopping:
            try:
                ps = redis.Redis(port=self.redis.port).pubsub(ignore_subscribe_messages=True)
                ps.psubscribe(f"{prefix}*")
                self.subscribed.set()
                while not self.stopping:
                    m = ps.get_message(timeout=0.5)
                    if m and m["type"] == "pmessage":
                        meta = json.loads(m["data"])
                        if meta.get("status") in READY:
                            tid = m["channel"].decode()[len(prefix):]
                            self.count[tid] = self.count.get(tid, 0) + 1
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                time.sleep(0.05)

    def close(self):
        self.stopping = True


@dataclass
class Step:
    key: str
    fails: bool  # scripted: the pod exits 1
    duration_ms: int
    kwargs: dict
    task_id: str = ""


def scripted_steps(ref_holder, kubeconfig: str, run, prefix: str, count: int,
                   fail_every: int = 5) -> list[Step]:
    """`count` steps of `run`, each running 3-6 s on the simulated kubelet; every
    `fail_every`-th exits 1 (a K8sError STEP_FAILURE), the others print a real
    STEP_START and STEP_SUCCESS."""
    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._core.execution.plan.objects import StepSuccessData
    from dagster._serdes import serialize_value
    from worker_tasks import step_kwargs

    steps = []
    for i in range(count):
        key = f"{prefix}_{i:03d}"
        fails = i % fail_every == fail_every - 1
        start = DagsterEvent(event_type_value=DagsterEventType.STEP_START.value,
                             job_name=run.job_name, step_key=key, message=f"start {key}")
        log = serialize_value(start) + "\n"
        if not fails:
            log += serialize_value(DagsterEvent(
                event_type_value=DagsterEventType.STEP_SUCCESS.value, job_name=run.job_name,
                step_key=key, message=f"done {key}",
                event_specific_data=StepSuccessData(duration_ms=1.0))) + "\n"
        duration = 3000 + (i * 379) % 3000
        _, kwargs = step_kwargs(ref_holder, kubeconfig, step=key, run=run)
        kwargs["user_defined_k8s_config_dict"] = {"pod_template_spec_metadata": {"annotations": {
            "runway.dev/duration-ms": str(duration), "runway.dev/log": log,
            "runway.dev/exit-code": "1" if fails else "0"}}}
        steps.append(Step(key, fails, duration, kwargs))
    return steps


class RefHolder:
    """What `worker_tasks.step_kwargs` needs of an instance when given the run:
    the InstanceRef the task carries (here, one naming the PostgreSQL proxy)."""

    def __init__(self, ref):
        self.ref = ref

    def get_ref(self):
        return self.ref


def publisher(broker_url: str):
    """dagster-celery-k8s's own task object on the suite's broker (results are read
    from Redis directly, so the client keeps no backend connection of its own)."""
    from dagster_celery.make_app import make_app
    from dagster_celery_k8s.executor import create_k8s_job_task

    app = make_app({"broker": broker_url, "backend": None, "include": [], "retries": None,
                    "config_source": None})
    return create_k8s_job_task(app)


def publish(task, queue: str, steps: list[Step], over_secs: float = 0.0):
    """Publishes as `_submit_task_k8s_job` does, spread over `over_secs`."""
    gap = over_secs / max(len(steps), 1)
    for s in steps:
        res = task.si(**s.kwargs).apply_async(priority=5, queue=queue,
                                               routing_key=f"{queue}.execute_step_k8s_job")
        s.task_id = res.id
        if gap:
            time.sleep(gap)
