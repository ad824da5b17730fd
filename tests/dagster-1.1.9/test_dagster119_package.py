"""dagster-runway on Dagster 1.1.9: it imports, its stubs work on protobuf 3.20 and grpcio
1.47, and both classes load from a dagster.yaml, and again from the InstanceRef a run pod
gets."""
from __future__ import annotations

import os
import subprocess
import sys

import dagster
import google.protobuf
import grpc
import pytest
from dagster._core.instance import DagsterInstance
from dagster_celery_k8s import CeleryK8sRunLauncher
from dagster_k8s import K8sRunLauncher

import dagster_runway
from dagster_runway import compat
from devcluster import ROOT
from launcher_cluster import NS

PACKAGE = os.path.join(ROOT, "python", "dagster-runway")


def test_dagster_runway_imports_with_the_1_1_9_names():
    assert (dagster.__version__, compat.DAGSTER_K8S_VERSION) == ("1.1.9", "0.17.9")
    assert (google.protobuf.__version__, grpc.__version__) == ("3.20.3", "1.47.5")
    assert dagster_runway.__file__.startswith(PACKAGE)
    assert compat.DagsterRun.__module__ == "dagster._core.storage.pipeline_run"
    # 0.17.9's rules: health ignores the run status, the image tag comes before the Job.
    assert not compat.HEALTH_JUDGES_RUN_STATUS and not compat.IMAGE_TAG_FROM_JOB


def test_stubs_load_without_warnings_and_serve_calls():
    script = os.path.join(ROOT, "tests", "python", "stub_roundtrip.py")
    out = subprocess.run([sys.executable, script, PACKAGE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "protobuf 3.20.3 (cpp), grpcio 1.47.5: ok", out.stdout


@pytest.mark.parametrize("variant", ["k8s", "celery"])
def test_both_classes_load_from_dagster_yaml_and_from_the_instance_ref(
        variant, runway, celery_pair):
    instance = runway if variant == "k8s" else celery_pair[1]
    stock_cls = K8sRunLauncher if variant == "k8s" else CeleryK8sRunLauncher
    want = "RunwayK8sRunLauncher" if variant == "k8s" else "RunwayCeleryK8sRunLauncher"
    launcher = instance.run_launcher
    assert type(launcher).__name__ == want and isinstance(launcher, stock_cls)
    assert set(type(launcher).config_type()) == (
        set(stock_cls.config_type()) | dagster_runway.RUNWAY_KEYS)
    body = launcher.runway_launcher_config
    assert not [k for k in body if k.startswith("runway_")]
    assert body["service_account_name"] == "dagster"

    ref = instance.get_ref()
    assert (ref.run_launcher_data.module_name, ref.run_launcher_data.class_name) == (
        "dagster_runway", want)
    with DagsterInstance.from_ref(ref) as in_pod:
        again = in_pod.run_launcher
        assert type(again).__name__ == want
        assert again.runway_launcher_config == body
        if variant == "k8s":
            assert again.job_namespace == NS
        else:
            # What celery_k8s_job_executor reads off the launcher in a 1.1.9 run pod.
            assert again.get_k8s_job_config("img:1", {}).env_config_maps == [
                "dagster-pipeline-env"]
