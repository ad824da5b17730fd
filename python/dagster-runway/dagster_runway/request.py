"""What the Runway launchers send to `runway serve`, built from a DagsterRun the way the
stock launchers read it, and what they make of the answers."""
from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from dagster_runway import compat
from dagster_runway._proto import launcher_pb2 as pb
from dagster_runway.client import RunwayClient, config_json
from dagster_runway.compat import DagsterRun, WorkerStatus, check
from dagster_runway.config import settings_of

logger = logging.getLogger("dagster_runway")

# __init__ arguments of the stock classes that are not launcher config.
_NOT_CONFIG = frozenset({"self", "inst_data", "k8s_client_batch_api", "k8s_client_core_api"})

_STATUS = {
    pb.WORKER_STATUS_RUNNING: WorkerStatus.RUNNING,
    pb.WORKER_STATUS_NOT_FOUND: WorkerStatus.NOT_FOUND,
    pb.WORKER_STATUS_FAILED: WorkerStatus.FAILED,
    pb.WORKER_STATUS_SUCCESS: WorkerStatus.SUCCESS,
    pb.WORKER_STATUS_UNKNOWN: WorkerStatus.UNKNOWN,
}


def bind_args(stock_init, args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The stock __init__'s arguments by name (a wrong one is the stock TypeError)."""
    bound = inspect.signature(stock_init).bind(None, *args, **kwargs)
    named = dict(bound.arguments)
    named.pop("self", None)
    return named


def env_names(values: Iterable[Any]) -> set[str]:
    """Names of the environment variables a Job built from these values reads from the
    launching process: bare `env_vars` entries (`"NAME"`, not `"NAME=value"`) and
    `{env: NAME}` config sources, anywhere inside."""
    names: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, Mapping):
            if len(v) == 1 and isinstance(v.get("env"), str):
                names.add(v["env"])
                return
            for key, item in v.items():
                if key == "env_vars" and isinstance(item, (list, tuple)):
                    names.update(s for s in item if isinstance(s, str) and "=" not in s)
                walk(item)
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)

    for value in values:
        walk(value)
    return names


def _env_values(names: Iterable[str]) -> dict[str, str]:
    # A missing variable is left out: the service then reports it by name, as the stock
    # launcher fails on it.
    return {n: os.environ[n] for n in sorted(names) if n in os.environ}


def _json_or_empty(value: Any, what: str) -> str:
    if not value:
        return ""
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise check.CheckError(f"{what} cannot be sent to runway serve as JSON: {e}")


def run_message(
    run: DagsterRun, args: Iterable[str], resume_attempt: int, include_run_config: bool
) -> pb.Run:
    """The proto Run: what the stock launchers read off the run to build its Job."""
    job_origin = check.not_none(compat.code_origin(run))
    repository_origin = job_origin.repository_origin
    message = pb.Run(
        run_id=run.run_id,
        job_name=compat.origin_job_name(job_origin),
        location_name=compat.location_name(run),
        container_context_json=_json_or_empty(
            repository_origin.container_context, "the code location's container_context"
        ),
        tags={str(k): str(v) for k, v in (run.tags or {}).items()},
        args=list(args),
        resume_attempt=resume_attempt,
        run_config_json=_json_or_empty(run.run_config, "the run config")
        if include_run_config
        else "",
    )
    if repository_origin.container_image:
        message.image = repository_origin.container_image
    return message


def health_result(response: pb.CheckRunWorkerHealthResponse):
    """The service's answer as Dagster's CheckRunHealthResult."""
    status = _STATUS.get(response.status)
    if status is None:
        return compat.health_result(
            WorkerStatus.UNKNOWN,
            f"runway serve answered an unknown worker status ({response.status})",
        )
    return compat.health_result(
        status,
        response.message or None,
        transient=True if response.transient else None,
        run_worker_id=response.job_name or None,
    )


class Connection:
    """The service side of one launcher: its client, and the config it sends."""

    def __init__(self, launcher_class: str, stock_args: Mapping[str, Any], runway: Mapping):
        self.launcher_class = launcher_class
        self.settings = settings_of(runway)
        self.client = RunwayClient(self.settings)
        # The config the stock class was given (dagster.yaml's, processed), minus Runway's
        # own keys: the service renders the Job from exactly that.
        self.config = {k: v for k, v in stock_args.items() if k not in _NOT_CONFIG}
        self.config_json = config_json(self.config)
        self.fail_unstartable = runway.get("runway_fail_unstartable_runs", True) is not False

    def launch(self, run: DagsterRun, args, resume_attempt: int, extra_env_sources=()):
        celery = self.launcher_class == "CeleryK8sRunLauncher"
        message = run_message(run, args, resume_attempt, include_run_config=celery)
        origin = check.not_none(compat.code_origin(run))
        sources = [self.config, origin.repository_origin.container_context, *extra_env_sources]
        env = _env_values(env_names(sources))
        response = self.client.launch(
            self.launcher_class,
            self.config_json,
            message,
            env,
            resume=resume_attempt > 0,
            dagster_version=compat.DAGSTER_VERSION,
        )
        for name in response.dropped_env_vars:
            logger.debug("runway serve dropped user env var %s (allowlist)", name)
        return response


def warn_on_namespace_mismatch(run: DagsterRun, expected: Optional[str], response) -> None:
    if expected and response.namespace and response.namespace != expected:
        logger.warning(
            "run %s: runway serve created Job %s in namespace %s, not %s as the launcher"
            " config and container context say",
            run.run_id,
            response.job_name,
            response.namespace,
            expected,
        )
