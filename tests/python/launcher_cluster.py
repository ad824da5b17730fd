"""What the launcher tests of every Dagster version share: a dev cluster (simulated kubelet)
with the seed deployment's objects, `runway serve` on it, the seed launcher configs, and
reading Jobs back. Nothing here imports Dagster, so the 1.13 tests
(tests/python/launchers/) and the 1.1.9 ones (tests/dagster-1.1.9/) both use it.

The fixtures are session-scoped: one cluster and one service for all the launcher tests of a
run. A conftest.py imports them to offer them to its tests.
"""
from __future__ import annotations

import copy
import json
import os
import socket
import time

import pytest
from kubernetes import client, config as kube_config
from kubernetes.client.rest import ApiException

from devcluster import ROOT, dev_cluster, server_fields_dropped
from runway_serve import SEED_NAMESPACE as NS, create_seed_prerequisites, runway_serve

SEED = json.load(open(os.path.join(ROOT, "tests", "fixtures", "cases", "seed_k8s_run.json")))
IMAGE = SEED["run"]["image"]
LOCATION = SEED["run"]["location_name"]
TOKEN = "runway-test-token"
WAIT = 30.0


# === fixtures ===============================================================================


@pytest.fixture(scope="session")
def kubeconfig():
    with dev_cluster("--kubelet", "simulated", "--images", "*,!*.invalid/*") as path:
        api = kube_config.new_client_from_config(config_file=path)
        create_seed_prerequisites(api)
        api.close()
        yield path


@pytest.fixture(scope="session")
def kube(kubeconfig):
    api = kube_config.new_client_from_config(config_file=kubeconfig)
    yield api
    api.close()


@pytest.fixture(scope="session")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("runway-token") / "token"
    path.write_text(TOKEN + "\n")
    return str(path)


@pytest.fixture(scope="session")
def endpoint(kubeconfig, token_file):
    with runway_serve(kubeconfig, f"--token-file={token_file}") as addr:
        yield addr


# === launcher config ========================================================================


def k8s_config(kubeconfig) -> dict:
    """The seed deployment's K8sRunLauncher config, pointed at the dev cluster."""
    cfg = copy.deepcopy(SEED["launcher"])
    cfg["load_incluster_config"] = False
    cfg["kubeconfig_file"] = kubeconfig
    return cfg


def celery_config(kubeconfig, job_namespace: bool = True) -> dict:
    """A CeleryK8sRunLauncher config on the dev cluster. `job_namespace` is a launcher key
    from dagster-celery-k8s 0.18.2 on; 0.17.9 refuses it (its runs name the namespace in
    the executor config)."""
    cfg = {
        "instance_config_map": "dagster-instance",
        "dagster_home": "/opt/dagster/dagster_home",
        "postgres_password_secret": "dagster-postgresql-secret",
        "load_incluster_config": False,
        "kubeconfig_file": kubeconfig,
        "broker": "pyamqp://guest@127.0.0.1:5672//",
        "backend": "rpc://",
        "service_account_name": "dagster",
        "image_pull_policy": "Always",
        "env_config_maps": ["dagster-pipeline-env"],
        "labels": {"app.aipaas.io/app": "dagster"},
    }
    if job_namespace:
        cfg["job_namespace"] = NS
    return cfg


def runway_keys(endpoint, token_file, **extra) -> dict:
    keys = {"runway_endpoint": endpoint, "runway_token_file": token_file,
            "runway_health_mode": "dagster-compat"}
    keys.update(extra)
    return keys


CELERY_RUN_CONFIG = {"execution": {"config": {
    "job_image": "docker.io/dagster/user-code-example:celery", "job_namespace": NS,
    "env_config_maps": ["dagster-dagster-user-deployments-k8s-example-user-code-1-user-env"],
    "labels": {"from": "executor"}}}}


def annotated(**annotations) -> dict:
    """Run tags whose pod template carries dev-cluster kubelet annotations."""
    return {"dagster-k8s/config": json.dumps(
        {"pod_template_spec_metadata": {"annotations": annotations}})}


# === the cluster ============================================================================


def wait_for(fn, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def read_job(kube, name: str):
    try:
        job = client.BatchV1Api(kube).read_namespaced_job(name, NS)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return client.ApiClient().sanitize_for_serialization(job)


def job_pods(kube, name: str) -> list[str]:
    pods = client.CoreV1Api(kube).list_namespaced_pod(NS, label_selector=f"job-name={name}")
    return [p.metadata.name for p in pods.items]


def job_done(kube, name: str):
    job = read_job(kube, name)
    status = (job or {}).get("status") or {}
    return job if (status.get("succeeded") or status.get("failed")) else None


def gone(kube, name: str) -> bool:
    return read_job(kube, name) is None and not job_pods(kube, name)


def comparable_job(job: dict, run_id: str):
    """The Job without what the API server sets, the run id replaced, and its argv apart."""
    job = server_fields_dropped(job)
    args = job["spec"]["template"]["spec"]["containers"][0].pop("args")
    return json.loads(json.dumps(job).replace(run_id, "<run-id>")), args


def without_managed_by(job: dict) -> dict:
    job = copy.deepcopy(job)
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels.pop("app.kubernetes.io/managed-by") == "runway"
    return job


# === the client =============================================================================


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record_calls(launcher) -> list:
    """Wraps the launcher's client so each unary call is recorded as (method, request)."""
    c = launcher.runway_client
    calls = []
    real = c.call

    def call(method, request, what):
        calls.append((method, request))
        return real(method, request, what)

    c.call = call
    return calls
