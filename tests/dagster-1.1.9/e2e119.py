"""What the Dagster 1.1.9 end-to-end tests read back: the seed deployment's CeleryK8sRunLauncher
keys and the cluster objects they name, a run's events from the instance's storage, and the
run's Jobs and pods listed on the dev cluster."""
from __future__ import annotations

import json
import os
import sys
import time

from kubernetes import client

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from dagster_stack import NAMESPACE  # noqa: E402

# The seed's CeleryK8sRunLauncher config (its Helm values rendered into dagster.yaml,
# tests/fixtures/cases/celery_run.json) less what points at its cluster: the stack sets
# dagster_home, broker, backend and the kubeconfig; 0.17.9 takes no job_namespace.
_SEED = json.load(open(os.path.join(ROOT, "tests", "fixtures", "cases", "celery_run.json")))
SEED_LAUNCHER = {k: _SEED["launcher"][k] for k in (
    "env_config_maps", "labels", "image_pull_secrets", "service_account_name")}


def create_seed_objects(stack) -> None:
    """The ServiceAccount, ConfigMap and pull Secret the seed's launcher config names."""
    api = stack.kube()
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(
        NAMESPACE, {"metadata": {"name": SEED_LAUNCHER["service_account_name"]}})
    for name in SEED_LAUNCHER["env_config_maps"]:
        core.create_namespaced_config_map(
            NAMESPACE, {"metadata": {"name": name}, "data": {"SEED_PIPELINE_ENV": "1"}})
    for secret in SEED_LAUNCHER["image_pull_secrets"]:
        core.create_namespaced_secret(NAMESPACE, {
            "metadata": {"name": secret["name"]}, "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": '{"auths": {}}'}})
    api.close()


def wait_until(fn, what: str, timeout: float, debug=lambda: ""):
    deadline = time.time() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"{what} after {timeout:g}s\n{debug()}")
        time.sleep(0.3)


def step_events(stack, run_id) -> dict[str, list[str]]:
    """Each step's Dagster event types, in order, from the instance's event log."""
    out: dict[str, list[str]] = {}
    for r in stack.instance.all_logs(run_id):
        if r.is_dagster_event and r.step_key:
            out.setdefault(r.step_key, []).append(r.dagster_event.event_type_value)
    return out


def step_error(stack, run_id, step_key: str) -> str:
    """The error text of the step's one STEP_FAILURE event."""
    from dagster._core.events import DagsterEventType

    records = stack.instance.get_records_for_run(
        run_id, of_type=DagsterEventType.STEP_FAILURE).records
    [failure] = [r for r in records if r.event_log_entry.step_key == step_key]
    return failure.event_log_entry.dagster_event.event_specific_data.error.to_string()


def jobs(stack, run_id, component: str) -> list:
    """The run's Jobs of one component (run_worker, step_worker), as stored."""
    api = stack.kube()
    found = client.BatchV1Api(api).list_namespaced_job(
        NAMESPACE, label_selector=f"dagster/run-id={run_id},"
                                  f"app.kubernetes.io/component={component}").items
    out = [api.sanitize_for_serialization(j) for j in found]
    api.close()
    return out


def run_objects(stack, run_id, job_names=()) -> list[str]:
    """Every Job and pod in the namespace that is the run's: labelled with its run id, or
    one of `job_names`, or a pod of one of them."""
    api = stack.kube()
    names = []
    for j in client.BatchV1Api(api).list_namespaced_job(NAMESPACE).items:
        if (j.metadata.labels or {}).get("dagster/run-id") == run_id or \
                j.metadata.name in job_names:
            names.append(f"job/{j.metadata.name}")
    for p in client.CoreV1Api(api).list_namespaced_pod(NAMESPACE).items:
        labels = p.metadata.labels or {}
        if labels.get("dagster/run-id") == run_id or labels.get("job-name") in job_names:
            names.append(f"pod/{p.metadata.name}")
    api.close()
    return names


def built_for_119(job: dict) -> list[str]:
    """How the Job departs from what Dagster 1.1.9 builds (compat errata 15): its version
    label, no code-location label (Job or pod), no automountServiceAccountToken."""
    wrong = []
    pod = job["spec"]["template"]
    for where, labels in (("Job", job["metadata"]["labels"]), ("pod", pod["metadata"]["labels"])):
        if labels.get("app.kubernetes.io/version") != "1.1.9":
            wrong.append(f"{where} version {labels.get('app.kubernetes.io/version')!r}")
        if "dagster/code-location" in labels:
            wrong.append(f"{where} has dagster/code-location")
    if "automountServiceAccountToken" in pod["spec"]:
        wrong.append("automountServiceAccountToken is set")
    return wrong
