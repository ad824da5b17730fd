"""A fleet of Celery workers for the remote-control and Flower suites: Runway
workers, a Python Celery worker running dagster-celery-k8s's task, the real
`celery` CLI, and the loopback RabbitMQ and Redis they share."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

from devcluster import RUNWAY_BIN
from waits import wait_for
from worker_env import BACKEND, BROKER, wait_http

CELERY = os.path.join(os.path.dirname(sys.executable), "celery")
NS = "default"


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen
    http: str
    log: str

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.http}/metrics") as r:
            return r.read().decode()

    def output(self) -> str:
        with open(self.log) as f:
            return f.read()


@contextlib.contextmanager
def runway_worker(kubeconfig: str, queues: list[str], name: str, *extra: str):
    """`runway worker` with node name `name`, until the block ends (then SIGTERM,
    and a clean exit is asserted unless the test already stopped it)."""
    log = tempfile.NamedTemporaryFile(prefix="runway-fleet-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [RUNWAY_BIN, "worker", "-Q", ",".join(queues), "--broker-url", BROKER,
         "--result-backend", BACKEND, "--kubeconfig", kubeconfig, "--namespace", NS,
         "--http-listen", "127.0.0.1:0", "--hostname", name, "--log-format", "text",
         "--shutdown-grace-secs", "5", *extra],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    line = proc.stdout.readline()
    assert "consuming" in line, line + open(log.name).read()
    http = line.rsplit("http://", 1)[1].strip().rstrip(")")
    wait_http(f"http://{http}/ready")
    w = Worker(name=name, proc=proc, http=http, log=log.name)
    try:
        yield w
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=30)
        text = w.output()
        os.unlink(log.name)
        assert proc.returncode == 0, text[-3000:]


@contextlib.contextmanager
def python_worker(queue: str, name: str):
    """A real `celery worker` running dagster-celery-k8s's task on `queue`."""
    conf = tempfile.mkdtemp(prefix="runway-fleet-py-")
    with open(os.path.join(conf, "dagster_celery_config.py"), "w") as f:
        f.write(f"broker_url = {BROKER!r}\nresult_backend = {BACKEND!r}\n")
    log = tempfile.NamedTemporaryFile(prefix="celery-fleet-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [CELERY, "-A", "dagster_celery_k8s.app", "worker", "-Q", queue, "--pool", "solo",
         "--loglevel", "INFO", "-n", name, "--without-gossip", "--without-mingle"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=conf),
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if name in celery("inspect", "ping", "-d", name, check=False).stdout:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the Python worker never answered ping:\n" + open(log.name).read())
        yield name
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(conf, ignore_errors=True)
        os.unlink(log.name)


def celery(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real Celery 5.7 CLI on the loopback broker, colours off."""
    out = subprocess.run([CELERY, "-C", "-b", BROKER, "--result-backend", BACKEND, *args],
                         capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, f"celery {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def celery_json(*args: str) -> dict | list:
    """A CLI command's `-j` output."""
    out = celery(*args, "-j")
    lines = [line for line in out.stdout.splitlines() if line.strip().startswith(("{", "["))]
    assert lines, out.stdout
    return json.loads(lines[0])


def stored_state(task_id: str) -> str | None:
    """The state the Redis backend holds for a task (None: nothing stored)."""
    import redis
    raw = redis.Redis.from_url(BACKEND).get(f"celery-task-meta-{task_id}")
    return json.loads(raw)["status"] if raw else None


def wait_until(predicate, what: str, timeout: float = 60.0, every: float = 0.2):
    return wait_for(predicate, what, timeout, every)


def delete_queues(*queues: str) -> None:
    from kombu import Connection
    with Connection(BROKER) as c:
        for q in queues:
            c.default_channel.queue_delete(q)
