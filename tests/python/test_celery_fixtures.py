"""The Celery wire fixtures Rust tests against are what the installed
celery/kombu produce today (they are regenerated, never typed by hand)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_celery_fixtures_are_current():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_celery_fixtures.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
