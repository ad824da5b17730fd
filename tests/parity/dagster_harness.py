"""Shared plumbing for the parity harness: it builds the *inputs* the real Dagster code paths
need (instance ref, run record, code origin, process environment) and fakes only the
Kubernetes side (config loading and the API objects). It never re-implements Dagster logic.

Used by dagster_complete.py (to compute args / Celery kwargs with the real code),
dagster_render.py (to render the expected Jobs) and benches/python/render_bench.py. It runs on
every Dagster from 1.1.9 to 1.13.x (in that version's venv): version differences in names are
resolved in dagster_compat.py.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from typing import Any, Iterator, Mapping

import kubernetes
import kubernetes.client
import kubernetes.config

import dagster_compat as compat

# Paths inside the (virtual) Dagster containers. They are container paths that end up in the
# serialized InstanceRef / code origin, never paths of this machine.
DAGSTER_HOME_IN_CONTAINER = "/opt/dagster/dagster_home"
EXECUTABLE_PATH = "/usr/local/bin/python"
PYTHON_FILE = "/example_project/example_repo/repo.py"
WORKING_DIRECTORY = "/example_project"
REPOSITORY_ATTRIBUTE = "example_repo"
GRPC_HOST = "k8s-example-user-code-1"
GRPC_PORT = 3030

LAUNCHER_MODULES = {
    "K8sRunLauncher": "dagster_k8s",
    "CeleryK8sRunLauncher": "dagster_celery_k8s",
}


def base_env() -> dict[str, str]:
    """The minimal environment both implementations run with (case env goes on top)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


_ENV_LOCK = threading.RLock()


@contextlib.contextmanager
def process_env(env: Mapping[str, str]) -> Iterator[None]:
    """Run with os.environ == base_env() + env, restoring the real environment afterwards."""
    with _ENV_LOCK:
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(base_env())
            os.environ.update({str(k): str(v) for k, v in env.items()})
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


# --------------------------------------------------------------------------------------------
# Fake Kubernetes: config loading is a no-op, the API objects capture create_namespaced_job.
# --------------------------------------------------------------------------------------------


class JobCaptured(BaseException):
    """Raised by the fake BatchV1Api once the Job body is captured, to stop the code path.

    A BaseException so that no `except Exception` / `except ApiException` in Dagster swallows it.
    """

    def __init__(self, body: Any, namespace: str):
        super().__init__("job captured")
        self.body = body
        self.namespace = namespace


class _FakeBatchV1Api:
    def __init__(self, api_client=None):
        self.api_client = api_client

    def create_namespaced_job(self, namespace, body, **kwargs):
        raise JobCaptured(body, namespace)

    def __getattr__(self, name):  # any other call is unexpected in a render
        raise AssertionError(f"unexpected BatchV1Api.{name} call during render")


class _FakeCoreV1Api:
    def __init__(self, api_client=None):
        self.api_client = api_client

    def __getattr__(self, name):
        raise AssertionError(f"unexpected CoreV1Api.{name} call during render")


def _noop(*args, **kwargs):
    return None


@contextlib.contextmanager
def fake_kubernetes() -> Iterator[None]:
    saved = (
        kubernetes.config.load_incluster_config,
        kubernetes.config.load_kube_config,
        kubernetes.client.BatchV1Api,
        kubernetes.client.CoreV1Api,
        kubernetes.client.Configuration.get_default_copy(),
    )
    kubernetes.config.load_incluster_config = _noop
    kubernetes.config.load_kube_config = _noop
    kubernetes.client.BatchV1Api = _FakeBatchV1Api
    kubernetes.client.CoreV1Api = _FakeCoreV1Api
    try:
        yield
    finally:
        (
            kubernetes.config.load_incluster_config,
            kubernetes.config.load_kube_config,
            kubernetes.client.BatchV1Api,
            kubernetes.client.CoreV1Api,
            default_cfg,
        ) = saved
        # k8s_api_ssl_ca_cert_file mutates the global default configuration; undo that.
        kubernetes.client.Configuration.set_default(default_cfg)


_API_CLIENT = None


def sanitize(obj: Any) -> Any:
    """Serialize a kubernetes model the way the client puts it on the wire."""
    global _API_CLIENT
    if _API_CLIENT is None:
        _API_CLIENT = kubernetes.client.ApiClient()
    return _API_CLIENT.sanitize_for_serialization(obj)


# --------------------------------------------------------------------------------------------
# Instance: a real InstanceRef (built by InstanceRef.from_dir from a dagster.yaml) and a minimal
# DagsterInstance stand-in around it.
# --------------------------------------------------------------------------------------------


def instance_yaml(launcher_class: str, launcher_config: Mapping[str, Any]) -> dict[str, Any]:
    """The dagster.yaml of the (virtual) deployment: Helm-chart-like Postgres instance."""
    return {
        "run_launcher": {
            "module": LAUNCHER_MODULES[launcher_class],
            "class": launcher_class,
            "config": launcher_config,
        },
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"max_concurrent_runs": 25},
        },
        "storage": {
            "postgres": {
                "postgres_db": {
                    "username": "dagsterpg",
                    "password": {"env": "DAGSTER_PG_PASSWORD"},
                    "hostname": "dagster-postgresql",
                    "db_name": "dagsterpass",
                    "port": 5432,
                    "params": {},
                    "scheme": "postgresql+psycopg2",
                }
            }
        },
        "compute_logs": {
            "module": "dagster.core.storage.noop_compute_log_manager",
            "class": "NoOpComputeLogManager",
            "config": {},
        },
        "run_monitoring": {"enabled": True, "max_resume_run_attempts": 3},
        "telemetry": {"enabled": False},
    }


_CONFIG_DIR: str | None = None
_REF_CACHE: dict[str, Any] = {}


def _empty_config_dir() -> str:
    global _CONFIG_DIR
    if _CONFIG_DIR is None or not os.path.isdir(_CONFIG_DIR):
        _CONFIG_DIR = tempfile.mkdtemp(prefix="runway-parity-instance-")
    return _CONFIG_DIR


def instance_ref_for(launcher_class: str, launcher_config: Mapping[str, Any]):
    """InstanceRef exactly as `InstanceRef.from_dir` builds it for that dagster.yaml."""
    import json

    key = json.dumps([launcher_class, launcher_config], sort_keys=True)
    ref = _REF_CACHE.get(key)
    if ref is None:
        # a plain JSON copy: like a dagster.yaml read from disk, no shared sub-objects (which
        # yaml.dump would turn into &anchors / *aliases in the ref's config_yaml)
        plain_config = json.loads(json.dumps(launcher_config))
        ref = compat.instance_ref_from_dir(
            DAGSTER_HOME_IN_CONTAINER,
            config_dir=_empty_config_dir(),
            overrides=instance_yaml(launcher_class, plain_config),
        )
        _REF_CACHE[key] = ref
    return ref


_RUN_STORAGE = None


def run_storage():
    """A real (in-memory, sqlite) Dagster run storage shared by the stand-in instances, so that
    run-tag writes are checked exactly like in a deployment (e.g. a None `dagster/image` tag value
    is rejected by the storage's own checks)."""
    global _RUN_STORAGE
    if _RUN_STORAGE is None:
        from dagster._core.storage.runs import InMemoryRunStorage

        _RUN_STORAGE = InMemoryRunStorage()
    return _RUN_STORAGE


class InstanceStandIn:
    """The handful of DagsterInstance methods the launchers / the celery task call. Run records
    live in a real run storage; engine events are recorded (messages only) and swallowed."""

    def __init__(self, ref, run=None, resume_attempts: int = 0):
        self._ref = ref
        self._resume_attempts = resume_attempts
        self.engine_events: list[str] = []
        self.added_tags: dict[str, str] = {}
        if run is not None:
            storage = run_storage()
            if storage.has_run(run.run_id):
                storage.delete_run(run.run_id)
            storage.add_run(run)

    def get_ref(self):
        return self._ref

    def add_run_tags(self, run_id, new_tags):
        run_storage().add_run_tags(run_id, new_tags)
        self.added_tags.update(new_tags)

    def report_engine_event(self, message, dagster_run=None, engine_event_data=None, cls=None,
                            step_key=None, **kwargs):
        self.engine_events.append(message)
        return message

    def handle_new_event(self, *args, **kwargs):
        return None

    def count_resume_run_attempts(self, run_id):
        return self._resume_attempts

    def get_run_by_id(self, run_id):
        runs = run_storage().get_runs(compat.runs_filter(run_ids=[run_id]))
        return runs[0] if runs else None

    def report_run_canceling(self, *args, **kwargs):
        return None


# --------------------------------------------------------------------------------------------
# Code origins and run records
# --------------------------------------------------------------------------------------------


def job_python_origin(job_name: str, image: str | None, container_context: Any):
    from dagster._core.code_pointer import FileCodePointer
    from dagster._core.origin import RepositoryPythonOrigin

    return compat.python_origin(
        job_name,
        RepositoryPythonOrigin(
            executable_path=EXECUTABLE_PATH,
            code_pointer=FileCodePointer(
                python_file=PYTHON_FILE,
                fn_name=REPOSITORY_ATTRIBUTE,
                working_directory=WORKING_DIRECTORY,
            ),
            container_image=image,
            entry_point=["dagster"],
            container_context=container_context,
        ),
    )


def remote_job_origin(job_name: str, location_name: str | None):
    if location_name is None:
        return None
    location_cls, repository_cls, job_cls = compat.remote_origin_classes()
    return job_cls(
        repository_cls(
            location_cls(host=GRPC_HOST, port=GRPC_PORT, location_name=location_name),
            REPOSITORY_ATTRIBUTE,
        ),
        job_name,
    )


def dagster_run_for(run: Mapping[str, Any], status=None):
    return compat.dagster_run(
        job_name=run["job_name"],
        run_id=run["run_id"],
        run_config=run.get("run_config") or {},
        tags=dict(run.get("tags") or {}),
        status=status or compat.run_status().STARTING,
        job_code_origin=job_python_origin(
            run["job_name"], run.get("image"), run.get("container_context")
        ),
        remote_job_origin=remote_job_origin(run["job_name"], run.get("location_name")),
    )


def run_worker_args(launcher_class: str, launcher_config: Mapping[str, Any],
                    run: Mapping[str, Any]) -> list[str]:
    """argv the launcher computes: real ExecuteRunArgs / ResumeRunArgs.get_command_args()."""
    execute_run_args, resume_run_args = compat.run_args_classes()
    origin = job_python_origin(run["job_name"], run.get("image"), run.get("container_context"))
    ref = instance_ref_for(launcher_class, launcher_config)
    set_exit_code = launcher_config.get("fail_pod_on_run_failure")
    cls = resume_run_args if run.get("resume_attempt") else execute_run_args
    return list(
        compat.run_args(
            cls,
            job_origin=origin,
            run_id=run["run_id"],
            instance_ref=ref,
            set_exit_code_on_failure=set_exit_code,
        ).get_command_args()
    )
