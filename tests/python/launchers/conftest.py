"""The launcher tests on Dagster 1.13: the shared cluster and service (launcher_cluster.py)
and one instance per launcher class, all for the session."""
from __future__ import annotations

import pytest

from dagster_runs import instance_with
from launcher_cluster import (  # noqa: F401  (fixtures)
    celery_config,
    endpoint,
    k8s_config,
    kube,
    kubeconfig,
    runway_keys,
    token_file,
)


@pytest.fixture(scope="session")
def stock(kubeconfig):
    with instance_with("dagster_k8s", "K8sRunLauncher", k8s_config(kubeconfig)) as i:
        yield i


@pytest.fixture(scope="session")
def runway(kubeconfig, endpoint, token_file):
    config = {**k8s_config(kubeconfig), **runway_keys(endpoint, token_file)}
    with instance_with("dagster_runway", "RunwayK8sRunLauncher", config) as i:
        yield i


@pytest.fixture(scope="session")
def diagnosing(kubeconfig, endpoint, token_file):
    config = {**k8s_config(kubeconfig),
              **runway_keys(endpoint, token_file, runway_health_mode="diagnose")}
    with instance_with("dagster_runway", "RunwayK8sRunLauncher", config) as i:
        yield i


@pytest.fixture(scope="session")
def celery_pair(kubeconfig, endpoint, token_file):
    with instance_with("dagster_celery_k8s", "CeleryK8sRunLauncher", celery_config(kubeconfig)) as s:
        config = {**celery_config(kubeconfig), **runway_keys(endpoint, token_file)}
        with instance_with("dagster_runway", "RunwayCeleryK8sRunLauncher", config) as r:
            yield s, r
