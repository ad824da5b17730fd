"""The processes of a local stack: starting programs with their logs, waiting for
their ports and probes, reading the address line the Runway binaries print, and
stopping them with SIGTERM (SIGKILL after a timeout). Flower is one of them. Also the
loopback services' per-stack parts (a PostgreSQL database, a RabbitMQ vhost) and which
Dagster release a venv's Python runs."""
from __future__ import annotations

import importlib.metadata
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Optional

BROKER = "amqp://guest:guest@127.0.0.1:5672//"
BACKEND = "redis://127.0.0.1:6379/0"
# RabbitMQ's management API, where Flower reads queue lengths.
BROKER_API = "http://guest:guest@127.0.0.1:15672/api/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    last: object = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:g}s: {last}")


def wait_port(port: int, timeout: float = 60.0, proc: Optional[subprocess.Popen] = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g}s")


def database(name: str, create: bool = True) -> None:
    """Creates (when missing) or drops a database on the loopback PostgreSQL (trust auth)."""
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    cur = conn.cursor()
    if not create:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if not cur.fetchone():
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def broker_vhost(name: str, create: bool = True) -> str:
    """Creates (or deletes) a RabbitMQ virtual host through the management API, for a stack
    whose queues (Dagster 1.1's fixed `dagster` one included) must not meet anyone else's;
    the broker URL naming it."""
    import base64
    import urllib.parse

    url = f"http://127.0.0.1:15672/api/vhosts/{urllib.parse.quote(name, safe='')}"
    auth = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
            "Content-Type": "application/json"}
    calls = [(url, "PUT", b"{}"), (url.replace("/vhosts/", "/permissions/") + "/guest", "PUT",
                                   b'{"configure": ".*", "write": ".*", "read": ".*"}')]
    for target, method, body in calls if create else [(url, "DELETE", None)]:
        urllib.request.urlopen(urllib.request.Request(target, data=body, method=method,
                                                      headers=auth), timeout=10).close()
    return BROKER[:-1] + urllib.parse.quote(name, safe="")


def dagster_version(python: str) -> tuple[int, ...]:
    """The release of Dagster that `python` imports, e.g. (1, 1, 9)."""
    if python == sys.executable:
        text = importlib.metadata.version("dagster")
    else:
        text = subprocess.run([python, "-c", "import importlib.metadata as m;"
                               " print(m.version('dagster'))"], check=True,
                              capture_output=True, text=True).stdout.strip()
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: str

    def tail(self, n: int = 4000) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""


class Processes:
    """Programs started in `work` with `env`, each logging to `<work>/<name>.log`."""

    def __init__(self, work: str, env: dict[str, str]):
        self.work = work
        self.env = env
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], **kw) -> Proc:
        log = os.path.join(self.work, f"{name}.log")
        out = open(log, "ab")
        popen = subprocess.Popen(argv, stdout=kw.pop("stdout", out), stderr=out, env=self.env,
                                 cwd=self.work, start_new_session=True, **kw)
        out.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop_proc(self, proc: Proc, timeout: float = 30.0) -> int:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
        if proc.popen.stdout:
            proc.popen.stdout.close()
        return proc.popen.returncode

    def _first_line(self, proc: Proc, what: str, timeout: float = 60.0) -> str:
        # The Runway binaries print one line with their addresses on stdout.
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(proc.popen.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise RuntimeError(f"{proc.name} printed nothing in {timeout:g}s:\n{proc.tail()}")
        line = proc.popen.stdout.readline()
        if what not in line:
            raise RuntimeError(f"{proc.name} did not start: {line!r}\n{proc.tail()}")
        return line

    def start_flower(self, broker: str = BROKER) -> str:
        """Flower on a free loopback port, reading the loopback broker and RabbitMQ's
        management API; its URL once it answers."""
        port = free_port()
        celery = os.path.join(os.path.dirname(sys.executable), "celery")
        self.start("flower", [celery, "-b", broker, "flower", "--address=127.0.0.1",
                              f"--port={port}", "--persistent=False",
                              f"--broker_api={BROKER_API}"])
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthcheck")
        return url
