"""Every Dagster internal dagster-runway reaches, in one place, for Dagster 1.1.9
(dagster-k8s 0.17.9) through 1.13 (0.29).

The launchers subclass whichever stock classes are installed, so they must speak that
version's internals and keep its bookkeeping. Renames (pipeline -> job, external -> remote,
metadata entry lists -> metadata dicts) are found by looking at what exists. Behaviours
that changed without a name to look for are keyed on dagster-k8s's version, at the release
that changed them:

- 0.17.20: health judges a finished Job of a run still STARTED as a failure;
- 0.24.5: the `dagster/image` tag is the built Job's image, set once the Job is built;
  before, it is the configured image (code location, executor or launcher), set before the
  Job is built (from 0.20.6 only when there is one).

Tested on 1.1.9 and 1.13.27; the versions between take the same branches, untested.
"""
from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Mapping
from typing import Any, Optional

from dagster import _check as check
from dagster._core.events import EngineEventData
from dagster._core.launcher import LaunchRunContext, ResumeRunContext
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import DOCKER_IMAGE_TAG
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster._utils.merger import merge_dicts
from dagster.version import __version__ as DAGSTER_VERSION
from dagster_celery_k8s.launcher import (
    _get_validated_celery_k8s_executor_config as celery_executor_config,
)
from dagster_k8s.job import get_job_name_from_run_id, get_user_defined_k8s_config
from dagster_k8s.version import __version__ as DAGSTER_K8S_VERSION

try:
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
except ImportError:  # Dagster 1.1
    from dagster._core.storage.pipeline_run import (  # type: ignore[no-redef]
        DagsterRun,
        DagsterRunStatus,
    )

# The names that are the same in every supported version, reached through here too.
__all__ = [
    "DAGSTER_K8S_VERSION",
    "DAGSTER_VERSION",
    "DOCKER_IMAGE_TAG",
    "DagsterRun",
    "DagsterRunStatus",
    "LaunchRunContext",
    "ResumeRunContext",
    "WorkerStatus",
    "celery_executor_config",
    "check",
    "get_job_name_from_run_id",
    "merge_dicts",
]


def version_tuple(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a release; a development build ("1!0+dev") is newest."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return tuple(int(x) for x in m.groups()) if m else (sys.maxsize,)


_K8S = version_tuple(DAGSTER_K8S_VERSION)

# dagster-k8s 0.17.20 added "Run has not completed but K8s job has no active pods".
HEALTH_JUDGES_RUN_STATUS = _K8S >= (0, 17, 20)
# dagster-k8s 0.24.5 tags the run with the built Job's image, after building it.
IMAGE_TAG_FROM_JOB = _K8S >= (0, 24, 5)
# dagster-k8s 0.20.6 to 0.24.4 tag the configured image only when there is one.
IMAGE_TAG_ONLY_IF_SET = (0, 20, 6) <= _K8S < (0, 24, 5)


# === runs and contexts =======================================================================


def context_run(context) -> DagsterRun:
    """The run of a LaunchRunContext or ResumeRunContext (`pipeline_run` in 1.1)."""
    run = getattr(context, "dagster_run", None)
    return run if run is not None else context.pipeline_run


def code_origin(run: DagsterRun):
    """The run's JobPythonOrigin (a PipelinePythonOrigin in 1.1), or None."""
    if hasattr(run, "job_code_origin"):
        return run.job_code_origin
    return run.pipeline_code_origin


def origin_job_name(origin) -> str:
    name = getattr(origin, "job_name", None)
    return name if name is not None else origin.pipeline_name


def location_name(run: DagsterRun) -> str:
    """The code location's name, or "" for a run without a remote origin."""
    for attr in ("remote_job_origin", "external_job_origin", "external_pipeline_origin"):
        origin = getattr(run, attr, None)
        if origin is not None:
            return origin.location_name
    return ""


def _takes(cls, name: str) -> bool:
    return name in inspect.signature(cls.__new__).parameters


def run_worker_args(origin, run_id: str, instance_ref, set_exit_code_on_failure, resume: bool):
    """`dagster api execute_run ...` (or `resume_run`): the stock run worker's argv."""
    cls = ResumeRunArgs if resume else ExecuteRunArgs
    if _takes(cls, "job_origin"):
        args = cls(
            job_origin=origin,
            run_id=run_id,
            instance_ref=instance_ref,
            set_exit_code_on_failure=set_exit_code_on_failure,
        )
    else:  # Dagster 1.1
        args = cls(
            pipeline_origin=origin,
            pipeline_run_id=run_id,
            instance_ref=instance_ref,
            set_exit_code_on_failure=set_exit_code_on_failure,
        )
    return args.get_command_args()


def validate_k8s_tags(run: DagsterRun) -> None:
    """Parses the run's `dagster-k8s/config` tags as the stock launcher does, raising its
    error for an invalid one (0.17.9 takes the tags only as `frozentags`)."""
    tags = run.tags or {}
    try:
        from dagster._utils import frozentags
    except ImportError:
        get_user_defined_k8s_config(tags)
    else:
        get_user_defined_k8s_config(frozentags(tags))


# === the instance =============================================================================


_METADATA_MAPPING = _takes(EngineEventData, "metadata")


def engine_event_data(metadata: Mapping[str, Any]) -> EngineEventData:
    """EngineEventData of text metadata (in 1.1, a list of MetadataEntry)."""
    if _METADATA_MAPPING:
        return EngineEventData(dict(metadata))
    from dagster import MetadataEntry

    return EngineEventData([MetadataEntry(k, value=v) for k, v in metadata.items()])


def engine_error_data() -> EngineEventData:
    """EngineEventData of the exception being handled."""
    return EngineEventData.engine_error(serializable_error_info_from_exc_info(sys.exc_info()))


def report_engine_event(
    instance, message: str, run: DagsterRun, data: Optional[EngineEventData] = None, cls=None
) -> None:
    # Positional: the run's keyword is `pipeline_run` in 1.1, `dagster_run` later.
    instance.report_engine_event(message, run, data, cls=cls)


def report_run_failed_to_start(instance, run: DagsterRun, message: str) -> None:
    """Fails the run, as a run worker that could not start (with that reason where the
    failure data has one)."""
    try:
        from dagster._core.events import JobFailureData, RunFailureReason
    except ImportError:
        instance.report_run_failed(run, message)
        return
    instance.report_run_failed(
        run,
        message,
        JobFailureData(error=None, failure_reason=RunFailureReason.JOB_INITIALIZATION_FAILURE),
    )


def has_instance(launcher) -> bool:
    """Whether the launcher has been given its instance yet."""
    check = getattr(launcher, "has_instance", None)
    if check is not None:
        return bool(check)
    # In 1.1 `_instance` is None until then; later it raises.
    return launcher._instance is not None


def resume_attempt(launcher, run: DagsterRun) -> int:
    """The run's current resume attempt as the stock K8sRunLauncher counts it (0 for none)."""
    get = getattr(launcher, "_get_resume_attempt_number", None)
    if get is not None:
        return get(run) or 0
    return launcher._instance.count_resume_run_attempts(run.run_id) or 0


def health_result(
    status: WorkerStatus,
    msg: Optional[str] = None,
    transient: Optional[bool] = None,
    run_worker_id: Optional[str] = None,
) -> CheckRunHealthResult:
    """A CheckRunHealthResult with the fields this Dagster has (status and msg in 1.1)."""
    fields = {"msg": msg, "transient": transient, "run_worker_id": run_worker_id}
    known = CheckRunHealthResult._fields
    return CheckRunHealthResult(status, **{k: v for k, v in fields.items() if k in known})


def health_error(exc_info=None) -> CheckRunHealthResult:
    return CheckRunHealthResult(
        WorkerStatus.UNKNOWN,
        str(serializable_error_info_from_exc_info(exc_info or sys.exc_info())),
    )


# === the launchers ============================================================================


def celery_job_namespace(launcher, exc_config: Mapping[str, Any]) -> Optional[str]:
    """The run worker's namespace as CeleryK8sRunLauncher reads it: the executor's, else the
    launcher's `job_namespace` (0.18.2+; 0.17.9's executor config defaults it)."""
    return exc_config.get("job_namespace", getattr(launcher, "job_namespace", None))


def image_tag_before_job(instance, run: DagsterRun, configured_image: Optional[str]) -> None:
    """dagster-k8s before 0.24.5: the `dagster/image` tag is the configured image, set
    before the Job is built (so a run with no image fails on it, before any event)."""
    if IMAGE_TAG_FROM_JOB:
        return
    if IMAGE_TAG_ONLY_IF_SET and not configured_image:
        return
    instance.add_run_tags(run.run_id, {DOCKER_IMAGE_TAG: configured_image})


def image_tag_from_job(instance, run: DagsterRun, job_image: str) -> None:
    """dagster-k8s 0.24.5+: the `dagster/image` tag is the image of the Job's container."""
    if IMAGE_TAG_FROM_JOB:
        instance.add_run_tags(run.run_id, {DOCKER_IMAGE_TAG: job_image})
