"""What the worker suites share: the loopback broker and backend, a fresh
PostgreSQL database for a Dagster instance, and waiting for an HTTP probe."""
from __future__ import annotations

import contextlib
import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "scripts"))

# One definition of the loopback services and the probe wait, shared with the Dagster stack.
from dagster_stack import BACKEND, BROKER, wait_http  # noqa: E402,F401


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
