"""The chaos suite (`make chaos`, part of `make test`): it reuses the Python suite's
helpers (tests/python on sys.path), runs this checkout's dagster-runway, and prints
its per-fault and per-attack figures at the end (report.py)."""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PACKAGE = os.path.join(ROOT, "python", "dagster-runway")
for path in (os.path.join(ROOT, "tests", "python"), PACKAGE, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (PACKAGE, os.environ.get("PYTHONPATH")) if p)

import report  # noqa: E402

STARTED = time.monotonic()


def pytest_terminal_summary(terminalreporter):
    wall = time.monotonic() - STARTED
    report.write(wall)
    terminalreporter.section("chaos figures")
    for line in report.tables(wall):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(also in {os.path.relpath(report.PATH, os.getcwd())})")
