"""The dev cluster driven by unmodified clients: the Python `kubernetes` client,
dagster-k8s's own `DagsterKubernetesClient`, and `kubectl`.

By default each test module starts `runway dev-cluster` (RUNWAY_BIN) on a free
loopback port. With RUNWAY_CONFORMANCE_KUBECONFIG=<path> the same tests run
against that cluster instead (a real one), in namespaces of their own.
"""
from __future__ import annotations

import copy
import filecmp
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from devcluster import dev_cluster

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNWAY_BIN = os.environ.get("RUNWAY_BIN", os.path.join(ROOT, "target", "debug", "runway"))
SEED_JOB = os.path.join(ROOT, "tests", "fixtures", "jobs", "seed_k8s_run.json")
OPENAPI_DIR = os.path.join(ROOT, "crates", "runway-devcluster", "openapi")


@pytest.fixture(scope="module")
def kubeconfig():
    real = os.environ.get("RUNWAY_CONFORMANCE_KUBECONFIG")
    if real:
        yield real
        return
    with dev_cluster("--images", "*,!*.invalid/*") as path:
        yield path


@pytest.fixture
def api(kubeconfig):
    api_client = config.new_client_from_config(config_file=kubeconfig)
    yield api_client
    api_client.close()


@pytest.fixture
def namespace(api):
    core = client.CoreV1Api(api)
    name = f"py-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_secret(name, {
        "metadata": {"name": "dagster-postgresql-secret"},
        "stringData": {"postgresql-password": "pg-secret"},
    })
    yield name
    core.delete_namespace(name)


def seed_job(name: str, script: str, image: str = "busybox:1.36") -> dict:
    """The parity-tested Job of the seed deployment, runnable on any machine."""
    with open(SEED_JOB) as f:
        job = json.load(f)
    job = copy.deepcopy(job)
    job["metadata"]["name"] = name
    job["metadata"].pop("namespace", None)
    spec = job["spec"]["template"]["spec"]
    spec.pop("serviceAccountName", None)
    spec.pop("affinity", None)
    spec["imagePullSecrets"] = []
    c = spec["containers"][0]
    c.update({"command": ["sh", "-c", script], "args": [], "envFrom": [], "image": image})
    return job


def test_python_client_create_watch_logs_delete(api, namespace):
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    name = "dagster-run-0b6f0d7e-1111-4c1b-8a57-5d0bba7c1e01"
    created = batch.create_namespaced_job(namespace, seed_job(name, 'echo "pw=$DAGSTER_PG_PASSWORD"'))
    assert created.metadata.uid
    assert created.spec.template.metadata.labels["job-name"] == name

    with pytest.raises(ApiException) as conflict:
        batch.create_namespaced_job(namespace, seed_job(name, "true"))
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "AlreadyExists"

    phases = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, namespace, label_selector=f"job-name={name}",
                          timeout_seconds=60):
        phases.append(event["object"].status.phase)
        if event["object"].status.phase == "Succeeded":
            pod_name = event["object"].metadata.name
            w.stop()
    assert phases[-1] == "Succeeded" and set(phases) <= {"Pending", "Running", "Succeeded"}, phases

    # Raw bodies, as dagster-k8s reads logs: the 36.x client turns a preloaded
    # text body into the repr of its bytes whatever the server sends.
    def log(**kw) -> str:
        return core.read_namespaced_pod_log(pod_name, namespace, _preload_content=False, **kw).data.decode()

    assert log() == "pw=pg-secret\n"
    stamped = log(timestamps=True, tail_lines=1)
    assert stamped.endswith(" pw=pg-secret\n") and stamped[:4].isdigit(), stamped

    job = batch.read_namespaced_job_status(name, namespace)
    assert job.status.succeeded == 1
    assert [c.type for c in job.status.conditions] == ["SuccessCriteriaMet", "Complete"]

    rv = core.list_namespaced_pod(namespace).metadata.resource_version
    batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    deleted = []
    for event in w.stream(core.list_namespaced_pod, namespace, resource_version=rv, timeout_seconds=30):
        if event["type"] == "DELETED":
            deleted.append(event["object"].metadata.name)
            w.stop()
    assert deleted == [pod_name]
    with pytest.raises(ApiException) as gone:
        batch.read_namespaced_job(name, namespace)
    assert gone.value.status == 404


def test_dagster_k8s_client_waits_and_cleans_up(api, namespace):
    from dagster_k8s.client import DagsterKubernetesClient

    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    dk = DagsterKubernetesClient.production_client(batch_api_override=batch, core_api_override=core)
    name = "dagster-step-5d1a3c8e2f0b4a6c9d7e1f2a3b4c5d6e"
    batch.create_namespaced_job(namespace, seed_job(name, "echo step-ok; sleep 0.3"))
    dk.wait_for_job_success(name, namespace, wait_timeout=60, wait_time_between_attempts=0.2)
    pods = dk.get_pod_names_in_job(name, namespace)
    assert len(pods) == 1
    assert dk.retrieve_pod_logs(pods[0], namespace) == "step-ok\n"
    dk.delete_job(name, namespace)
    deadline = time.time() + 30
    while core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items:
        assert time.time() < deadline, "pods left behind"
        time.sleep(0.1)


def test_dagster_k8s_client_sees_a_failed_job(api, namespace):
    from dagster_k8s.client import DagsterK8sError, DagsterKubernetesClient

    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    dk = DagsterKubernetesClient.production_client(batch_api_override=batch, core_api_override=core)
    batch.create_namespaced_job(namespace, seed_job("fails", "echo boom >&2; exit 2"))
    with pytest.raises(DagsterK8sError, match="Encountered failed job pods"):
        dk.wait_for_job_success("fails", namespace, wait_timeout=60, wait_time_between_attempts=0.2)


def test_invalid_and_forbidden_requests_are_status_objects(api, namespace):
    batch = client.BatchV1Api(api)
    bad = seed_job("Bad_Name", "true")
    with pytest.raises(ApiException) as invalid:
        batch.create_namespaced_job(namespace, bad)
    status = json.loads(invalid.value.body)
    assert invalid.value.status == 422 and status["reason"] == "Invalid"
    assert {c["field"] for c in status["details"]["causes"]} == {"metadata.name"}
    assert status["kind"] == "Status" and status["status"] == "Failure"


def post_raw(api, namespace: str, body: str | bytes, content_type: str):
    return api.call_api(
        f"/api/v1/namespaces/{namespace}/configmaps", "POST",
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body, response_types_map={200: "object", 201: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True)


def test_bodies_are_decoded_by_content_type(api, namespace):
    core = client.CoreV1Api(api)
    created = post_raw(api, namespace, "metadata:\n  name: from-yaml\ndata:\n  k: v\n",
                       "application/yaml")
    assert created["metadata"]["name"] == "from-yaml"
    assert core.read_namespaced_config_map("from-yaml", namespace).data == {"k": "v"}

    # A media type no API server decodes is a 415 Status, not a 400 that would
    # blame the object, and nothing is stored.
    with pytest.raises(ApiException) as unknown:
        post_raw(api, namespace, '{"metadata": {"name": "as-text"}}', "text/plain")
    status = json.loads(unknown.value.body)
    assert unknown.value.status == 415 and status["reason"] == "UnsupportedMediaType", status
    names = {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
    assert "as-text" not in names

    if os.environ.get("RUNWAY_CONFORMANCE_KUBECONFIG"):
        return
    # The dev cluster decodes JSON and YAML only; protobuf (what kubectl sends
    # for `create namespace`) gets the same 415, naming what to send instead.
    with pytest.raises(ApiException) as proto:
        post_raw(api, namespace, b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09ConfigMap",
                 "application/vnd.kubernetes.protobuf")
    status = json.loads(proto.value.body)
    assert proto.value.status == 415 and "application/json" in status["message"], status


def kubectl(kubeconfig: str, *args: str, timeout: float = 60, check: bool = True,
            cache_dir: str | None = None) -> str:
    """Runs kubectl; with `cache_dir`, its discovery cache lives there (kubectl
    caches discovery per host:port, and a reused port would read stale data)."""
    exe = shutil.which("kubectl")
    assert exe, "kubectl is installed by scripts/bootstrap.sh"
    env = dict(os.environ, KUBECACHEDIR=cache_dir) if cache_dir else None
    proc = subprocess.run([exe, "--kubeconfig", kubeconfig, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout + proc.stderr


def test_kubectl_create_get_watch_describe_logs_delete(kubeconfig, namespace, tmp_path):
    manifest = tmp_path / "job.json"
    manifest.write_text(json.dumps(seed_job("kubectl-job", "echo from-kubectl; sleep 1")))
    out = kubectl(kubeconfig, "-n", namespace, "create", "--validate=false", "-f", str(manifest))
    assert "job.batch/kubectl-job created" in out, out

    # `get -w` streams until the Job completes; --request-timeout bounds it.
    watched = kubectl(kubeconfig, "-n", namespace, "get", "jobs", "-w", "--request-timeout=8s",
                      "-o", "jsonpath={.status.succeeded}{\"\\n\"}", check=False, timeout=30)
    assert "1" in watched.split(), watched

    table = kubectl(kubeconfig, "-n", namespace, "get", "jobs")
    assert "kubectl-job" in table and "NAME" in table, table
    described = kubectl(kubeconfig, "-n", namespace, "describe", "job", "kubectl-job")
    assert "Pods Statuses:" in described and "1 Succeeded" in described, described
    assert "SuccessfulCreate" in described, described
    logs = kubectl(kubeconfig, "-n", namespace, "logs", "job/kubectl-job")
    assert logs.strip() == "from-kubectl", logs
    out = kubectl(kubeconfig, "-n", namespace, "delete", "job", "kubectl-job", "--cascade=background")
    assert 'job.batch "kubectl-job" deleted' in out, out
    pods = kubectl(kubeconfig, "-n", namespace, "get", "pods", "-l", "job-name=kubectl-job", "-o", "name")
    deadline = time.time() + 30
    while pods.strip() and time.time() < deadline:
        time.sleep(0.2)
        pods = kubectl(kubeconfig, "-n", namespace, "get", "pods", "-l", "job-name=kubectl-job", "-o", "name")
    assert not pods.strip() or "No resources" in pods, pods


def test_tls_and_token_with_python_client_and_kubectl(tmp_path):
    if os.environ.get("RUNWAY_CONFORMANCE_KUBECONFIG"):
        pytest.skip("starts a dev cluster of its own: TLS and token flags are dev-cluster features")
    path = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [RUNWAY_BIN, "dev-cluster", "--listen", "127.0.0.1:0", "--kubeconfig", str(path), "--tls",
         "--token", "py-s3cret"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert "listening on https://127.0.0.1:" in proc.stdout.readline()
        api_client = config.new_client_from_config(config_file=str(path))
        names = [n.metadata.name for n in client.CoreV1Api(api_client).list_namespace().items]
        assert "default" in names
        api_client.close()
        assert "default" in kubectl(str(path), "get", "namespaces", "-o", "name")

        wrong = tmp_path / "wrong-token"
        wrong.write_text(path.read_text().replace("token: py-s3cret", "token: not-it"))
        out = kubectl(str(wrong), "get", "namespaces", check=False)
        assert "Unauthorized" in out or "must be logged in" in out, out
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_openapi_documents_are_current(tmp_path):
    """The committed OpenAPI documents are what tools/gen_openapi.py writes."""
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_openapi.py"), "--out",
                    str(tmp_path)], check=True, capture_output=True, timeout=120)
    generated = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.json"))
    assert generated == ["v3.json", os.path.join("v3", "api", "v1.json"),
                         os.path.join("v3", "apis", "batch", "v1.json")], generated
    for rel in generated:
        assert filecmp.cmp(tmp_path / rel, os.path.join(OPENAPI_DIR, rel), shallow=False), (
            f"{rel} is stale: run .venv/bin/python tools/gen_openapi.py")


def job_manifest(path, name: str, label: str, extra_spec: str = "") -> str:
    """A small Job as YAML, the way people hand kubectl a manifest."""
    path.write_text(textwrap.dedent(f"""\
        apiVersion: batch/v1
        kind: Job
        metadata:
          name: {name}
          labels:
            app: {label}
        spec:
          backoffLimit: 0{extra_spec}
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: main
                image: busybox:1.36
                command: ["sh", "-c", "echo from-{name}"]
        """))
    return str(path)


def test_kubectl_create_validates_on_the_server(kubeconfig, namespace, tmp_path):
    cache = str(tmp_path / "cache")
    good = job_manifest(tmp_path / "good.yaml", "kv-good", "one")
    out = kubectl(kubeconfig, "-n", namespace, "create", "-f", good, cache_dir=cache)
    assert "job.batch/kv-good created" in out, out

    # kubectl leaves validation to the server (the OpenAPI documents say it
    # takes fieldValidation), which refuses the unknown field.
    bad = job_manifest(tmp_path / "bad.yaml", "kv-bad", "one", "\n          bogusField: 1")
    out = kubectl(kubeconfig, "-n", namespace, "create", "-f", bad, check=False, cache_dir=cache)
    assert ('Job in version "v1" cannot be handled as a Job: strict decoding error: '
            'unknown field "spec.bogusField"') in out, out
    assert "BadRequest" in out, out
    out = kubectl(kubeconfig, "-n", namespace, "get", "job", "kv-bad", check=False, cache_dir=cache)
    assert "NotFound" in out, out


def test_kubectl_apply_twice_patches(kubeconfig, namespace, tmp_path):
    cache = str(tmp_path / "cache")
    first = job_manifest(tmp_path / "first.yaml", "kv-apply", "one")
    out = kubectl(kubeconfig, "-n", namespace, "apply", "-f", first, cache_dir=cache)
    assert "job.batch/kv-apply created" in out, out
    # The second apply is a strategic merge patch built from the schema.
    second = job_manifest(tmp_path / "second.yaml", "kv-apply", "two")
    out = kubectl(kubeconfig, "-n", namespace, "apply", "-f", second, cache_dir=cache)
    assert "job.batch/kv-apply configured" in out, out
    labels = kubectl(kubeconfig, "-n", namespace, "get", "job", "kv-apply", "-o",
                     "jsonpath={.metadata.labels.app}", cache_dir=cache)
    assert labels == "two", labels
    applied = kubectl(kubeconfig, "-n", namespace, "get", "job", "kv-apply", "-o", "json",
                      cache_dir=cache)
    last = json.loads(json.loads(applied)["metadata"]["annotations"][
        "kubectl.kubernetes.io/last-applied-configuration"])
    assert last["metadata"]["labels"] == {"app": "two"}, last


def test_kubectl_apply_server_side(kubeconfig, namespace, tmp_path):
    cache = str(tmp_path / "cache")
    first = job_manifest(tmp_path / "first.yaml", "kv-ssa", "one")
    out = kubectl(kubeconfig, "-n", namespace, "apply", "--server-side", "-f", first,
                  cache_dir=cache)
    assert "job.batch/kv-ssa serverside-applied" in out, out
    second = job_manifest(tmp_path / "second.yaml", "kv-ssa", "two")
    out = kubectl(kubeconfig, "-n", namespace, "apply", "--server-side", "-f", second,
                  cache_dir=cache)
    assert "job.batch/kv-ssa serverside-applied" in out, out
    labels = kubectl(kubeconfig, "-n", namespace, "get", "job", "kv-ssa", "-o",
                     "jsonpath={.metadata.labels.app}", cache_dir=cache)
    assert labels == "two", labels


def test_kubectl_explain(kubeconfig, tmp_path):
    cache = str(tmp_path / "cache")
    out = kubectl(kubeconfig, "explain", "job.spec", cache_dir=cache)
    assert "KIND:       Job" in out and "FIELD: spec <JobSpec>" in out, out
    assert "backoffLimit\t<integer>" in out, out
    assert "Specifies the number of retries before marking this job failed." in out, out
    out = kubectl(kubeconfig, "explain", "job.spec.backoffLimit", cache_dir=cache)
    assert "Specifies the number of retries before marking this job failed." in out, out
    out = kubectl(kubeconfig, "explain", "pod.spec.containers", cache_dir=cache)
    assert "FIELD: containers <[]Container>" in out, out
    assert "List of containers belonging to the pod." in out, out
