"""Failing a run whose run worker cannot start, as soon as the service sees it.

Dagster's monitoring daemon health-checks only STARTED runs; a STARTING run whose pod can
never start (an image that cannot be pulled, a pod the Job cannot create) waits for
`run_monitoring.start_timeout_seconds` (180 s by default) and then fails with a timeout.
The service already knows why within seconds, from its watch. One thread per launching
process follows its WatchRuns stream and reports the run failed with the pod's reason.
"""
from __future__ import annotations

import logging
import os
import random
import threading
from typing import TYPE_CHECKING, Optional

import grpc

from dagster_runway._proto import launcher_pb2 as pb

if TYPE_CHECKING:
    from dagster_runway.client import RunwayClient

logger = logging.getLogger("dagster_runway")

_MAX_BACKOFF = 10.0


def failure_message(transition: pb.RunTransition) -> str:
    reason = f" ({transition.reason})" if transition.reason else ""
    return (
        f"Run worker Job {transition.job_name} in namespace {transition.namespace} cannot"
        f" start{reason}: {transition.message or 'the service reports it failed'}"
    )


class RunWatcher:
    """Follows WatchRuns for one launcher in one process; reconnects with back-off (and
    `include_current`, so nothing that happened while disconnected is missed)."""

    def __init__(self, client: "RunwayClient", instance_fn, job_names_fn):
        self._client = client
        self._instance_fn = instance_fn
        # run -> the run worker Job names of its current attempt, to ignore older attempts.
        self._job_names_fn = job_names_fn
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._pid: Optional[int] = None
        self._stop = threading.Event()
        self._call = None

    def ensure_started(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._stop.clear()
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._loop, name="runway-watch-runs", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()

    def _loop(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self._call = self._client.watch_runs(include_current=True)
                for transition in self._call:
                    backoff = 0.2
                    self.handle(transition)
            except grpc.RpcError as err:
                if self._stop.is_set():
                    return
                code = err.code() if hasattr(err, "code") else None
                logger.debug("WatchRuns from %s ended (%s); reconnecting", self._client.target, code)
            except Exception:  # a bad instance call must not end the thread
                logger.exception("runway WatchRuns consumer failed; reconnecting")
            self._stop.wait(random.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def handle(self, transition: pb.RunTransition) -> bool:
        """Reports the run failed when this transition says its run worker cannot start
        and the run is still STARTING; True when it did."""
        from dagster_runway.compat import DagsterRunStatus, report_run_failed_to_start

        if (
            transition.step_key
            or transition.deleted
            or transition.status != pb.WORKER_STATUS_FAILED
        ):
            return False
        instance = self._instance_fn()
        if instance is None:
            return False
        run = instance.get_run_by_id(transition.run_id)
        # Runs of other deployments the service tracks are not in this instance; a run
        # that has STARTED is the monitoring daemon's (it may resume it).
        if run is None or run.status != DagsterRunStatus.STARTING:
            return False
        if transition.job_name not in self._job_names_fn(run):
            return False
        message = failure_message(transition)
        logger.info("run %s: %s", run.run_id, message)
        report_run_failed_to_start(instance, run, message)
        return True
