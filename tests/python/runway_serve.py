"""Starting `runway serve` (RUNWAY_BIN) against a dev cluster for a Python test."""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
import urllib.request

from devcluster import RUNWAY_BIN

# The Kubernetes objects the seed deployment's Jobs refer to (runway::bench::launch::seed_prerequisites).
SEED_NAMESPACE = "dagster-system"


def create_seed_prerequisites(api_client) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": SEED_NAMESPACE}})
    for sa in ("dagster", "dagster-dagster-user-deployments-user-deployments"):
        core.create_namespaced_service_account(SEED_NAMESPACE, {"metadata": {"name": sa}})
    for cm in ("dagster-pipeline-env",
               "dagster-dagster-user-deployments-k8s-example-user-code-1-user-env"):
        core.create_namespaced_config_map(SEED_NAMESPACE, {"metadata": {"name": cm}, "data": {"A": "1"}})
    core.create_namespaced_secret(SEED_NAMESPACE, {
        "metadata": {"name": "dagster-postgresql-secret"},
        "stringData": {"postgresql-password": "pw"},
    })


@contextlib.contextmanager
def runway_serve(kubeconfig: str, *extra: str, listen: str = "127.0.0.1:0",
                 namespace: str = SEED_NAMESPACE):
    """Yields the gRPC `host:port` of a `runway serve` whose watches have synced (/ready);
    on exit stops it with SIGTERM and checks it exits cleanly."""
    argv = [RUNWAY_BIN, "serve", f"--listen={listen}", "--http-listen=127.0.0.1:0",
            f"--kubeconfig={kubeconfig}", f"--namespace={namespace}", "--kube-qps=0",
            "--log-format=text", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, RUST_LOG="warn"))
    try:
        line = proc.stdout.readline()
        m = re.match(r"runway serve listening on (\S+) \(gRPC\) and (http://\S+) ", line)
        assert m, f"runway serve did not start: {line!r}"
        grpc_addr, http = m.group(1), m.group(2)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{http}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "runway serve never became ready"
            time.sleep(0.05)
        yield grpc_addr
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, f"runway serve exited {proc.returncode} on SIGTERM"
