"""Step tasks as dagster-celery-k8s publishes them, for the worker suites: a dev
cluster with the process kubelet, a DagsterInstance on a fresh PostgreSQL database,
dagster-celery-k8s's own task object, and the kwargs `_submit_task_k8s_job` sends."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

import pytest
from kubernetes import client, config

from devcluster import dev_cluster
from worker_env import BACKEND, BROKER, fresh_database, postgres_storage

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_STEP = os.path.join(ROOT, "tests", "python", "steps", "fake_step.py")
NS = "default"


@pytest.fixture(scope="module")
def cluster():
    with dev_cluster("--images", "*,!*.invalid/*") as path:
        api = config.new_client_from_config(config_file=path)
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(NS, {"metadata": {"name": "dagster-instance"},
                                               "data": {"dagster.yaml": "{}"}})
        core.create_namespaced_secret(NS, {"metadata": {"name": "dagster-postgresql-secret"},
                                           "stringData": {"postgresql-password": "unused"}})
        yield path, api
        api.close()


@pytest.fixture(scope="module")
def instance():
    """A DagsterInstance on a fresh PostgreSQL database."""
    from dagster import DagsterInstance

    with fresh_database("runway_wk") as db:
        home = tempfile.mkdtemp(prefix="runway-dh-")
        with open(os.path.join(home, "dagster.yaml"), "w") as f:
            f.write(postgres_storage(db) + "telemetry:\n  enabled: false\n")
        inst = DagsterInstance.from_config(home)
        yield inst
        inst.dispose()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def celery_task():
    from dagster_celery.make_app import make_app
    from dagster_celery_k8s.executor import create_k8s_job_task

    app = make_app({"broker": BROKER, "backend": BACKEND, "include": [], "config_source": None,
                    "retries": None})
    return create_k8s_job_task(app)


def step_kwargs(instance, kubeconfig, step="my_op", behaviour="succeed",
                image="busybox:1.36", extra_env=(), run=None, namespace=NS):
    """A STARTED run (a new one unless given) and the kwargs `_submit_task_k8s_job`
    would send for one of its steps."""
    from dagster._core.code_pointer import FileCodePointer
    from dagster._core.execution.plan.state import KnownExecutionState
    from dagster._core.execution.retries import RetryMode
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test
    from dagster._grpc.types import ExecuteStepArgs
    from dagster._serdes import pack_value
    from dagster_k8s.job import DagsterK8sJobConfig

    if run is None:
        run = create_run_for_test(instance, job_name="my_job", status=DagsterRunStatus.STARTED)
    origin = JobPythonOrigin(
        "my_job",
        RepositoryPythonOrigin(
            executable_path=sys.executable,
            code_pointer=FileCodePointer(python_file=FAKE_STEP, fn_name="unused"),
            entry_point=[sys.executable, FAKE_STEP],
        ),
    )
    args = ExecuteStepArgs(
        job_origin=origin, run_id=run.run_id, step_keys_to_execute=[step],
        instance_ref=instance.get_ref(), retry_mode=RetryMode.DISABLED,
        known_state=KnownExecutionState(), should_verify_step=True,
        print_serialized_events=True,
    )
    job_config = DagsterK8sJobConfig(
        job_image=image, dagster_home="/opt/dagster/dagster_home",
        instance_config_map="dagster-instance",
        env_vars=[f"STEP_BEHAVIOUR={behaviour}", *extra_env],
    )
    kwargs = dict(
        execute_step_args_packed=pack_value(args),
        job_config_dict=job_config._asdict(),
        job_namespace=namespace,
        load_incluster_config=False,
        job_wait_timeout=120.0,
        per_step_k8s_config={},
        user_defined_k8s_config_dict={},
        kubeconfig_file=kubeconfig,
    )
    return run, kwargs


def submit(celery_task, instance, queue, kubeconfig, priority=5, **kw):
    """Publishes one step as `_submit_task_k8s_job` does."""
    run, kwargs = step_kwargs(instance, kubeconfig, **kw)
    result = celery_task.si(**kwargs).apply_async(
        priority=priority, queue=queue, routing_key=f"{queue}.execute_step_k8s_job")
    return run, result


def run_jobs(api, run_id, present, timeout=30.0):
    """The run's Jobs, once there are some (`present`) or none, or at the timeout."""
    batch = client.BatchV1Api(api)
    deadline = time.time() + timeout
    while True:
        jobs = batch.list_namespaced_job(NS, label_selector=f"dagster/run-id={run_id}").items
        if bool(jobs) == present or time.time() > deadline:
            return jobs
        time.sleep(0.1)


def events_of(serialized):
    from dagster._core.events import DagsterEvent
    from dagster._serdes import deserialize_value

    return [deserialize_value(s, DagsterEvent) for s in serialized]


def engine_messages(instance, run_id):
    return [r.dagster_event.message for r in instance.all_logs(run_id) if r.is_dagster_event
            and r.dagster_event.event_type_value == "ENGINE_EVENT"]
