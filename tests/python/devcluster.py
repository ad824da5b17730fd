"""Starting `runway dev-cluster` (RUNWAY_BIN) for a test module."""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNWAY_BIN = os.environ.get("RUNWAY_BIN", os.path.join(ROOT, "target", "debug", "runway"))


@contextlib.contextmanager
def dev_cluster(*extra: str):
    """Yields the kubeconfig of a dev cluster on a free loopback port; on exit
    stops it and checks it exits cleanly on SIGTERM."""
    tmp = tempfile.mkdtemp(prefix="runway-dc-")
    path = os.path.join(tmp, "kubeconfig")
    proc = subprocess.Popen(
        [RUNWAY_BIN, "dev-cluster", "--listen", "127.0.0.1:0", "--kubeconfig", path, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        yield path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, f"dev-cluster exited {proc.returncode} on SIGTERM"


def server_fields_dropped(job: dict) -> dict:
    """A Job as stored, without what the API server and the Job controller add to it."""
    job = copy.deepcopy(job)
    meta = job["metadata"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"):
        meta.pop(key, None)
    job.pop("status", None)
    job["spec"].pop("selector", None)
    for labels in (meta.get("labels") or {}, job["spec"]["template"]["metadata"]["labels"]):
        for key in [k for k in labels if "controller-uid" in k]:
            labels.pop(key)
    return job
