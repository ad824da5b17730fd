"""What the Dagster end-to-end tests (test_dagster_e2e.py) read back from a running stack: a
run's events and step events from the instance's storage, its Jobs and pods on the dev
cluster, its run worker's process, and the Job the stock K8sRunLauncher would have built,
with what the API server adds dropped so the two compare."""
from __future__ import annotations

import copy
import os
import sys
import time

from kubernetes import client

from devcluster import server_fields_dropped

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from dagster_stack import NAMESPACE  # noqa: E402


def batch(stack) -> client.BatchV1Api:
    return client.BatchV1Api(stack.kube())


def core(stack) -> client.CoreV1Api:
    return client.CoreV1Api(stack.kube())


def events(stack, run_id) -> list:
    return [r for r in stack.instance.all_logs(run_id) if r.is_dagster_event]


def step_events(stack, run_id) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in events(stack, run_id):
        if r.step_key:
            out.setdefault(r.step_key, []).append(r.dagster_event.event_type_value)
    return out


def wait_until(fn, what: str, timeout: float, debug=lambda: ""):
    deadline = time.time() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"{what} after {timeout:g}s\n{debug()}")
        time.sleep(0.2)


def run_objects(stack, run_id) -> list[str]:
    selector = f"dagster/run-id={run_id}"
    jobs = batch(stack).list_namespaced_job(NAMESPACE, label_selector=selector).items
    pods = core(stack).list_namespaced_pod(NAMESPACE, label_selector=selector).items
    return [f"job/{j.metadata.name}" for j in jobs] + [f"pod/{p.metadata.name}" for p in pods]


def run_worker_pid(run_id: str, command: str = "execute_run") -> int:
    """The run worker's process (the process kubelet's child) by its command line."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if command.encode() in argv and any(run_id.encode() in a for a in argv):
            found.append(int(pid))
    assert len(found) == 1, (run_id, found)
    return found[0]


def stock_job(stack, run) -> dict:
    """The Job the stock dagster-k8s K8sRunLauncher builds for `run` from the same config,
    captured instead of created, with its bookkeeping calls kept off the run's event log."""
    from dagster._core.launcher import LaunchRunContext
    from dagster_k8s import K8sRunLauncher

    config = {k: v for k, v in stack.launcher_config()["config"].items()
              if not k.startswith("runway_")}
    launcher = K8sRunLauncher(**config)

    class Quiet:
        def __init__(self, instance):
            self._real = instance

        def __getattr__(self, name):
            return getattr(self._real, name)

        def add_run_tags(self, *a, **kw):
            pass

        def report_engine_event(self, *a, **kw):
            pass

    quiet = Quiet(stack.instance)
    launcher.register_instance(quiet)
    created = []
    launcher._api_client.create_namespaced_job_with_retries = (  # noqa: SLF001
        lambda body, namespace: created.append(body))
    launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    [body] = created
    return client.ApiClient().sanitize_for_serialization(body)


# What an API server fills in on create (as the dev cluster does): dropped from the stored
# Job where the body did not set them.
DEFAULTED = {
    "spec": {"completionMode": "NonIndexed", "completions": 1, "manualSelector": False,
             "parallelism": 1, "podReplacementPolicy": "TerminatingOrFailed", "suspend": False},
    "pod": {"dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
            "securityContext": {}, "terminationGracePeriodSeconds": 30},
    "container": {"terminationMessagePath": "/dev/termination-log",
                  "terminationMessagePolicy": "File"},
}


def without_defaults(stored: dict, sent: dict) -> dict:
    stored = copy.deepcopy(stored)

    def drop(have: dict, given: dict, defaults: dict):
        for key, value in defaults.items():
            if key not in given and have.get(key) == value:
                have.pop(key)

    drop(stored["spec"], sent["spec"], DEFAULTED["spec"])
    pod, sent_pod = stored["spec"]["template"]["spec"], sent["spec"]["template"]["spec"]
    drop(pod, sent_pod, DEFAULTED["pod"])
    for have, given in zip(pod["containers"], sent_pod["containers"]):
        drop(have, given, DEFAULTED["container"])
    return stored


def comparable(job: dict) -> dict:
    """The Job without what the API server and the Job controller add, the job-name
    labels included."""
    job = server_fields_dropped(job)
    for labels in (job["metadata"].get("labels") or {},
                   job["spec"]["template"]["metadata"]["labels"]):
        for key in [k for k in labels if k.endswith("job-name")]:
            labels.pop(key)
    return job
