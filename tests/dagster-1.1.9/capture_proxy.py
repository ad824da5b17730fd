"""A real gRPC server between the Runway launchers of Dagster 1.1.9 and `runway serve`: it
keeps every request as the client sent it, and forwards it.

runway serve has no Dagster 1.1.9 profile yet and refuses `dagster_version: "1.1.9"`, so
LaunchRun and ResumeRun go on with the field cleared: the service builds its newest
profile's Job. That Job exists, so health, debug info and terminate work on it as on a 1.1.9
one; its bytes are not 1.1.9's and are not compared here.
"""
from __future__ import annotations

import contextlib
import threading
from concurrent import futures

import grpc

from dagster_runway._proto import launcher_pb2 as pb
from dagster_runway._proto import launcher_pb2_grpc as pb_grpc

_UNARY = ("LaunchRun", "ResumeRun", "TerminateRun", "CheckRunWorkerHealth",
          "GetRunWorkerDebugInfo")


class CapturingProxy(pb_grpc.RunLauncherServicer):
    def __init__(self, upstream: grpc.Channel):
        self._upstream = pb_grpc.RunLauncherStub(upstream)
        self._lock = threading.Lock()
        self._requests: list = []

    def requests(self, method: str) -> list:
        """Copies of the requests of `method` received so far, oldest first."""
        with self._lock:
            return [r for m, r in self._requests if m == method]

    def _keep(self, method: str, request) -> None:
        kept = type(request)()
        kept.CopyFrom(request)
        with self._lock:
            self._requests.append((method, kept))

    def _forward(self, method: str, request, context):
        self._keep(method, request)
        if isinstance(request, pb.LaunchRunRequest):
            forwarded = pb.LaunchRunRequest()
            forwarded.CopyFrom(request)
            forwarded.dagster_version = ""
            request = forwarded
        metadata = [(k, v) for k, v in context.invocation_metadata() if k == "authorization"]
        try:
            return getattr(self._upstream, method)(request, metadata=metadata, timeout=30)
        except grpc.RpcError as err:
            context.set_trailing_metadata(tuple(err.trailing_metadata() or ()))
            context.abort(err.code(), err.details())

    def WatchRuns(self, request, context):
        self._keep("WatchRuns", request)
        metadata = [(k, v) for k, v in context.invocation_metadata() if k == "authorization"]
        call = self._upstream.WatchRuns(request, metadata=metadata)
        context.add_callback(call.cancel)
        try:
            yield from call
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                context.abort(err.code(), err.details())


def _unary(method: str):
    def forward(self, request, context):
        return self._forward(method, request, context)

    forward.__name__ = method
    return forward


for _method in _UNARY:
    setattr(CapturingProxy, _method, _unary(_method))


@contextlib.contextmanager
def capturing_proxy(upstream_target: str):
    """Yields (`127.0.0.1:port`, the proxy) of a proxy to `upstream_target`."""
    channel = grpc.insecure_channel(upstream_target)
    proxy = CapturingProxy(channel)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_RunLauncherServicer_to_server(proxy, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", proxy
    finally:
        server.stop(None).wait()
        channel.close()
