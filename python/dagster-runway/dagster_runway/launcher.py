"""`RunwayK8sRunLauncher` and `RunwayCeleryK8sRunLauncher`: the stock dagster-k8s and
dagster-celery-k8s run launchers with the Kubernetes calls replaced by calls to
`runway serve`.

Everything Dagster sees stays the stock behaviour of the installed version: the config
schema (plus the `runway_*` keys), the engine events and their metadata, the `dagster/image`
tag, `report_run_canceling`, the resume-attempt count, and the classes themselves (they are
subclasses, so executors in run pods that check the launcher class keep working). What
changes is who builds and tracks the Job: the service renders the same Job from the launcher
config it is sent, answers health from its watch index, and deletes step Jobs on terminate.
Where the stock classes differ between Dagster versions, `compat` says how.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from dagster_celery_k8s import CeleryK8sRunLauncher
from dagster_k8s import K8sRunLauncher

from dagster_runway import compat
from dagster_runway.client import RunwayClient
from dagster_runway.compat import (
    DagsterRun,
    LaunchRunContext,
    ResumeRunContext,
    celery_executor_config,
    check,
    get_job_name_from_run_id,
)
from dagster_runway.config import RUNWAY_CONFIG, split_runway_keys
from dagster_runway.request import bind_args, warn_on_namespace_mismatch, Connection, health_result
from dagster_runway.watcher import RunWatcher


# === shared ==================================================================================


class _Runway:
    """What both launchers add to their stock class: the `runway_*` keys, the connection,
    and the calls answered alike. `_stock` is the stock class, whose name the service and
    the engine events use."""

    _stock: type

    def __init__(self, *args, **kwargs):
        runway = split_runway_keys(kwargs)
        if "runway_endpoint" not in runway:
            raise TypeError(
                f"{type(self).__name__} needs runway_endpoint (`host:port` of runway serve)"
            )
        stock = bind_args(self._stock.__init__, args, kwargs)
        super().__init__(**stock)
        self._runway = Connection(self._stock.__name__, stock, runway)
        self._runway_watcher = RunWatcher(
            self._runway.client,
            lambda: self._instance if compat.has_instance(self) else None,
            self._runway_job_names,
        )

    @classmethod
    def config_type(cls):
        return compat.merge_dicts(cls._stock.config_type(), RUNWAY_CONFIG)

    @property
    def runway_client(self) -> RunwayClient:
        return self._runway.client

    @property
    def runway_launcher_config(self) -> Mapping[str, Any]:
        """The config sent to the service (the stock keys only)."""
        return self._runway.config

    def _runway_attempt(self, run: DagsterRun) -> int:
        return 0

    def _runway_job_names(self, run: DagsterRun) -> set[str]:
        """The run worker Job of the run's current attempt."""
        attempt = self._runway_attempt(run)
        return {get_job_name_from_run_id(run.run_id, resume_attempt_number=attempt or None)}

    def _runway_follow_runs(self) -> None:
        # Started by the first launch in a process: that is the process (the daemon, or the
        # webserver with the default run coordinator) that has runs to watch.
        if self._runway.fail_unstartable:
            self._runway_watcher.ensure_started()

    def _runway_report(self, message: str, run: DagsterRun, data=None) -> None:
        # Engine events carry the stock class name (`[K8sRunLauncher] ...`), so the event log
        # reads exactly as with the stock launcher; the Job's managed-by label tells Runway's.
        compat.report_engine_event(self._instance, message, run, data, cls=self._stock)

    def _runway_may_terminate(self, run_id: str, run: DagsterRun, refusal: str) -> bool:
        """A stock class with `can_terminate` (dagster-k8s before 0.24) terminates only the
        runs it allows (STARTED ones), and reports a refusal with its answer."""
        can_terminate = getattr(self._stock, "can_terminate", None)
        if can_terminate is None:
            return True
        answer = can_terminate(self, run_id)
        if not answer:
            self._runway_report(refusal.format(answer), run)
        return bool(answer)

    def check_run_worker_health(self, run: DagsterRun):
        run_status = run.status.value
        # Before dagster-k8s 0.17.20 health does not look at the run's status; sent none,
        # the service's dagster-compat answer follows that rule too.
        if self._runway.settings.health_mode == "dagster-compat" and not (
            compat.HEALTH_JUDGES_RUN_STATUS
        ):
            run_status = ""
        try:
            response = self._runway.client.health(
                run.run_id, self._runway_attempt(run), run_status, self._stock.__name__
            )
        except Exception:
            return compat.health_error()
        return health_result(response)

    def get_run_worker_debug_info(
        self, run: DagsterRun, include_container_logs: Optional[bool] = True
    ) -> Optional[str]:
        # CeleryK8sRunLauncher has none (and Dagster 1.1 never asks); the service
        # has the same text for both classes.
        text = self._runway.client.debug_info(
            run.run_id, self._runway_attempt(run), bool(include_container_logs)
        )
        return text or None

    def dispose(self) -> None:
        self._runway_watcher.stop()
        self._runway.client.close()
        super().dispose()


# === RunwayK8sRunLauncher ====================================================================


class RunwayK8sRunLauncher(_Runway, K8sRunLauncher):
    """`dagster_k8s.K8sRunLauncher`, launching through `runway serve`.

    .. code-block:: yaml

        run_launcher:
          module: dagster_runway
          class: RunwayK8sRunLauncher
          config:
            runway_endpoint: runway.dagster.svc:50051
            # ... the K8sRunLauncher config, unchanged
    """

    _stock = K8sRunLauncher

    def _runway_attempt(self, run: DagsterRun) -> int:
        return compat.resume_attempt(self, run)

    def _report_run_worker_creating(self, run: DagsterRun, job_name: str, namespace: str) -> None:
        metadata = {"Kubernetes Job name": job_name, "Kubernetes Namespace": namespace,
                    "Run ID": run.run_id}
        self._runway_report(
            "Creating Kubernetes run worker job", run, compat.engine_event_data(metadata)
        )

    def _report_run_worker_created(self, run: DagsterRun) -> None:
        self._runway_report("Kubernetes run worker job created", run)

    def _report_run_terminated(self, run: DagsterRun) -> None:
        self._runway_report("Run was terminated successfully.", run)

    def _report_run_termination_failed(self, run: DagsterRun, result: object) -> None:
        self._runway_report(
            f"Run was not terminated successfully; delete_job returned {result}", run
        )

    def _report_run_termination_error(self, run: DagsterRun) -> None:
        self._runway_report(
            "Run was not terminated successfully; encountered error in delete_job",
            run,
            compat.engine_error_data(),
        )

    def _launch_k8s_job_with_args(self, job_name, args, run, resume_attempt=0):
        # The stock method's bookkeeping, around one call to the service.
        container_context = self.get_container_context_for_run(run)
        origin = check.not_none(compat.code_origin(run))
        job_config = container_context.get_k8s_job_config(
            job_image=origin.repository_origin.container_image, run_launcher=self
        )
        compat.image_tag_before_job(self._instance, run, job_config.job_image)
        namespace = check.not_none(container_context.namespace)
        self._report_run_worker_creating(run, job_name, namespace)
        self._runway_follow_runs()
        response = self._runway.launch(run, args, resume_attempt)
        warn_on_namespace_mismatch(run, namespace, response)
        compat.image_tag_from_job(self._instance, run, response.image)
        self._report_run_worker_created(run)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = compat.context_run(context)
        job_name = get_job_name_from_run_id(run.run_id)
        args = compat.run_worker_args(
            check.not_none(compat.code_origin(run)),
            run.run_id,
            self._instance.get_ref(),
            self._fail_pod_on_run_failure,
            resume=False,
        )
        self._launch_k8s_job_with_args(job_name, args, run)

    def resume_run(self, context: ResumeRunContext) -> None:
        run = compat.context_run(context)
        # The daemon always passes the attempt; a caller that does not gets the count of
        # resume events, which `instance.resume_run` has just incremented.
        attempt = context.resume_attempt_number or self._instance.count_resume_run_attempts(
            run.run_id
        )
        if not attempt:
            raise check.CheckError(
                f"resume_run of run {run.run_id}: no resume attempt number (call it through"
                " instance.resume_run, which records the attempt)"
            )
        job_name = get_job_name_from_run_id(run.run_id, resume_attempt_number=attempt)
        args = compat.run_worker_args(
            check.not_none(compat.code_origin(run)),
            run.run_id,
            self._instance.get_ref(),
            self._fail_pod_on_run_failure,
            resume=True,
        )
        self._launch_k8s_job_with_args(job_name, args, run, resume_attempt=attempt)

    def terminate(self, run_id):
        check.str_param(run_id, "run_id")
        run = self._instance.get_run_by_id(run_id)
        if not run:
            return False
        if hasattr(self._stock, "can_terminate"):
            container_context = self.get_container_context_for_run(run)
            refusal = "Unable to terminate run; can_terminate returned {}"
            if not self._runway_may_terminate(run_id, run, refusal):
                return False
            self._instance.report_run_canceling(run)
        else:
            if run.is_finished:
                return False
            self._instance.report_run_canceling(run)
            container_context = self.get_container_context_for_run(run)

        attempt = self._runway_attempt(run)
        try:
            termination_result = self._runway.client.terminate(
                run_id, attempt, container_context.namespace or "", include_step_jobs=True
            ).terminated
            if termination_result:
                self._report_run_terminated(run)
            else:
                self._report_run_termination_failed(run, termination_result)
            return termination_result
        except Exception:
            self._report_run_termination_error(run)


# === RunwayCeleryK8sRunLauncher ==============================================================


class RunwayCeleryK8sRunLauncher(_Runway, CeleryK8sRunLauncher):
    """`dagster_celery_k8s.CeleryK8sRunLauncher`, launching through `runway serve`.

    Run pods get an InstanceRef naming this class, a CeleryK8sRunLauncher, so
    `celery_k8s_job_executor` accepts it.
    """

    _stock = CeleryK8sRunLauncher

    def launch_run(self, context: LaunchRunContext) -> None:
        run = compat.context_run(context)

        job_name = get_job_name_from_run_id(run.run_id)
        exc_config = celery_executor_config(run.run_config)
        job_image_from_executor_config = exc_config.get("job_image")

        origin = check.not_none(compat.code_origin(run))
        job_image = origin.repository_origin.container_image

        # The stock checks and messages, word for word (and the stock class name in them).
        if job_image:
            if job_image_from_executor_config:
                # As in the stock class, the origin's image is replaced before the message
                # is written, so it names the executor's image twice.
                job_image = job_image_from_executor_config
                self._runway_report(
                    f"You have specified a job_image {job_image_from_executor_config} in your"
                    f" executor configuration, but also {job_image} in your user-code"
                    f" deployment. Using the job image {job_image_from_executor_config} from"
                    " executor configuration as it takes precedence.",
                    run,
                )
        else:
            if not job_image_from_executor_config:
                from dagster import DagsterInvariantViolationError

                raise DagsterInvariantViolationError(
                    "You have not specified a job_image in your executor configuration. To"
                    " resolve this error, specify the job_image configuration in the executor"
                    " config section in your run config. \nNote: You may also be seeing this"
                    " error because you are using the configured API. Using configured with"
                    " the celery-k8s executor is not supported at this time, and the job_image"
                    " must be configured at the top-level executor config without using"
                    " configured."
                )
            job_image = job_image_from_executor_config
        job_config = self.get_k8s_job_config(job_image, exc_config)
        compat.image_tag_before_job(self._instance, run, job_config.job_image)
        # Invalid dagster-k8s/config tags fail here, before any event, as in the stock class.
        compat.validate_k8s_tags(run)

        run_args = compat.run_worker_args(
            origin,
            run.run_id,
            self._instance.get_ref(),
            self._fail_pod_on_run_failure,
            resume=False,
        )

        job_namespace = compat.celery_job_namespace(self, exc_config)
        metadata = {
            "Kubernetes Job name": job_name,
            "Kubernetes Namespace": job_namespace,
            "Run ID": run.run_id,
        }
        self._runway_report(
            "Creating Kubernetes run worker job", run, compat.engine_event_data(metadata)
        )
        self._runway_follow_runs()
        response = self._runway.launch(
            run, run_args, 0, extra_env_sources=[(run.run_config or {}).get("execution")]
        )
        warn_on_namespace_mismatch(run, job_namespace, response)
        compat.image_tag_from_job(self._instance, run, response.image)
        self._runway_report(
            "Kubernetes run worker job created", run, compat.engine_event_data(metadata)
        )

    def terminate(self, run_id):
        check.str_param(run_id, "run_id")
        run = self._instance.get_run_by_id(run_id)
        if not run:
            return False
        if hasattr(self._stock, "can_terminate"):
            refusal = "Unable to terminate dagster job: can_terminate returned {}."
            if not self._runway_may_terminate(run_id, run, refusal):
                return False
            job_namespace = self.get_namespace_from_run_config(run_id)
            self._instance.report_run_canceling(run)
        else:
            if run.is_finished:
                return False
            self._instance.report_run_canceling(run)
            job_namespace = self.get_namespace_from_run_config(run_id)

        try:
            termination_result = self._runway.client.terminate(
                run_id, 0, job_namespace or "", include_step_jobs=True
            ).terminated
            if termination_result:
                self._runway_report("Dagster Job was terminated successfully.", run)
            else:
                self._runway_report(
                    "Dagster Job was not terminated successfully; delete_job returned"
                    f" {termination_result}",
                    run,
                )
            return termination_result
        except Exception:
            self._runway_report(
                "Dagster Job was not terminated successfully; encountered error in delete_job",
                run,
                compat.engine_error_data(),
            )
