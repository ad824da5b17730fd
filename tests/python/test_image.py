"""The production image, as a platform team would run it: built offline by
`make image` (scripts/image.sh), then the chart's launcher and worker pods run
in it with podman exactly as the rendered pod specs say (image_pod.py), for
the chart's default values and the seed's. Each container becomes ready, does
its work (a launch creates its Job; a step task gets its result), and ends
cleanly within its terminationGracePeriodSeconds on SIGTERM.

RUNWAY_IMAGE_PROFILE picks the cargo profile of the binary in the image
(default `release`, what `make image` ships).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid

import pytest
from kubernetes import client, config

import chart_helm as ch
import chart_pod
import image_pod as ip
from devcluster import RUNWAY_BIN, dev_cluster
from worker_env import BACKEND, BROKER
from worker_tasks import events_of, step_kwargs
from worker_tasks import celery_task, instance  # noqa: F401 (fixtures)

ROOT = ip.ROOT
IMAGE = f"localhost/runway:test-{uuid.uuid4().hex[:6]}"
REPORT = os.path.join(ROOT, "target", "image-report.json")
CASE = os.path.join(ROOT, "tests", "fixtures", "cases", "seed_k8s_run.json")
# The largest image the release may ship.
MAX_IMAGE_BYTES = 30 * 1000 * 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def image():
    env = dict(os.environ, IMAGE=IMAGE, PROFILE=os.environ.get("RUNWAY_IMAGE_PROFILE", "release"))
    out = subprocess.run([os.path.join(ROOT, "scripts", "image.sh")], capture_output=True, text=True,
                         env=env, timeout=3600, cwd=ROOT)
    assert out.returncode == 0, f"make image failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    assert out.stdout.strip().splitlines()[-1] == IMAGE, out.stdout
    report = {}
    yield IMAGE, report
    os.makedirs(os.path.dirname(REPORT), exist_ok=True)
    with open(REPORT, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    ip.podman("rmi", "--force", IMAGE, check=False)


@pytest.fixture(scope="module")
def cluster():
    """The dev cluster with the release namespace and the seed's objects."""
    with dev_cluster("--images", "*,!*.invalid/*") as path:
        api = config.new_client_from_config(config_file=path)
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": ch.NAMESPACE}})
        for sa in ("dagster", "dagster-dagster-user-deployments-user-deployments"):
            core.create_namespaced_service_account(ch.NAMESPACE, {"metadata": {"name": sa}})
        for cm in ("dagster-pipeline-env",
                   "dagster-dagster-user-deployments-k8s-example-user-code-1-user-env",
                   "dagster-instance"):
            core.create_namespaced_config_map(ch.NAMESPACE, {"metadata": {"name": cm},
                                                             "data": {"A": "1"}})
        core.create_namespaced_secret(ch.NAMESPACE, {"metadata": {"name": "dagster-postgresql-secret"},
                                                     "stringData": {"postgresql-password": "pw"}})
        yield path, api
        api.close()


def test_the_image_is_small_static_and_unprivileged(image):
    name, report = image
    info = ip.inspect_image(name)
    size = int(info["Size"])
    report["image_bytes"] = size
    assert size < MAX_IMAGE_BYTES, f"{size} bytes"
    cfg = info["Config"]
    assert cfg["User"] == "65532:65532"
    assert cfg["Entrypoint"] == ["/runway"]
    labels = cfg["Labels"]
    version = subprocess.run([RUNWAY_BIN, "--version"], capture_output=True, text=True).stdout.split()[1]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    revision = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, cwd=ROOT).stdout.strip()
    assert labels["org.opencontainers.image.revision"] == revision
    assert labels["org.opencontainers.image.source"].startswith("https://")
    # One layer set from scratch: the binary, the CA bundle, passwd and group; nothing else.
    out = ip.podman("run", "--rm", "--read-only", "--user", "65532:65532", "--cap-drop", "ALL",
                    name, "--version")
    assert out.stdout.strip() == f"runway {version} (revision {revision})", out.stdout
    # No dev cluster in the production build.
    out = ip.podman("run", "--rm", "--read-only", name, "dev-cluster", "--help", check=False)
    assert out.returncode != 0 and "unrecognized subcommand" in out.stderr, out.stderr


VALUES = {"default": {}, "seed": ch.example("seed-values.yaml")}


def _values(base: dict, queue: str, ports: dict) -> dict:
    return ch.merge(base, {
        "launcher": {"grpcPort": ports["grpc"], "httpPort": ports["http"]},
        "worker": {"httpPort": ports["worker"], "workerQueues": [{"name": queue, "replicaCount": 1}],
                   "shutdownGraceSecs": 5},
    })


def _replacements(kubeconfig: str) -> chart_pod.Replacements:
    conn = "runway-connections"
    return chart_pod.Replacements(binary=RUNWAY_BIN, kubeconfig=kubeconfig, secret_values={
        (conn, "broker-url"): BROKER,
        (conn, "result-backend"): BACKEND,
        ("dagster-postgresql-secret", "postgresql-password"): "postgres",
    })


def _ready(pod: ip.ImagePod, port: int) -> float:
    status, body, took = pod.wait_http(port, "/ready", timeout=60)
    assert status == 200, f"/ready answered {status} {body!r}:\n{pod.logs()}"
    return took


def _stop_cleanly(pod: ip.ImagePod) -> float:
    code, took = pod.stop()
    assert code == 0, f"exited {code} on SIGTERM:\n{pod.logs()}"
    assert took < pod.grace, f"took {took:.1f}s, grace {pod.grace}s"
    return took


def _launch(endpoint: str, run_id: str) -> dict:
    out = subprocess.run([RUNWAY_BIN, "client", "--endpoint", endpoint, "launch", "--case", CASE,
                          "--run-id", run_id], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("values", sorted(VALUES))
def test_the_launcher_pod_runs_in_the_image(image, cluster, values):
    name, report = image
    kubeconfig, api = cluster
    ports = {"grpc": _free_port(), "http": _free_port(), "worker": _free_port()}
    objs = ch.render(_values(VALUES[values], "unused", ports))
    deploy = ch.one(objs, "Deployment", "runway-launcher")
    pod = ip.image_pod(objs, deploy, name, _replacements(kubeconfig))
    try:
        pod.start()
        report[f"{values}_launcher_ready_seconds"] = _ready(pod, ports["http"])
        run_id = str(uuid.uuid4())
        launched = _launch(f"http://127.0.0.1:{ports['grpc']}", run_id)
        assert launched["created"] is True, launched
        job = client.BatchV1Api(api).read_namespaced_job(launched["job_name"], ch.NAMESPACE)
        assert job.metadata.labels["dagster/run-id"] == run_id
        assert job.metadata.labels["app.kubernetes.io/managed-by"] == "runway"
        report[f"{values}_launcher_stop_seconds"] = _stop_cleanly(pod)
    finally:
        pod.cleanup()


@pytest.mark.parametrize("values", sorted(VALUES))
def test_the_worker_pod_runs_in_the_image(image, cluster, instance, celery_task, values):
    name, report = image
    kubeconfig, _ = cluster
    queue = f"runway-image-{uuid.uuid4().hex[:8]}"
    ports = {"grpc": _free_port(), "http": _free_port(), "worker": _free_port()}
    # The task below is published by this venv's Dagster (1.13.27), so the worker is
    # told that release; the seed's own 1.1.9 workers run in tests/dagster-1.1.9.
    objs = ch.render(ch.merge(_values(VALUES[values], queue, ports),
                              {"worker": {"dagsterVersion": ""}}))
    deploy = ch.one(objs, "Deployment", f"runway-worker-{queue}")
    pod = ip.image_pod(objs, deploy, name, _replacements(kubeconfig))
    try:
        pod.start()
        report[f"{values}_worker_ready_seconds"] = _ready(pod, ports["worker"])
        _, kwargs = step_kwargs(instance, kubeconfig, namespace=ch.NAMESPACE)
        result = celery_task.si(**kwargs).apply_async(
            queue=queue, routing_key=f"{queue}.execute_step_k8s_job")
        events = events_of(result.get(timeout=120))
        assert [e.event_type_value for e in events][-1] == "STEP_SUCCESS", events
        report[f"{values}_worker_stop_seconds"] = _stop_cleanly(pod)
    finally:
        pod.cleanup()
        _delete_queue(queue)


def _delete_queue(queue: str) -> None:
    import amqp
    with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest") as conn:
        ch_ = conn.channel()
        ch_.queue_delete(queue)
        ch_.exchange_delete(queue)
