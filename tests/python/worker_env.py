"""What the worker suites share: the loopback broker and backend, a fresh
PostgreSQL database for a Dagster instance, and waiting for an HTTP probe."""
from __future__ import annotations

import contextlib
import time
import urllib.request
import uuid

BROKER = "amqp://guest:guest@127.0.0.1:5672//"
BACKEND = "redis://127.0.0.1:6379/0"


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready: {last}")


@contextlib.contextmanager
def fresh_database(prefix: str):
    """A new database on the loopback PostgreSQL, dropped afterwards."""
    import psycopg2

    db = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute(f"CREATE DATABASE {db}")
    try:
        yield db
    finally:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.close()


def postgres_storage(db: str, password: str = "''") -> str:
    """dagster.yaml's storage block for `db` (psycopg2: errata 12)."""
    return ("storage:\n  postgres:\n    postgres_db:\n      username: postgres\n"
            f"      password: {password}\n      hostname: 127.0.0.1\n"
            f"      db_name: {db}\n      port: 5432\n      scheme: postgresql+psycopg2\n")
