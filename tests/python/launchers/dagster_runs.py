"""The Dagster 1.13 side of the launcher tests: instances whose run launcher is a given
class, runs of the seed deployment's code location, and reading their event logs."""
from __future__ import annotations

import contextlib
import json
import uuid

from dagster._core.code_pointer import FileCodePointer
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.remote_origin import (
    GrpcServerCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._core.test_utils import instance_for_test

from launcher_cluster import IMAGE, LOCATION, SEED


@contextlib.contextmanager
def instance_with(module: str, cls: str, config: dict):
    overrides = {"run_launcher": {"module": module, "class": cls, "config": config}}
    with instance_for_test(overrides=overrides, set_dagster_home=False) as instance:
        yield instance


def origin(job_name: str, image, container_context):
    return JobPythonOrigin(
        job_name,
        RepositoryPythonOrigin(
            executable_path="/usr/local/bin/python",
            code_pointer=FileCodePointer(
                python_file="/example_project/example_repo/repo.py",
                fn_name="example_repo",
                working_directory="/example_project",
            ),
            container_image=image,
            entry_point=["dagster"],
            container_context=container_context,
        ),
    )


def make_run(instance, *, tags=None, image=IMAGE, container_context="seed", run_config=None,
             job_name="example_job") -> DagsterRun:
    if container_context == "seed":
        container_context = SEED["run"]["container_context"]
    run = DagsterRun(
        job_name=job_name,
        run_id=str(uuid.uuid4()),
        run_config=run_config or {},
        tags=tags or {},
        status=DagsterRunStatus.NOT_STARTED,
        job_code_origin=origin(job_name, image, container_context),
        remote_job_origin=RemoteJobOrigin(
            repository_origin=RemoteRepositoryOrigin(
                code_location_origin=GrpcServerCodeLocationOrigin(
                    host="k8s-example-user-code-1", port=3030, location_name=LOCATION
                ),
                repository_name="example_repo",
            ),
            job_name=job_name,
        ),
    )
    instance.add_run(run)
    return run


def launch(instance, **kw) -> DagsterRun:
    run = make_run(instance, **kw)
    instance.launch_run(run.run_id, workspace=None)
    return instance.get_run_by_id(run.run_id)


def mark(instance, run, event_type: DagsterEventType) -> DagsterRun:
    instance.report_dagster_event(
        DagsterEvent(event_type_value=event_type.value, job_name=run.job_name), run_id=run.run_id)
    return instance.get_run_by_id(run.run_id)


def event_log(instance, run_id: str) -> list:
    """(event type, message, metadata) of every Dagster event of the run."""
    out = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        metadata = {}
        if event.event_type == DagsterEventType.ENGINE_EVENT:
            data = event.engine_event_data
            metadata = {k: v.value for k, v in data.metadata.items()}
            if data.error:
                metadata["error"] = data.error.message.splitlines()[0]
        out.append([event.event_type_value, event.message, metadata])
    return json.loads(json.dumps(out).replace(run_id, "<run-id>"))


def engine_messages(instance, run_id: str) -> list[str]:
    return [e[1] for e in event_log(instance, run_id) if e[0] == "ENGINE_EVENT"]


def load_launcher(cls: str, config: dict):
    """The launcher as dagster.yaml's run_launcher section loads it."""
    import yaml
    from dagster._core.launcher import RunLauncher
    from dagster._serdes import ConfigurableClassData

    return ConfigurableClassData("dagster_runway", cls, yaml.safe_dump(config)).rehydrate(
        as_type=RunLauncher)
