"""The Dagster names the parity harness needs, found by feature detection, so that the same harness
(dagster_harness.py, dagster_render.py, dagster_complete.py) runs on every Dagster from 1.1.9 to
1.13.x. Nothing here changes what Dagster computes: it only picks the class / keyword that the
installed version spells (1.1.9: PipelinePythonOrigin, pipeline_name=, LaunchRunContext.pipeline_run,
ExecuteRunArgs(pipeline_origin=, pipeline_run_id=) in dagster._grpc.types, ...).

Imports are lazy: this module is imported before the process environment is set up.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any


def dagster_version() -> str:
    import dagster

    return dagster.__version__


def _first_module(*names: str):
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(f"none of {names} importable")


def _first_attr(module, *names: str):
    for name in names:
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"{module.__name__} has none of {names}")


def _params(cls) -> set[str]:
    return set(inspect.signature(cls.__new__).parameters)


@functools.lru_cache(maxsize=None)
def run_module():
    """dagster._core.storage.dagster_run (>= 1.2) or pipeline_run (1.1)."""
    return _first_module("dagster._core.storage.dagster_run", "dagster._core.storage.pipeline_run")


def run_status():
    return run_module().DagsterRunStatus


def runs_filter(**kwargs):
    return run_module().RunsFilter(**kwargs)


def python_origin(job_name: str, repository_origin):
    import dagster._core.origin as origin

    cls = _first_attr(origin, "JobPythonOrigin", "PipelinePythonOrigin")
    return cls(job_name, repository_origin)


def remote_origin_classes():
    """(code location origin, repository origin, job origin) classes of the installed version."""
    m = _first_module("dagster._core.remote_origin", "dagster._core.remote_representation.origin",
                      "dagster._core.host_representation.origin")
    return (
        _first_attr(m, "GrpcServerCodeLocationOrigin", "GrpcServerRepositoryLocationOrigin"),
        _first_attr(m, "RemoteRepositoryOrigin", "ExternalRepositoryOrigin"),
        _first_attr(m, "RemoteJobOrigin", "ExternalJobOrigin", "ExternalPipelineOrigin"),
    )


def dagster_run(*, job_name: str, run_id: str, run_config, tags, status, job_code_origin,
                remote_job_origin):
    cls = run_module().DagsterRun
    params = _params(cls)
    kwargs: dict[str, Any] = {"run_id": run_id, "run_config": run_config, "tags": tags, "status": status}
    kwargs["job_name" if "job_name" in params else "pipeline_name"] = job_name
    kwargs["job_code_origin" if "job_code_origin" in params else "pipeline_code_origin"] = job_code_origin
    for name in ("remote_job_origin", "external_job_origin", "external_pipeline_origin"):
        if name in params:
            kwargs[name] = remote_job_origin
            break
    return cls(**kwargs)


def launch_context(dagster_run_obj, resume_attempt: int = 0):
    from dagster._core.launcher import LaunchRunContext, ResumeRunContext

    cls = ResumeRunContext if resume_attempt else LaunchRunContext
    key = "dagster_run" if "dagster_run" in cls._fields else "pipeline_run"
    kwargs = {key: dagster_run_obj, "workspace": None}
    if resume_attempt:
        kwargs["resume_attempt_number"] = resume_attempt
    return cls(**kwargs)


def run_args_classes():
    """(ExecuteRunArgs, ResumeRunArgs)."""
    from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs

    return ExecuteRunArgs, ResumeRunArgs


def run_args(cls, *, job_origin, run_id: str, instance_ref, set_exit_code_on_failure):
    params = _params(cls)
    kwargs = {"instance_ref": instance_ref, "set_exit_code_on_failure": set_exit_code_on_failure}
    kwargs["job_origin" if "job_origin" in params else "pipeline_origin"] = job_origin
    kwargs["run_id" if "run_id" in params else "pipeline_run_id"] = run_id
    return cls(**kwargs)


def step_args_job_origin(step_args):
    return getattr(step_args, "job_origin", None) or step_args.pipeline_origin


def step_args_run_id(step_args) -> str:
    return getattr(step_args, "run_id", None) or step_args.pipeline_run_id


def origin_job_name(job_origin) -> str:
    return getattr(job_origin, "job_name", None) or job_origin.pipeline_name


def instance_ref_from_dir(base_dir: str, config_dir: str, overrides):
    """InstanceRef.from_dir with `base_dir` (a container path that need not exist here).
    Newer versions read dagster.yaml from `config_dir`; 1.1 reads it from base_dir and checks that
    base_dir is a directory, so that check is answered for base_dir only, during the call."""
    import os

    from dagster._core.instance.ref import InstanceRef

    if "config_dir" in inspect.signature(InstanceRef.from_dir).parameters:
        return InstanceRef.from_dir(base_dir, config_dir=config_dir, overrides=overrides)
    real_isdir = os.path.isdir
    os.path.isdir = lambda p: True if p == base_dir else real_isdir(p)
    try:
        return InstanceRef.from_dir(base_dir, overrides=overrides)
    finally:
        os.path.isdir = real_isdir


@functools.lru_cache(maxsize=None)
def unpack_mutates() -> bool:
    """Whether unpack_value consumes its input (1.1.9 pops "__class__" from the dicts it reads)."""
    from dagster import AssetKey
    from dagster._serdes import pack_value, unpack_value

    packed = pack_value(AssetKey(["probe"]))
    before = repr(packed)
    unpack_value(packed)
    return repr(packed) != before


def step_tags(tags: dict):
    """Op tags as ExecutionStep.tags holds them: a frozentags where the installed dagster-k8s checks
    for one (older versions), else the plain mapping."""
    import dagster._utils as utils
    from dagster_k8s import job

    if hasattr(utils, "frozentags") and "frozentags" in inspect.getsource(job.get_user_defined_k8s_config):
        return utils.frozentags(tags)
    return tags


def plan_context(*, origin, run_id: str, instance, executor):
    """The executor's plan context as _submit_task_k8s_job reads it (both spellings)."""
    from types import SimpleNamespace

    reconstructable = SimpleNamespace(get_python_origin=lambda: origin)
    run = SimpleNamespace(run_id=run_id)
    return SimpleNamespace(reconstructable_job=reconstructable, reconstructable_pipeline=reconstructable,
                           dagster_run=run, pipeline_run=run, instance=instance, executor=executor)
