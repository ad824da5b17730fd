"""dagster-runway as a user installs it: `scripts/dist.sh` (`make dist`) builds the sdist and
wheel with the pinned `build`, and the wheel goes into a fresh venv with its dependencies
resolved by pip from the package index (so the newest Dagster pyproject.toml allows). There
it imports, its stubs work on the newest protobuf and grpcio, and both classes load from an
instance's dagster.yaml. One venv for the session, under pytest's tmp dir."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

from devcluster import ROOT

CONSTRAINTS = os.path.join(ROOT, "python", "constraints.txt")
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wheel_probe.py")
STUBS = os.path.join(ROOT, "tests", "python", "stub_roundtrip.py")


def run(*argv, env=None, **kw) -> str:
    # Without the PYTHONPATH tests/python/conftest.py sets: only the venv's packages count.
    env = {k: v for k, v in (env or os.environ).items() if k != "PYTHONPATH"}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, argv))}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory):
    """(venv python, wheel, sdist): built and installed once per session."""
    tmp = tmp_path_factory.mktemp("wheel")
    venv, dist = tmp / "venv", tmp / "dist"
    run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    run(python, "-m", "pip", "install", "-q", "build", "setuptools", "-c", CONSTRAINTS)
    run(os.path.join(ROOT, "scripts", "dist.sh"),
        env=dict(os.environ, PYTHON=python, DIST_DIR=str(dist)))
    [wheel] = glob.glob(str(dist / "dagster_runway-*-py3-none-any.whl"))
    [sdist] = glob.glob(str(dist / "dagster_runway-*.tar.gz"))
    run(python, "-m", "pip", "install", "-q", wheel)
    return python, wheel, sdist


def test_the_wheel_installs_with_its_dependencies_and_loads_both_classes(wheel_venv, tmp_path):
    python, wheel, sdist = wheel_venv
    import dagster_runway

    version = dagster_runway.__version__
    assert os.path.basename(wheel) == f"dagster_runway-{version}-py3-none-any.whl"
    assert os.path.basename(sdist) == f"dagster_runway-{version}.tar.gz"
    run(python, "-m", "pip", "check")

    # Outside this checkout, so nothing of it is on the path.
    probe = json.loads(run(python, PROBE, str(tmp_path), STUBS, cwd=str(tmp_path)))
    assert "site-packages" in probe["package_file"], probe["package_file"]
    assert probe["version"] == probe["metadata_version"] == version
    assert probe["dagster_version_sent"] == probe["dagster"]
    for cls in ("RunwayK8sRunLauncher", "RunwayCeleryK8sRunLauncher"):
        loaded = probe["launchers"][cls]
        assert loaded["class"] == cls and loaded["stock"], loaded
        assert "runway_endpoint" not in loaded["config"]
    assert probe["stubs"].endswith(": ok"), probe["stubs_stderr"]
