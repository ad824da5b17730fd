"""Render a parity corpus entry with the REAL Dagster packages.

    render(entry) -> {"ok": True, "job": <Job dict as the k8s client would send it>, "namespace": str}
                   | {"ok": False, "error": "<ExceptionType>: <message>"}

Run cases: the launcher is loaded exactly as Dagster loads it from dagster.yaml
(`InstanceRef.from_dir(...).run_launcher`, i.e. ConfigurableClassData.rehydrate: process_config +
from_config_value), registered with a minimal instance stand-in, and `launch_run` / `resume_run`
is called with a real DagsterRun. Step cases: the real `execute_step_k8s_job` Celery task body
(from `create_k8s_job_task`) is called with the message kwargs, `DagsterInstance.from_ref` returning
a stand-in holding the run record (status STARTED, no remote origin).

Only the Kubernetes config loading and the Kubernetes API objects are faked (see
dagster_harness.fake_kubernetes); `create_namespaced_job` captures the body and stops the path.
Runs on any Dagster 1.1.9 .. 1.13.x (names through dagster_compat); dagster_batch.py drives it in
another version's venv.

CLI: python dagster_render.py CASE.json [--env-json ENV.json]  (prints the Job or the error)
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import traceback
from typing import Any, Mapping

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dagster_compat as compat  # noqa: E402
import dagster_harness as h  # noqa: E402

_CELERY_TASK = None


def _celery_task():
    """The task exactly as a celery-k8s worker runs it (`celery -A dagster_celery_k8s.app`)."""
    global _CELERY_TASK
    if _CELERY_TASK is None:
        from dagster_celery_k8s.app import execute_step_k8s_job  # create_k8s_job_task(app)

        _CELERY_TASK = execute_step_k8s_job
    return _CELERY_TASK


@contextlib.contextmanager
def _patched_from_ref(instance):
    from dagster import DagsterInstance

    saved = DagsterInstance.__dict__["from_ref"]
    DagsterInstance.from_ref = staticmethod(lambda ref: instance)
    try:
        yield
    finally:
        DagsterInstance.from_ref = saved


def _error(exc: BaseException) -> dict:
    from dagster._core.errors import DagsterInvalidConfigError

    msg = str(exc).split("\n")[0]
    if isinstance(exc, DagsterInvalidConfigError):
        # the default str() embeds the whole schema; keep the config errors instead
        details = "; ".join(err.message for err in exc.errors) if exc.errors else ""
        head = str(exc.args[0]).split("\n")[0].split(" for {")[0]  # no schema repr
        msg = f"{head}: {details}" if details else head
    return {"ok": False, "error": f"{type(exc).__name__}: {msg}"}


def _captured(instance, captured: "h.JobCaptured") -> dict:
    return {
        "ok": True,
        "job": h.sanitize(captured.body),
        "namespace": captured.namespace,
        "engine_events": list(instance.engine_events),
        "added_tags": dict(instance.added_tags),
    }


def _prepare_run(case: Mapping[str, Any]):
    DagsterRunStatus = compat.run_status()

    launcher_class = case["launcher_class"]
    launcher_cfg = case["launcher"]
    run = case["run"]
    resume_attempt = int(run.get("resume_attempt") or 0)

    ref = h.instance_ref_for(launcher_class, launcher_cfg)
    launcher = ref.run_launcher  # ConfigurableClassData.rehydrate(as_type=RunLauncher)
    if type(launcher).__name__ != launcher_class:
        raise AssertionError(f"loaded {type(launcher).__name__}, expected {launcher_class}")
    dagster_run = h.dagster_run_for(
        run, status=DagsterRunStatus.STARTED if resume_attempt else DagsterRunStatus.STARTING
    )
    instance = h.InstanceStandIn(ref, run=dagster_run, resume_attempts=resume_attempt)
    launcher.register_instance(instance)

    def once() -> dict:
        instance.engine_events.clear()
        try:
            if resume_attempt:
                launcher.resume_run(compat.launch_context(dagster_run, resume_attempt))
            else:
                launcher.launch_run(compat.launch_context(dagster_run))
        except h.JobCaptured as captured:
            return _captured(instance, captured)
        raise AssertionError("launcher returned without calling create_namespaced_job")

    once.instance = instance  # keeps the weakly-referenced instance alive
    return once


# What a Celery worker pod has: the task's first engine event reads them (1.1.9's crashes on None).
WORKER_HOSTNAME = "dagster-celery-workers-0"
WORKER_NODE_NAME = f"dagster-abc123@{WORKER_HOSTNAME}"


def _prepare_step(case: Mapping[str, Any]):
    from dagster._serdes import unpack_value

    task = _celery_task()  # imported first, as in a worker: it registers ExecuteStepArgs for serdes
    # deep copies: 1.1.9's unpack_value pops "__class__" from the dicts it is given
    kwargs = copy.deepcopy(dict(case["task_kwargs"]))
    # The run record a worker would load from run storage (errata 6: from kwargs alone the job
    # name is pipeline_origin.pipeline_name and there is no remote origin / code location).
    step_args = unpack_value(copy.deepcopy(kwargs["execute_step_args_packed"]))
    job_origin = compat.step_args_job_origin(step_args)
    dagster_run = compat.dagster_run(
        job_name=compat.origin_job_name(job_origin),
        run_id=compat.step_args_run_id(step_args),
        run_config={},
        tags={},
        status=compat.run_status().STARTED,
        job_code_origin=job_origin,
        remote_job_origin=None,
    )
    instance = h.InstanceStandIn(step_args.instance_ref, run=dagster_run)

    def once() -> dict:
        instance.engine_events.clear()
        call_kwargs = copy.deepcopy(kwargs) if compat.unpack_mutates() else kwargs
        os.environ.setdefault("HOSTNAME", WORKER_HOSTNAME)
        task.push_request(hostname=WORKER_NODE_NAME)  # the request a worker delivers with
        try:
            with _patched_from_ref(instance):
                try:
                    result = task._get_current_object().run(**call_kwargs)
                except h.JobCaptured as captured:
                    return _captured(instance, captured)
        finally:
            task.pop_request()
        raise AssertionError(f"task returned {result!r} without calling create_namespaced_job")

    return once


def prepare(case: Mapping[str, Any]):
    """Set up everything that a deployment sets up once (launcher loaded from the instance ref,
    run record stored, worker task registered) and return a function that renders one Job.
    Must be called, like the returned function, inside process_env() and fake_kubernetes()."""
    if case["kind"] == "run":
        return _prepare_run(case)
    if case["kind"] == "step":
        return _prepare_step(case)
    raise ValueError(f"unknown case kind {case['kind']!r}")


def render(entry: Mapping[str, Any], *, with_traceback: bool = False) -> dict:
    """Render one corpus entry ({"name", "case", "env"}) with the real Python packages."""
    env = entry.get("env") or {}
    try:
        with h.process_env(env), h.fake_kubernetes():
            return prepare(entry["case"])()
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - Dagster's rejection is the expected outcome
        out = _error(exc)
        if with_traceback:
            out["traceback"] = traceback.format_exc()
        return out


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", help="case JSON file, or a corpus entry with name/case/env")
    parser.add_argument("--env-json", help="JSON file with the env dict for the case")
    parser.add_argument("--traceback", action="store_true")
    args = parser.parse_args(argv)
    with open(args.case, encoding="utf-8") as f:
        doc = json.load(f)
    entry = doc if "case" in doc else {"name": os.path.basename(args.case), "case": doc, "env": {}}
    if args.env_json:
        with open(args.env_json, encoding="utf-8") as f:
            entry["env"] = json.load(f)
    out = render(entry, with_traceback=args.traceback)
    if out["ok"]:
        print(json.dumps(out["job"], indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    print(out["error"], file=sys.stderr)
    if args.traceback:
        print(out.get("traceback", ""), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
