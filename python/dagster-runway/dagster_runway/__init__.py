"""dagster-runway: Dagster's Kubernetes run launchers, launching through `runway serve`.

Switch a deployment by changing `module`/`class` in dagster.yaml and adding the Runway keys:

    run_launcher:
      module: dagster_runway
      class: RunwayK8sRunLauncher          # or RunwayCeleryK8sRunLauncher
      config:
        runway_endpoint: runway:50051
        ...                                # the existing K8sRunLauncher config, unchanged
"""
from dagster_runway.client import RunwayClient, RunwayError, Settings
from dagster_runway.config import RUNWAY_CONFIG, RUNWAY_KEYS
from dagster_runway.launcher import RunwayCeleryK8sRunLauncher, RunwayK8sRunLauncher
from dagster_runway.version import __version__

__all__ = [
    "RUNWAY_CONFIG",
    "RUNWAY_KEYS",
    "RunwayCeleryK8sRunLauncher",
    "RunwayClient",
    "RunwayError",
    "RunwayK8sRunLauncher",
    "Settings",
    "__version__",
]
