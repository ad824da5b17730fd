from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATUS_UNSPECIFIED: _ClassVar[WorkerStatus]
    WORKER_STATUS_RUNNING: _ClassVar[WorkerStatus]
    WORKER_STATUS_NOT_FOUND: _ClassVar[WorkerStatus]
    WORKER_STATUS_FAILED: _ClassVar[WorkerStatus]
    WORKER_STATUS_SUCCESS: _ClassVar[WorkerStatus]
    WORKER_STATUS_UNKNOWN: _ClassVar[WorkerStatus]

class HealthMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_MODE_DIAGNOSE: _ClassVar[HealthMode]
    HEALTH_MODE_DAGSTER_COMPAT: _ClassVar[HealthMode]
WORKER_STATUS_UNSPECIFIED: WorkerStatus
WORKER_STATUS_RUNNING: WorkerStatus
WORKER_STATUS_NOT_FOUND: WorkerStatus
WORKER_STATUS_FAILED: WorkerStatus
WORKER_STATUS_SUCCESS: WorkerStatus
WORKER_STATUS_UNKNOWN: WorkerStatus
HEALTH_MODE_DIAGNOSE: HealthMode
HEALTH_MODE_DAGSTER_COMPAT: HealthMode

class LauncherConfig(_message.Message):
    __slots__ = ("launcher_class", "digest", "config_json")
    LAUNCHER_CLASS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    launcher_class: str
    digest: str
    config_json: str
    def __init__(self, launcher_class: _Optional[str] = ..., digest: _Optional[str] = ..., config_json: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "job_name", "location_name", "image", "container_context_json", "tags", "args", "resume_attempt", "run_config_json")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    LOCATION_NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_CONTEXT_JSON_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    RESUME_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    job_name: str
    location_name: str
    image: str
    container_context_json: str
    tags: _containers.ScalarMap[str, str]
    args: _containers.RepeatedScalarFieldContainer[str]
    resume_attempt: int
    run_config_json: str
    def __init__(self, run_id: _Optional[str] = ..., job_name: _Optional[str] = ..., location_name: _Optional[str] = ..., image: _Optional[str] = ..., container_context_json: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., args: _Optional[_Iterable[str]] = ..., resume_attempt: _Optional[int] = ..., run_config_json: _Optional[str] = ...) -> None: ...

class LaunchRunRequest(_message.Message):
    __slots__ = ("run", "launcher", "env", "dagster_version")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_FIELD_NUMBER: _ClassVar[int]
    LAUNCHER_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    DAGSTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    run: Run
    launcher: LauncherConfig
    env: _containers.ScalarMap[str, str]
    dagster_version: str
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ..., launcher: _Optional[_Union[LauncherConfig, _Mapping]] = ..., env: _Optional[_Mapping[str, str]] = ..., dagster_version: _Optional[str] = ...) -> None: ...

class LaunchRunResponse(_message.Message):
    __slots__ = ("job_name", "namespace", "uid", "image", "created", "dropped_env_vars")
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_ENV_VARS_FIELD_NUMBER: _ClassVar[int]
    job_name: str
    namespace: str
    uid: str
    image: str
    created: bool
    dropped_env_vars: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_name: _Optional[str] = ..., namespace: _Optional[str] = ..., uid: _Optional[str] = ..., image: _Optional[str] = ..., created: _Optional[bool] = ..., dropped_env_vars: _Optional[_Iterable[str]] = ...) -> None: ...

class TerminateRunRequest(_message.Message):
    __slots__ = ("run_id", "resume_attempt", "namespace", "include_step_jobs")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_STEP_JOBS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    resume_attempt: int
    namespace: str
    include_step_jobs: bool
    def __init__(self, run_id: _Optional[str] = ..., resume_attempt: _Optional[int] = ..., namespace: _Optional[str] = ..., include_step_jobs: _Optional[bool] = ...) -> None: ...

class TerminateRunResponse(_message.Message):
    __slots__ = ("terminated", "deleted_jobs", "deleted_pods")
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    DELETED_JOBS_FIELD_NUMBER: _ClassVar[int]
    DELETED_PODS_FIELD_NUMBER: _ClassVar[int]
    terminated: bool
    deleted_jobs: _containers.RepeatedScalarFieldContainer[str]
    deleted_pods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, terminated: _Optional[bool] = ..., deleted_jobs: _Optional[_Iterable[str]] = ..., deleted_pods: _Optional[_Iterable[str]] = ...) -> None: ...

class CheckRunWorkerHealthRequest(_message.Message):
    __slots__ = ("run_id", "resume_attempt", "run_status", "mode", "launcher_class")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RUN_STATUS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    LAUNCHER_CLASS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    resume_attempt: int
    run_status: str
    mode: HealthMode
    launcher_class: str
    def __init__(self, run_id: _Optional[str] = ..., resume_attempt: _Optional[int] = ..., run_status: _Optional[str] = ..., mode: _Optional[_Union[HealthMode, str]] = ..., launcher_class: _Optional[str] = ...) -> None: ...

class CheckRunWorkerHealthResponse(_message.Message):
    __slots__ = ("status", "message", "reason", "job_name", "transient")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    TRANSIENT_FIELD_NUMBER: _ClassVar[int]
    status: WorkerStatus
    message: str
    reason: str
    job_name: str
    transient: bool
    def __init__(self, status: _Optional[_Union[WorkerStatus, str]] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., job_name: _Optional[str] = ..., transient: _Optional[bool] = ...) -> None: ...

class GetRunWorkerDebugInfoRequest(_message.Message):
    __slots__ = ("run_id", "resume_attempt", "include_container_logs", "log_lines")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CONTAINER_LOGS_FIELD_NUMBER: _ClassVar[int]
    LOG_LINES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    resume_attempt: int
    include_container_logs: bool
    log_lines: int
    def __init__(self, run_id: _Optional[str] = ..., resume_attempt: _Optional[int] = ..., include_container_logs: _Optional[bool] = ..., log_lines: _Optional[int] = ...) -> None: ...

class GetRunWorkerDebugInfoResponse(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class WatchRunsRequest(_message.Message):
    __slots__ = ("run_ids", "namespace", "include_current", "include_step_jobs")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CURRENT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_STEP_JOBS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    namespace: str
    include_current: bool
    include_step_jobs: bool
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., namespace: _Optional[str] = ..., include_current: _Optional[bool] = ..., include_step_jobs: _Optional[bool] = ...) -> None: ...

class RunTransition(_message.Message):
    __slots__ = ("run_id", "job_name", "namespace", "status", "reason", "message", "observed_at_micros", "resource_version", "step_key", "deleted")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    STEP_KEY_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    job_name: str
    namespace: str
    status: WorkerStatus
    reason: str
    message: str
    observed_at_micros: int
    resource_version: str
    step_key: str
    deleted: bool
    def __init__(self, run_id: _Optional[str] = ..., job_name: _Optional[str] = ..., namespace: _Optional[str] = ..., status: _Optional[_Union[WorkerStatus, str]] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., observed_at_micros: _Optional[int] = ..., resource_version: _Optional[str] = ..., step_key: _Optional[str] = ..., deleted: _Optional[bool] = ...) -> None: ...
