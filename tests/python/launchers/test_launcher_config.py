"""The classes as dagster.yaml loads them: the stock config schema plus the runway_* keys,
and the committed gRPC stubs being those the generator makes from the proto."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from dagster_celery_k8s import CeleryK8sRunLauncher
from dagster_k8s import K8sRunLauncher

import dagster_runway
from dagster_runs import load_launcher
from devcluster import ROOT
from launcher_cluster import NS, k8s_config, runway_keys


def test_config_type_is_the_stock_one_plus_the_runway_keys(kubeconfig, endpoint, token_file):
    for stock_cls, runway_cls in ((K8sRunLauncher, dagster_runway.RunwayK8sRunLauncher),
                                  (CeleryK8sRunLauncher, dagster_runway.RunwayCeleryK8sRunLauncher)):
        assert issubclass(runway_cls, stock_cls)
        keys = set(runway_cls.config_type())
        assert keys == set(stock_cls.config_type()) | dagster_runway.RUNWAY_KEYS

    good = {**k8s_config(kubeconfig), **runway_keys(endpoint, token_file)}
    launcher = load_launcher("RunwayK8sRunLauncher", good)
    assert launcher.supports_check_run_worker_health is True
    assert launcher.supports_resume_run is True and launcher.supports_run_worker_crash_recovery
    assert launcher.inst_data.config_dict == good
    settings = launcher.runway_client.settings
    assert (settings.timeout_seconds, settings.retry_seconds) == (30.0, 30.0)
    # Every stock key keeps its meaning.
    assert (launcher.job_namespace, launcher.image_pull_policy, launcher.env_config_maps) == (
        NS, "Always", ["dagster-pipeline-env"])

    with pytest.raises(Exception, match="RunwayHealthMode"):
        load_launcher("RunwayK8sRunLauncher", {**good, "runway_health_mode": "sometimes"})
    with pytest.raises(Exception, match="runway_endpoint"):
        load_launcher("RunwayK8sRunLauncher", k8s_config(kubeconfig))
    with pytest.raises(Exception, match="runway_tls_key_file go together"):
        load_launcher("RunwayK8sRunLauncher", {**good, "runway_tls_cert_file": token_file})


# === the committed stubs ====================================================================


def test_stubs_are_current(tmp_path):
    path = os.path.join(ROOT, "python", "dagster-runway", "tools", "gen_stubs.py")
    spec = importlib.util.spec_from_file_location("gen_stubs", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for fresh in gen.generate(str(tmp_path)):
        name = os.path.basename(fresh)
        with open(fresh) as f, open(os.path.join(gen.STUB_DIR, name)) as g:
            assert f.read() == g.read(), (
                f"dagster_runway/_proto/{name} is stale: run python/dagster-runway/tools/gen_stubs.py")


def test_stubs_load_without_warnings_and_serve_calls():
    # The same script proves the stubs in every test venv, on that venv's protobuf and grpcio.
    script = os.path.join(ROOT, "tests", "python", "stub_roundtrip.py")
    package = os.path.join(ROOT, "python", "dagster-runway")
    out = subprocess.run([sys.executable, script, package], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(": ok"), out.stdout
