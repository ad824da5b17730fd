"""Prints the per-version parity summaries (test_parity.py) in pytest's terminal summary."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import parity_summary  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    if parity_summary.LINES:
        terminalreporter.section("runway parity per Dagster version")
        for line in parity_summary.LINES:
            terminalreporter.write_line(line)
