"""The Dagster side of a running Stack (dagster_stack.py): runs created and submitted as the
webserver does, waited for, and explained when they do not finish (their event logs and the
programs' logs); and the dev cluster's client and fault switches."""
from __future__ import annotations

import json
import time
import urllib.request
from typing import Optional

# The code location the stack serves its jobs as, and creates runs in.
LOCATION = "runway_example"


class StackRuns:
    """Mixed into Stack: uses its `instance`, `workspace`, `procs`, `kubeconfig` and
    `cluster_url`."""

    def submit(self, job_name: str, count: int = 1, tags: Optional[dict] = None,
               run_config: Optional[dict] = None) -> list[str]:
        """Creates and submits runs as the webserver's launch button does; with the
        QueuedRunCoordinator they are QUEUED until the daemon takes them."""
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import WorkspaceFileTarget

        ids = []
        with WorkspaceProcessContext(self.instance, WorkspaceFileTarget([self.workspace])) as ctx:
            request = ctx.create_request_context()
            for _ in range(count):
                run = self._create_run(request, job_name, run_config or {}, tags or {})
                self.instance.submit_run(run.run_id, request)
                ids.append(run.run_id)
        return ids

    def _create_run(self, request, job_name: str, run_config: dict, tags: dict):
        """`dagster job launch`'s run creation, in the release's own names."""
        from dagster._cli import job as cli

        if not hasattr(cli, "_create_run"):  # Dagster 1.1's pipeline names
            location = request.get_repository_location(LOCATION)
            [repo] = location.get_repositories().values()
            return cli._create_external_pipeline_run(  # noqa: SLF001
                instance=self.instance, repo_location=location, external_repo=repo,
                external_pipeline=repo.get_full_external_job(job_name), run_config=run_config,
                mode=None, preset=None, tags=tags, solid_selection=None, run_id=None)
        location = request.get_code_location(LOCATION)
        [repo] = location.get_repositories().values()
        return cli._create_run(  # noqa: SLF001
            instance=self.instance, code_location=location, remote_repo=repo,
            remote_job=repo.get_full_job(job_name), run_config=run_config, tags=tags,
            op_selection=None, run_id=None)

    def wait(self, run_ids, timeout: float = 180.0, until=None):
        """The runs once `until(run)` (default: finished) holds for all, else an error with
        the event logs and the programs' logs."""
        until = until or (lambda r: r.is_finished)
        deadline = time.time() + timeout
        while True:
            runs = [self.instance.get_run_by_id(r) for r in run_ids]
            if all(until(r) for r in runs):
                return runs
            if time.time() > deadline:
                raise AssertionError(f"runs not done after {timeout:g}s:\n"
                                     + self.debug(run_ids))
            time.sleep(0.3)

    def debug(self, run_ids) -> str:
        lines = []
        for run_id in list(run_ids)[:5]:
            run = self.instance.get_run_by_id(run_id)
            lines.append(f"=== run {run_id} {run.job_name if run else '?'} "
                         f"{run.status if run else 'missing'}")
            for r in self.instance.all_logs(run_id):
                ev = r.dagster_event if r.is_dagster_event else None
                msg = (ev.message if ev and ev.message else r.user_message) or ""
                lines.append(f"  {ev.event_type_value if ev else 'LOG'} {r.step_key or ''}"
                             f" {msg[:400]}")
        for proc in self.procs:
            lines.append(f"=== {proc.name} (exit {proc.popen.poll()})")
            lines.append(proc.tail(2500))
        return "\n".join(lines)

    def kube(self):
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)

    def faults(self, **settings) -> dict:
        """The dev cluster's fault switches, named as its API names them (pauseKubelet=True)."""
        req = urllib.request.Request(f"{self.cluster_url}/runway/v1/faults",
                                     data=json.dumps(settings).encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)
