"""Flower 2.2 against Runway workers: its HTTP API (workers with stats,
conf, registered and active queues; queue lengths from RabbitMQ's management
API; the worker-control endpoints), and its worker page rendered in headless
Chromium with DOM assertions. A screenshot of the page is written to
target/flower-worker.png."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

from celery_fleet import CELERY, celery_json, delete_queues, runway_worker, wait_until
from worker_env import BROKER
from worker_tasks import cluster  # noqa: F401 (fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCREENSHOT = os.path.join(ROOT, "target", "flower-worker.png")
SUFFIX = uuid.uuid4().hex[:6]
QUEUE = f"rw-flower-{SUFFIX}"
EXTRA = f"rw-flower-extra-{SUFFIX}"
NODE = f"runway-flower@{SUFFIX}"
DOOMED = f"runway-doomed@{SUFFIX}"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def flower(cluster):
    kubeconfig, _ = cluster
    port = _free_port()
    home = tempfile.mkdtemp(prefix="runway-flower-")
    with runway_worker(kubeconfig, [QUEUE], NODE, "--concurrency", "3") as w, \
            runway_worker(kubeconfig, [QUEUE], DOOMED):
        log = open(os.path.join(home, "flower.log"), "w")
        env = dict(os.environ, FLOWER_UNAUTHENTICATED_API="1")
        proc = subprocess.Popen(
            [CELERY, "-b", BROKER, "flower", "--address=127.0.0.1", f"--port={port}",
             "--persistent=False", "--broker_api=http://guest:guest@127.0.0.1:15672/api/"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _get(f"{base}/healthcheck")[0] == 200, "Flower to start")
            # Flower sees a worker once it answered its inspections.
            wait_until(lambda: NODE in _json(f"{base}/api/workers?refresh=1"),
                       "Flower to inspect the Runway worker", timeout=30)
            yield {"base": base, "worker": w}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
            shutil.rmtree(home, ignore_errors=True)
            delete_queues(QUEUE, EXTRA)


def _get(url: str, method: str = "GET") -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def _json(url: str):
    status, body = _get(url)
    assert status == 200, (status, body)
    return json.loads(body)


def test_the_api_shows_the_workers_stats_conf_and_queues(flower):
    info = _json(f"{flower['base']}/api/workers?refresh=1&workername={NODE}")[NODE]
    assert info["stats"]["pool"]["max-concurrency"] == 3
    assert info["stats"]["pid"] == flower["worker"].proc.pid
    assert info["registered"] == ["execute_step_k8s_job"]
    assert [q["name"] for q in info["active_queues"]] == [QUEUE]
    assert info["conf"]["worker_concurrency"] == 3


def test_the_broker_page_lists_runways_queue_and_its_length(flower):
    # RabbitMQ's management API reports a new queue's length once its
    # statistics were collected (every 5 s).
    lengths = wait_until(
        lambda: [q for q in _json(f"{flower['base']}/api/queues/length")["active_queues"]
                 if q["name"] == QUEUE and "messages" in q],
        "the queue's length from RabbitMQ's management API", timeout=30, every=1.0)
    assert lengths[0]["messages"] == 0
    status, page = _get(f"{flower['base']}/broker")
    assert status == 200 and QUEUE in page


def test_the_worker_control_buttons_act(flower):
    base = flower["base"]

    def post(path):
        return _get(f"{base}/api/worker/{path}", method="POST")

    status, body = post(f"pool/grow/{NODE}?n=2")
    assert (status, json.loads(body)["message"]) == (200, f"Growing '{NODE}' worker's pool by 2")
    status, _ = post(f"pool/shrink/{NODE}?n=1")
    assert status == 200
    stats = celery_json("inspect", "stats", "-d", NODE)[NODE]
    assert stats["pool"]["max-concurrency"] == 4
    status, _ = post(f"pool/autoscale/{NODE}?min=1&max=3")
    assert status == 200
    status, body = post(f"queue/add-consumer/{NODE}?queue={EXTRA}")
    assert (status, json.loads(body)["message"]) == (200, f"add consumer {EXTRA}")
    queues = [q["name"] for q in celery_json("inspect", "active_queues", "-d", NODE)[NODE]]
    assert queues == [QUEUE, EXTRA], queues
    status, body = post(f"queue/cancel-consumer/{NODE}?queue={EXTRA}")
    assert (status, json.loads(body)["message"]) == (200, f"no longer consuming from {EXTRA}")
    # Restarting a pool is not something Runway does: Flower shows the reason.
    status, body = post(f"pool/restart/{NODE}")
    assert status == 403 and "no child processes" in body, (status, body)


def test_the_shutdown_button_stops_a_worker(flower):
    status, _ = _get(f"{flower['base']}/api/worker/shutdown/{DOOMED}", method="POST")
    assert status == 200
    alive = celery_json("inspect", "ping", "-t", "2")
    wait_until(lambda: DOOMED not in celery_json("inspect", "ping", "-t", "2"),
               "the worker to stop", timeout=30)
    assert NODE in alive


def _chromium(*args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="runway-chromium-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=3000", *args],
            capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_the_worker_page_renders_with_real_data_in_chromium(flower):
    url = f"{flower['base']}/worker/{NODE}"
    dom = _chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert "Unknown worker" not in page
    for tab in ("Pool", "Broker", "Queues", "Tasks", "Limits", "Config", "System"):
        assert re.search(rf">\s*{tab}\s*<", page), tab
    assert NODE in page and QUEUE in page
    assert str(flower["worker"].proc.pid) in page
    # Flower humanizes values ("Runway.worker:StepJobPool").
    assert "worker:StepJobPool" in page, page
    assert "execute_step_k8s_job" in page.replace("Execute step k8s job", "execute_step_k8s_job")
    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    shot = _chromium(f"--screenshot={SCREENSHOT}", "--window-size=1280,1600", url)
    assert shot.returncode == 0 and os.path.getsize(SCREENSHOT) > 10_000, shot.stderr[-2000:]
