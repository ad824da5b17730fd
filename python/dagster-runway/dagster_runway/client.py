"""The gRPC client of `runway serve` (`runway.v1.RunLauncher`): one channel per process,
the bearer token, bounded retries while the service is unreachable, and the launcher-config
digest protocol. It knows nothing of Dagster.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

import grpc

from dagster_runway._proto import launcher_pb2 as pb
from dagster_runway._proto import launcher_pb2_grpc as pb_grpc

# What the service's trailing metadata says when it does not know a config digest.
REASON_KEY = "runway-reason"
UNKNOWN_CONFIG_DIGEST = "UNKNOWN_CONFIG_DIGEST"
RETRY_AFTER_KEY = "retry-after-ms"

# Failures worth waiting out: the service is down or restarting (UNAVAILABLE), or its
# Kubernetes rate limiter asked for patience (RESOURCE_EXHAUSTED *with* a retry-after-ms
# hint). Any other RESOURCE_EXHAUSTED (a message over a size limit, a full stream table)
# is an answer, not a transport failure, and is reported at once.
_RETRIED = (grpc.StatusCode.UNAVAILABLE,)

_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 2.0

HEALTH_MODES = {
    "diagnose": pb.HEALTH_MODE_DIAGNOSE,
    "dagster-compat": pb.HEALTH_MODE_DAGSTER_COMPAT,
}


class RunwayError(Exception):
    """A call to `runway serve` failed; the message names the endpoint and the cause."""

    def __init__(
        self,
        message: str,
        code: Optional[grpc.StatusCode] = None,
        reason: Optional[str] = None,
    ):
        super().__init__(message)
        self.code = code
        # The service's machine-readable reason (`runway-reason` trailing metadata).
        self.reason = reason


def config_json(config: Mapping[str, Any]) -> str:
    """The launcher config as sent: JSON with sorted keys, so equal configs share a digest."""
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise RunwayError(f"the run launcher config cannot be sent to runway serve as JSON: {e}")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Settings:
    """The `runway_*` keys of the launcher config."""

    endpoint: str
    tls_ca_file: Optional[str] = None
    tls_cert_file: Optional[str] = None
    tls_key_file: Optional[str] = None
    token_file: Optional[str] = None
    timeout_seconds: float = 30.0
    retry_seconds: float = 30.0
    health_mode: str = "diagnose"

    def target(self) -> tuple[str, bool]:
        """The channel target and whether it uses TLS. `https://` asks for TLS with the
        system roots; any TLS file asks for TLS too."""
        endpoint = self.endpoint.strip()
        tls = bool(self.tls_ca_file or self.tls_cert_file or self.tls_key_file)
        for scheme, is_tls in (("https://", True), ("http://", False)):
            if endpoint.startswith(scheme):
                endpoint = endpoint[len(scheme) :]
                tls = tls or is_tls
        return endpoint.rstrip("/"), tls


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise RunwayError(f"cannot read {what} {path}: {e.strerror or e}")


def _trailing(err: grpc.RpcError, key: str) -> Optional[str]:
    try:
        for k, v in err.trailing_metadata() or ():
            if k == key:
                return v.decode() if isinstance(v, bytes) else v
    except Exception:
        return None
    return None


class RunwayClient:
    """Thread-safe; the channel is made on first use in each process (a forked child makes
    its own, as gRPC requires)."""

    def __init__(self, settings: Settings, sleep: Callable[[float], None] = time.sleep):
        if settings.health_mode not in HEALTH_MODES:
            raise RunwayError(
                f"runway_health_mode {settings.health_mode!r}: expected one of "
                + ", ".join(sorted(HEALTH_MODES))
            )
        if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
            raise RunwayError(
                "runway_tls_cert_file and runway_tls_key_file go together (a client certificate"
                " and its key, for mTLS); set both or neither"
            )
        self.settings = settings
        self.target, self.tls = settings.target()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._channel: Optional[grpc.Channel] = None
        self._stub: Optional[pb_grpc.RunLauncherStub] = None
        self._pid: Optional[int] = None
        # Digests the service has accepted: later launches send the digest alone.
        self._known_digests: set[str] = set()

    # --- channel ------------------------------------------------------------------------

    def _credentials(self) -> grpc.ChannelCredentials:
        s = self.settings
        root = _read(s.tls_ca_file, "runway_tls_ca_file") if s.tls_ca_file else None
        key = _read(s.tls_key_file, "runway_tls_key_file") if s.tls_key_file else None
        cert = _read(s.tls_cert_file, "runway_tls_cert_file") if s.tls_cert_file else None
        return grpc.ssl_channel_credentials(
            root_certificates=root, private_key=key, certificate_chain=cert
        )

    def stub(self) -> pb_grpc.RunLauncherStub:
        with self._lock:
            if self._stub is None or self._pid != os.getpid():
                options = [
                    # Reconnect quickly once the service is back, so a retried call
                    # is not held up by gRPC's own back-off (1 s doubling by default).
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 2000),
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                    ("grpc.keepalive_time_ms", 30000),
                ]
                if self.tls:
                    channel = grpc.secure_channel(self.target, self._credentials(), options)
                else:
                    channel = grpc.insecure_channel(self.target, options)
                self._channel = channel
                self._stub = pb_grpc.RunLauncherStub(channel)
                self._pid = os.getpid()
            return self._stub

    def close(self) -> None:
        with self._lock:
            if self._channel is not None and self._pid == os.getpid():
                self._channel.close()
            self._channel = None
            self._stub = None

    def _metadata(self) -> list[tuple[str, str]]:
        if not self.settings.token_file:
            return []
        # Read on every call: projected service-account tokens are rotated on disk.
        token = _read(self.settings.token_file, "runway_token_file").decode().strip()
        if not token:
            raise RunwayError(f"runway_token_file {self.settings.token_file} is empty")
        return [("authorization", f"Bearer {token}")]

    # --- calls ---------------------------------------------------------------------------

    def call(self, method: str, request: Any, what: str) -> Any:
        """One unary call, retried with jittered exponential back-off while the service is
        UNAVAILABLE or asks to slow down, for at most `retry_seconds` in all."""
        deadline = time.monotonic() + max(0.0, self.settings.retry_seconds)
        attempt = 0
        backoff = _FIRST_BACKOFF
        while True:
            attempt += 1
            try:
                rpc = getattr(self.stub(), method)
                return rpc(
                    request, timeout=self.settings.timeout_seconds, metadata=self._metadata()
                )
            except grpc.RpcError as err:
                code = err.code() if hasattr(err, "code") else None
                remaining = deadline - time.monotonic()
                hint = _trailing(err, RETRY_AFTER_KEY)
                throttled = code == grpc.StatusCode.RESOURCE_EXHAUSTED and bool(hint)
                if (code in _RETRIED or throttled) and remaining > 0:
                    wait = random.uniform(0, backoff)
                    if hint and hint.isdigit():
                        wait = max(wait, int(hint) / 1000.0)
                    self._sleep(min(wait, remaining))
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    continue
                raise self._error(err, what, attempt) from None

    def _error(self, err: grpc.RpcError, what: str, attempts: int) -> RunwayError:
        code = err.code() if hasattr(err, "code") else None
        details = err.details() if hasattr(err, "details") else str(err)
        name = code.name if code is not None else "UNKNOWN"
        msg = f"runway serve at {self.target}: {what} failed: {name}: {details}"
        if attempts > 1:
            msg += (
                f" (gave up after {attempts} attempts over {self.settings.retry_seconds:g} s;"
                " runway_retry_seconds sets how long to wait for the service)"
            )
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            msg += f" (runway_timeout_seconds is {self.settings.timeout_seconds:g})"
        return RunwayError(msg, code, _trailing(err, REASON_KEY))

    def launch(
        self,
        launcher_class: str,
        config: str,
        run: pb.Run,
        env: Mapping[str, str],
        resume: bool,
        dagster_version: str = "",
    ) -> pb.LaunchRunResponse:
        """LaunchRun or ResumeRun. The config body goes with the first launch; once the
        service has accepted a digest, the digest alone, and the body again whenever a
        service (a new replica, a restart) answers UNKNOWN_CONFIG_DIGEST.
        `dagster_version` names the caller's Dagster, whose Job the service renders."""
        digest = sha256_hex(config)
        method = "ResumeRun" if resume else "LaunchRun"
        what = f"{method} of run {run.run_id}"
        with_body = digest not in self._known_digests
        while True:
            request = pb.LaunchRunRequest(
                run=run,
                launcher=pb.LauncherConfig(
                    launcher_class=launcher_class,
                    digest=digest,
                    config_json=config if with_body else "",
                ),
                env=dict(env),
                dagster_version=dagster_version,
            )
            try:
                response = self.call(method, request, what)
            except RunwayError as e:
                if e.reason == UNKNOWN_CONFIG_DIGEST and not with_body:
                    self._known_digests.discard(digest)
                    with_body = True
                    continue
                raise
            self._known_digests.add(digest)
            return response

    def health(
        self, run_id: str, resume_attempt: int, run_status: str, launcher_class: str
    ) -> pb.CheckRunWorkerHealthResponse:
        """CheckRunWorkerHealth. An answer marked transient (the service's watch has not
        synced yet, right after it started) is asked again within the retry budget."""
        request = pb.CheckRunWorkerHealthRequest(
            run_id=run_id,
            resume_attempt=resume_attempt,
            run_status=run_status,
            mode=HEALTH_MODES[self.settings.health_mode],
            launcher_class=launcher_class,
        )
        what = f"CheckRunWorkerHealth of run {run_id}"
        deadline = time.monotonic() + max(0.0, self.settings.retry_seconds)
        backoff = _FIRST_BACKOFF
        while True:
            response = self.call("CheckRunWorkerHealth", request, what)
            remaining = deadline - time.monotonic()
            if not response.transient or remaining <= 0:
                return response
            self._sleep(min(random.uniform(0, backoff), remaining))
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def debug_info(self, run_id: str, resume_attempt: int, include_container_logs: bool) -> str:
        request = pb.GetRunWorkerDebugInfoRequest(
            run_id=run_id,
            resume_attempt=resume_attempt,
            include_container_logs=include_container_logs,
        )
        response = self.call(
            "GetRunWorkerDebugInfo", request, f"GetRunWorkerDebugInfo of run {run_id}"
        )
        return response.text

    def watch_runs(self, include_current: bool = True):
        """WatchRuns over every run the service tracks: an iterator of RunTransition that
        ends with grpc.RpcError when the stream breaks (the caller reconnects), and can be
        cancelled with `.cancel()`."""
        request = pb.WatchRunsRequest(include_current=include_current)
        return self.stub().WatchRuns(request, metadata=self._metadata())

    def terminate(
        self, run_id: str, resume_attempt: int, namespace: str, include_step_jobs: bool
    ) -> pb.TerminateRunResponse:
        """TerminateRun. A run with nothing of Runway's left to delete (the service
        answers NOT_FOUND) is `terminated=False`, as the stock launcher reports a Job that
        is gone."""
        request = pb.TerminateRunRequest(
            run_id=run_id,
            resume_attempt=resume_attempt,
            namespace=namespace,
            include_step_jobs=include_step_jobs,
        )
        try:
            return self.call("TerminateRun", request, f"TerminateRun of run {run_id}")
        except RunwayError as e:
            if e.code == grpc.StatusCode.NOT_FOUND:
                return pb.TerminateRunResponse(terminated=False)
            raise
