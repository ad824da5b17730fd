"""Loads dagster-runway's gRPC stubs in a fresh interpreter with every warning an error,
and makes each kind of call through a real in-process gRPC server. Run by the tests of
each test venv, so the stubs are proven on that venv's protobuf and grpcio:

    python tests/python/stub_roundtrip.py python/dagster-runway

Only the stubs are loaded (not the package's `__init__`, which imports Dagster and, in
old Dagster, libraries with warnings of their own). Prints one line naming the versions.
"""
from __future__ import annotations

import os
import sys
import types
import warnings
from concurrent import futures


def main(package_root: str) -> None:
    package = types.ModuleType("dagster_runway")
    package.__path__ = [os.path.join(package_root, "dagster_runway")]
    sys.modules["dagster_runway"] = package
    warnings.simplefilter("error")

    import google.protobuf
    import grpc
    from google.protobuf.internal import api_implementation

    from dagster_runway._proto import launcher_pb2 as pb
    from dagster_runway._proto import launcher_pb2_grpc as pb_grpc

    request = pb.LaunchRunRequest(
        run=pb.Run(run_id="r", tags={"a": "b"}, args=["dagster"]),
        env={"E": "1"},
        dagster_version="1.2.3",
    )
    assert not request.run.HasField("image")
    request.run.image = "img:1"
    assert type(request.run) is pb.Run
    assert pb.LaunchRunRequest.FromString(request.SerializeToString()) == request
    assert pb.WorkerStatus.Name(pb.WORKER_STATUS_FAILED) == "WORKER_STATUS_FAILED"

    class Servicer(pb_grpc.RunLauncherServicer):
        def LaunchRun(self, request, context):
            return pb.LaunchRunResponse(job_name=request.dagster_version, image=request.run.image)

        def WatchRuns(self, request, context):
            for run_id in request.run_ids:
                yield pb.RunTransition(run_id=run_id, status=pb.WORKER_STATUS_RUNNING)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_RunLauncherServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.RunLauncherStub(channel)
            response = stub.LaunchRun(request, timeout=10)
            assert (response.job_name, response.image) == ("1.2.3", "img:1"), response
            stream = stub.WatchRuns(pb.WatchRunsRequest(run_ids=["a", "b"]), timeout=10)
            assert [t.run_id for t in stream] == ["a", "b"]
            try:
                stub.TerminateRun(pb.TerminateRunRequest(run_id="r"), timeout=10)
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNIMPLEMENTED, err
            else:
                raise AssertionError("an unimplemented method answered")
    finally:
        server.stop(None)
    print(
        f"protobuf {google.protobuf.__version__} ({api_implementation.Type()}),"
        f" grpcio {grpc.__version__}: ok"
    )


if __name__ == "__main__":
    main(sys.argv[1])
