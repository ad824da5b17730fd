"""Every Python test runs this checkout's dagster-runway, whichever copy the venv's
editable install names: python/dagster-runway goes first on sys.path, and on PYTHONPATH
for the processes the tests start (the Dagster daemon, code servers, run workers)."""
import os
import sys

PACKAGE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "python", "dagster-runway",
)
sys.path.insert(0, PACKAGE)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (PACKAGE, os.environ.get("PYTHONPATH")) if p
)
