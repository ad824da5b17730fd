"""The launcher tests on Dagster 1.1.9, run with .venv-1.1.9 (`make python-test-1.1.9`):
the dev cluster and runway serve of tests/python/launcher_cluster.py, a throwaway PostgreSQL
database for the session, the capturing proxy the Runway launchers call, and one instance
per launcher class loaded from its dagster.yaml."""
from __future__ import annotations

import os
import sys
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "python", "dagster-runway")
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
sys.path.insert(0, PACKAGE)
# SQLAlchemy 1.4's notice that Dagster 1.1.9's queries are not 2.0-ready, once per session.
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")

import warnings  # noqa: E402

import psycopg2  # noqa: E402
import pytest  # noqa: E402

with warnings.catch_warnings():
    # kombu 5.2 looks up its entry points through an interface Python 3.10 deprecates.
    warnings.filterwarnings("ignore", "SelectableGroups dict interface", DeprecationWarning)
    import kombu.serialization  # noqa: E402,F401

from capture_proxy import capturing_proxy  # noqa: E402
from dagster119 import instance_from_yaml  # noqa: E402
from launcher_cluster import (  # noqa: E402,F401  (fixtures)
    celery_config,
    endpoint,
    k8s_config,
    kube,
    kubeconfig,
    runway_keys,
    token_file,
)


def pytest_configure(config):
    # kubernetes 25.3's REST client reads response headers the way urllib3 deprecates.
    config.addinivalue_line(
        "filterwarnings", "ignore:HTTPResponse.getheaders:DeprecationWarning:kubernetes"
    )


@pytest.fixture(scope="session")
def database():
    """A database of its own on the local PostgreSQL (trust auth), dropped at the end."""
    name = f"runway_dagster119_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def proxy(endpoint):
    """(address, CapturingProxy) in front of the session's runway serve."""
    with capturing_proxy(endpoint) as pair:
        yield pair


def _instance(tmp_path_factory, database, module, cls, config):
    home = str(tmp_path_factory.mktemp(f"dagster-home-{cls}"))
    return instance_from_yaml(home, database, module, cls, config)


@pytest.fixture(scope="session")
def stock(kubeconfig, database, tmp_path_factory):
    with _instance(tmp_path_factory, database, "dagster_k8s", "K8sRunLauncher",
                   k8s_config(kubeconfig)) as i:
        yield i


@pytest.fixture(scope="session")
def runway(kubeconfig, database, proxy, token_file, tmp_path_factory):
    config = {**k8s_config(kubeconfig), **runway_keys(proxy[0], token_file)}
    with _instance(tmp_path_factory, database, "dagster_runway", "RunwayK8sRunLauncher",
                   config) as i:
        yield i


@pytest.fixture(scope="session")
def celery_pair(kubeconfig, database, proxy, token_file, tmp_path_factory):
    # dagster-celery-k8s 0.17.9 has no launcher job_namespace: runs name theirs.
    config = celery_config(kubeconfig, job_namespace=False)
    with _instance(tmp_path_factory, database, "dagster_celery_k8s", "CeleryK8sRunLauncher",
                   config) as s:
        # Both Runway instances share the session's database: only the K8s one follows
        # WatchRuns, or a run that cannot start would be failed twice.
        keys = runway_keys(proxy[0], token_file, runway_fail_unstartable_runs=False)
        with _instance(tmp_path_factory, database, "dagster_runway",
                       "RunwayCeleryK8sRunLauncher", {**config, **keys}) as r:
            yield s, r
