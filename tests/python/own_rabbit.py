"""A RabbitMQ node of a test's own: its own node name, ports, Mnesia, logs,
config and Erlang cookie under a temp dir, run as this user from the package's
scripts, so a suite can stop it or give it listeners without touching the
machine's broker. The chaos suite breaks it; the TLS suite adds an ssl listener."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

from waits import free_port, wait_for

RABBIT_BIN = "/usr/lib/rabbitmq/bin"


class OwnRabbit:
    """`conf`: extra rabbitmq.conf lines. `heartbeat`: the AMQP heartbeat the
    node proposes (and the workers' URL asks for), so a stopped client is
    noticed in about twice that."""

    def __init__(self, name: str = "chaos", conf: tuple[str, ...] = (),
                 heartbeat: int | None = 5):
        self.dir = tempfile.mkdtemp(prefix=f"runway-{name}-rmq-")
        self.port, self.dist = free_port(), free_port()
        self.node = f"runway-{name}-{os.getpid()}@localhost"
        lines = [f"listeners.tcp.default = 127.0.0.1:{self.port}", *conf, "log.console = false"]
        if heartbeat:
            lines.append(f"heartbeat = {heartbeat}")
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[].\n")  # no management plugin: its port is the system node's
        open(os.path.join(self.dir, "env.conf"), "w").close()
        self.env = dict(
            os.environ, HOME=self.dir, RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.port), RABBITMQ_DIST_PORT=str(self.dist),
            RABBITMQ_CONF_ENV_FILE=os.path.join(self.dir, "env.conf"),
            RABBITMQ_CONFIG_FILE=os.path.join(self.dir, "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.dir, "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
            RABBITMQ_PID_FILE=os.path.join(self.dir, "node.pid"),
            ERL_EPMD_ADDRESS="127.0.0.1")
        self.proc = None
        # The URL the workers and the publisher use; lapin takes the heartbeat from it.
        self.kombu_url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.url = self.kombu_url + (f"?heartbeat={heartbeat}" if heartbeat else "")

    def start(self, timeout: float = 90):
        log = open(os.path.join(self.dir, "server.out"), "ab")
        self.proc = subprocess.Popen([os.path.join(RABBIT_BIN, "rabbitmq-server")], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        log.close()

        def up():
            assert self.proc.poll() is None, "rabbitmq-server exited:\n" + self.output()
            return self.ctl("status", check=False).returncode == 0 and self.amqp_ok()
        wait_for(up, f"the RabbitMQ node {self.node}", timeout, every=0.5)

    def amqp_ok(self) -> bool:
        from kombu import Connection
        try:
            with Connection(self.kombu_url, connect_timeout=2) as c:
                c.connect()
            return True
        except Exception:
            return False

    def stop(self):
        """Stops the whole node (every connection drops; durable queues and
        persistent messages are on disk)."""
        self.ctl("stop")
        self.proc.wait(timeout=60)

    def ctl(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([os.path.join(RABBIT_BIN, "rabbitmqctl"), "-n", self.node, *args],
                             env=self.env, capture_output=True, text=True, timeout=90)
        if check:
            assert out.returncode == 0, f"rabbitmqctl {args}: {out.stdout}\n{out.stderr}"
        return out

    def queues(self) -> list[dict]:
        """Every queue of the node, parking queues included, with its counts."""
        out = self.ctl("list_queues", "-q", "--formatter", "json", "name", "messages",
                       "messages_unacknowledged")
        return json.loads(out.stdout or "[]")

    def output(self) -> str:
        with open(os.path.join(self.dir, "server.out"), errors="replace") as f:
            return f.read()[-3000:]

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.ctl("stop", check=False)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
