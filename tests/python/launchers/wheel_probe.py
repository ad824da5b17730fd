"""Run by test_launcher_wheel.py with the python of a venv holding only the built wheel and
what pip resolved for it: prints, as JSON, what that install is. Imports nothing of this
checkout but tests/python/stub_roundtrip.py, which it runs on the installed stubs.

    python wheel_probe.py WORK_DIR tests/python/stub_roundtrip.py
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def launcher_from_yaml(home: str, cls: str, config: dict):
    import yaml
    from dagster._core.instance import DagsterInstance

    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "dagster.yaml"), "w") as f:
        yaml.safe_dump({"run_launcher": {"module": "dagster_runway", "class": cls,
                                         "config": config}}, f)
    instance = DagsterInstance.from_config(home)
    launcher = instance.run_launcher
    return instance, launcher


def main(work: str) -> None:
    import dagster
    import dagster_runway
    from dagster_celery_k8s import CeleryK8sRunLauncher
    from dagster_k8s import K8sRunLauncher

    kubeconfig = os.path.join(work, "kubeconfig")
    with open(kubeconfig, "w") as f:
        f.write(KUBECONFIG)
    common = {"instance_config_map": "dagster-instance", "dagster_home": "/opt/dagster",
              "postgres_password_secret": "pg", "service_account_name": "dagster",
              "load_incluster_config": False, "kubeconfig_file": kubeconfig,
              "runway_endpoint": "127.0.0.1:1"}
    launchers = {}
    for cls, stock in (("RunwayK8sRunLauncher", K8sRunLauncher),
                       ("RunwayCeleryK8sRunLauncher", CeleryK8sRunLauncher)):
        config = dict(common)
        if cls == "RunwayCeleryK8sRunLauncher":
            config["broker"] = "pyamqp://guest@127.0.0.1:5672//"
        instance, launcher = launcher_from_yaml(os.path.join(work, cls), cls, config)
        launchers[cls] = {
            "class": type(launcher).__name__,
            "stock": isinstance(launcher, stock),
            "config": sorted(launcher.runway_launcher_config),
        }
        instance.dispose()

    site = os.path.dirname(os.path.dirname(dagster_runway.__file__))
    stubs = subprocess.run([sys.executable, sys.argv[2], site], capture_output=True, text=True)
    print(json.dumps({
        "package_file": dagster_runway.__file__,
        "version": dagster_runway.__version__,
        "metadata_version": importlib.metadata.version("dagster-runway"),
        "dagster": dagster.__version__,
        "dagster_version_sent": dagster_runway.compat.DAGSTER_VERSION,
        "launchers": launchers,
        "stubs": stubs.stdout.strip(),
        "stubs_stderr": stubs.stderr.strip(),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
