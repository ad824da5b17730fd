"""What the client retries: transport failures only. A real gRPC server answers as
`runway serve` would: UNAVAILABLE, RESOURCE_EXHAUSTED with and without the rate
limiter's retry-after-ms hint, and NOT_FOUND for a run with nothing left to terminate."""
from __future__ import annotations

from concurrent import futures

import grpc

from dagster_runway._proto import launcher_pb2 as pb
from dagster_runway._proto import launcher_pb2_grpc as pb_grpc
from dagster_runway.client import RunwayClient, RunwayError, Settings


class Scripted(pb_grpc.RunLauncherServicer):
    """Answers each LaunchRun with the next scripted failure, then succeeds."""

    def __init__(self, failures):
        self.failures = list(failures)
        self.calls = 0

    def LaunchRun(self, request, context):
        self.calls += 1
        if self.failures:
            code, hint = self.failures.pop(0)
            if hint:
                context.set_trailing_metadata((("retry-after-ms", hint),))
            context.abort(code, f"scripted {code.name}")
        return pb.LaunchRunResponse(job_name="dagster-run-x", created=True)

    def TerminateRun(self, request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, f"Job dagster-run-{request.run_id} not found")


def serve(servicer):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_RunLauncherServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = RunwayClient(Settings(endpoint=f"127.0.0.1:{port}", retry_seconds=5.0),
                          sleep=lambda _s: None)
    return server, client


def launch(client):
    return client.launch("K8sRunLauncher", "{}", pb.Run(run_id="r1", job_name="j"), {}, False)


def test_an_answer_is_not_retried_a_transport_failure_is():
    cases = [
        # A size limit or a full stream table: an answer, reported at once.
        ([(grpc.StatusCode.RESOURCE_EXHAUSTED, None)], 1, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ([(grpc.StatusCode.INVALID_ARGUMENT, None)], 1, grpc.StatusCode.INVALID_ARGUMENT),
        # The rate limiter's hint, or the service restarting: waited out.
        ([(grpc.StatusCode.RESOURCE_EXHAUSTED, "5")], 2, None),
        ([(grpc.StatusCode.UNAVAILABLE, None)] * 3, 4, None),
    ]
    for failures, calls, code in cases:
        servicer = Scripted(failures)
        server, client = serve(servicer)
        try:
            if code is None:
                assert launch(client).created
            else:
                try:
                    launch(client)
                except RunwayError as e:
                    assert e.code == code, e
                else:
                    raise AssertionError(f"{failures} succeeded")
            assert servicer.calls == calls, (failures, servicer.calls)
        finally:
            server.stop(None)


def test_nothing_left_to_terminate_is_not_terminated():
    server, client = serve(Scripted([]))
    try:
        assert client.terminate("r1", 0, "", True).terminated is False
    finally:
        server.stop(None)
