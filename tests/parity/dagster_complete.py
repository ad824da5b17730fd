"""Complete a generated case with what the REAL Dagster of this process computes for it.

The generator (gen_*.py) decides the inputs; what Dagster derives from them is computed here with
the installed Dagster (any 1.1.9 .. 1.13.x), so a case carries exactly what that version's
launcher / executor would send:

- run cases: `run.args`, the run-worker argv = real `ExecuteRunArgs` / `ResumeRunArgs`
  `.get_command_args()` with the instance ref the launcher passes;
- step cases: `task_kwargs`, the kwargs of the `execute_step_k8s_job` message = the real
  `celery_k8s_job_executor` factory + the real `_submit_task_k8s_job` (only the Celery publish is
  intercepted), through kombu's JSON serializer like on the wire. 1.1.9 publishes 7 kwargs and
  an ExecuteStepArgs without print_serialized_events; 1.13 publishes 8 (+ per_step_k8s_config).

    complete(skeleton) -> case    (run.args / task_kwargs filled in, "pending" removed)

A step skeleton is {"kind": "step", "pending": {launcher_cfg, executor_cfg, run_id, job_name,
origin_image, step_key, op_tags, previous_attempts, run_worker_env, kwargs_patch?}}; kwargs_patch
(a generated rejection: what another publisher could send) is applied after the real publish:
{"set": {kwarg: value}, "user_config": {section: value}}.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from types import SimpleNamespace
from typing import Any, Mapping

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dagster_compat as compat  # noqa: E402
import dagster_harness as h  # noqa: E402


class _Publish(BaseException):
    def __init__(self, kwargs, options):
        super().__init__("publish intercepted")
        self.kwargs = kwargs
        self.options = options


@contextlib.contextmanager
def _intercept_publish():
    import celery.canvas

    saved = celery.canvas.Signature.apply_async

    def apply_async(self, args=None, kwargs=None, **options):
        raise _Publish(dict(self.kwargs), options)

    celery.canvas.Signature.apply_async = apply_async
    try:
        yield
    finally:
        celery.canvas.Signature.apply_async = saved


def celery_step_kwargs(launcher_cfg: dict, executor_cfg: dict, *, run_id: str, job_name: str,
                       origin_image: str | None, step_key: str, op_tags: dict,
                       previous_attempts: dict, run_worker_env: dict) -> dict:
    """The kwargs this process's stock Dagster publishes for one step, as a Celery worker decodes
    them."""
    from dagster._config import process_config
    from dagster._core.execution.plan.state import KnownExecutionState
    from dagster_celery.make_app import make_app
    from dagster_celery_k8s.executor import _submit_task_k8s_job, celery_k8s_job_executor
    from kombu.serialization import dumps, loads

    ref = h.instance_ref_for("CeleryK8sRunLauncher", launcher_cfg)
    with h.process_env(run_worker_env), h.fake_kubernetes():
        launcher = ref.run_launcher  # what the run worker rehydrates from its instance ref
        processed = process_config(celery_k8s_job_executor.config_schema.config_type, executor_cfg)
        if not processed.success:
            raise ValueError(f"invalid executor config: {[e.message for e in processed.errors]}")
        executor = celery_k8s_job_executor.executor_creation_fn(
            SimpleNamespace(instance=SimpleNamespace(run_launcher=launcher),
                            executor_config=processed.value)
        )
        origin = h.job_python_origin(job_name, origin_image, None)
        plan_context = compat.plan_context(origin=origin, run_id=run_id,
                                           instance=h.InstanceStandIn(ref), executor=executor)
        step = SimpleNamespace(key=step_key, tags=compat.step_tags(op_tags))
        app = make_app(executor.app_args())
        with _intercept_publish():
            try:
                _submit_task_k8s_job(app, plan_context, step, "dagster", 5,
                                     KnownExecutionState(previous_retry_attempts=previous_attempts))
            except _Publish as published:
                kwargs = published.kwargs
            else:
                raise AssertionError("no publish")
    content_type, encoding, body = dumps(kwargs, serializer="json")
    return loads(body, content_type, encoding)


def _apply_kwargs_patch(kwargs: dict, patch: Mapping[str, Any] | None) -> dict:
    if not patch:
        return kwargs
    kwargs = copy.deepcopy(kwargs)
    kwargs.update(copy.deepcopy(patch.get("set") or {}))
    if patch.get("user_config"):
        udc = dict(kwargs.get("user_defined_k8s_config_dict") or {})
        udc.update(copy.deepcopy(patch["user_config"]))
        kwargs["user_defined_k8s_config_dict"] = udc
    return kwargs


def complete(skeleton: Mapping[str, Any]) -> dict:
    """The case with everything Dagster computes filled in (a new dict; key order as the corpus
    has always written it)."""
    if skeleton["kind"] == "run":
        case = copy.deepcopy(dict(skeleton))
        case["run"]["args"] = h.run_worker_args(case["launcher_class"], case["launcher"], case["run"])
        return case
    if skeleton["kind"] == "step":
        p = skeleton["pending"]
        kwargs = celery_step_kwargs(
            p["launcher_cfg"], p["executor_cfg"], run_id=p["run_id"], job_name=p["job_name"],
            origin_image=p["origin_image"], step_key=p["step_key"], op_tags=p["op_tags"],
            previous_attempts=p["previous_attempts"], run_worker_env=p["run_worker_env"],
        )
        case = {k: v for k, v in skeleton.items() if k not in ("pending", "task_kwargs")}
        case["task_kwargs"] = _apply_kwargs_patch(kwargs, p.get("kwargs_patch"))
        return case
    raise ValueError(f"unknown case kind {skeleton['kind']!r}")
