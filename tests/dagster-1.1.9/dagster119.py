"""The Dagster 1.1.9 side of its launcher tests: instances from a dagster.yaml on PostgreSQL,
runs of the seed deployment's code location (1.1.9 names: pipeline_name,
PipelinePythonOrigin, ExternalPipelineOrigin), and their event logs."""
from __future__ import annotations

import contextlib
import json
import os
import uuid

import yaml
from dagster._core.code_pointer import FileCodePointer
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.host_representation.origin import (
    ExternalPipelineOrigin,
    ExternalRepositoryOrigin,
    GrpcServerRepositoryLocationOrigin,
)
from dagster._core.instance import DagsterInstance
from dagster._core.origin import PipelinePythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.pipeline_run import DagsterRun, DagsterRunStatus

from launcher_cluster import IMAGE, LOCATION, SEED


def postgres_storage(database: str) -> dict:
    return {"postgres": {"postgres_db": {
        "hostname": "127.0.0.1", "port": 5432, "username": "postgres", "password": "",
        "db_name": database}}}


@contextlib.contextmanager
def instance_from_yaml(home: str, database: str, module: str, cls: str, config: dict):
    """A DagsterInstance loaded from `home`/dagster.yaml, as a deployment's is: run, event
    and schedule storage on PostgreSQL, and this run launcher."""
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "dagster.yaml"), "w") as f:
        yaml.safe_dump({
            "storage": postgres_storage(database),
            "run_launcher": {"module": module, "class": cls, "config": config},
        }, f)
    instance = DagsterInstance.from_config(home)
    try:
        yield instance
    finally:
        instance.dispose()


def origin(job_name: str, image, container_context) -> PipelinePythonOrigin:
    return PipelinePythonOrigin(
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
        pipeline_name=job_name,
        run_id=str(uuid.uuid4()),
        run_config=run_config or {},
        tags=tags or {},
        status=DagsterRunStatus.NOT_STARTED,
        pipeline_code_origin=origin(job_name, image, container_context),
        external_pipeline_origin=ExternalPipelineOrigin(
            ExternalRepositoryOrigin(
                GrpcServerRepositoryLocationOrigin(
                    host="k8s-example-user-code-1", port=3030, location_name=LOCATION
                ),
                "example_repo",
            ),
            job_name,
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
        DagsterEvent(event_type_value=event_type.value, pipeline_name=run.pipeline_name),
        run_id=run.run_id,
    )
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
            metadata = {e.label: e.value.value for e in data.metadata_entries}
            if data.error:
                metadata["error"] = data.error.message.splitlines()[0]
        out.append([event.event_type_value, event.message, metadata])
    return json.loads(json.dumps(out).replace(run_id, "<run-id>"))


def engine_messages(instance, run_id: str) -> list[str]:
    return [e[1] for e in event_log(instance, run_id) if e[0] == "ENGINE_EVENT"]
