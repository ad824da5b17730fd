"""The services the chaos suite owns, so it can break them without touching the
machine's: a throwaway RabbitMQ node, a Redis with an append-only file, a TCP
proxy in front of PostgreSQL that can be cut, and a dev cluster on a fixed port
that can be restarted empty."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import redis

from devcluster import RUNWAY_BIN
from waits import free_port, wait_for  # noqa: F401 (used here and by the tests)

RABBIT_BIN = "/usr/lib/rabbitmq/bin"
NS = "default"


class OwnRabbit:
    """A RabbitMQ node of the test's own (its own node name, ports, Mnesia, logs,
    config and Erlang cookie under a temp dir), run as this user from the
    package's own scripts. The node proposes a 5 s AMQP heartbeat, so a
    stopped client is noticed in about 10 s."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="runway-chaos-rmq-")
        self.port, self.dist = free_port(), free_port()
        self.node = f"runway-chaos-{os.getpid()}@localhost"
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write(f"listeners.tcp.default = 127.0.0.1:{self.port}\nheartbeat = 5\n"
                    "log.console = false\n")
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
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//?heartbeat=5"
        self.kombu_url = f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self):
        log = open(os.path.join(self.dir, "server.out"), "ab")
        self.proc = subprocess.Popen([os.path.join(RABBIT_BIN, "rabbitmq-server")], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        log.close()

        def up():
            assert self.proc.poll() is None, "rabbitmq-server exited:\n" + self.output()
            return self.ctl("status", check=False).returncode == 0 and self._amqp_ok()
        wait_for(up, "the RabbitMQ node", 90, every=0.5)

    def _amqp_ok(self) -> bool:
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


class OwnRedis:
    """A redis-server of the test's own that persists every write to an
    append-only file, so a restart keeps results and claims."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="runway-chaos-redis-")
        self.port = free_port()
        self.proc = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                return redis.Redis(port=self.port).ping()
            except redis.ConnectionError:
                return False
        wait_for(up, "redis-server", 15, every=0.05)

    def restart(self, down_for: float = 1.0):
        try:
            redis.Redis(port=self.port).shutdown(save=False)
        except redis.ConnectionError:
            pass  # shutdown closes the connection it came on
        self.proc.wait(timeout=10)
        time.sleep(down_for)
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class TcpProxy:
    """A loopback TCP proxy to `target_port`. `cut()` closes every relayed
    connection and refuses new ones (accepted, then closed at once) until
    `restore()`: PostgreSQL vanishing from its clients' point of view."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.open = True
        self.live: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.live |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            self._drop(s)

    def _drop(self, s: socket.socket):
        with self.lock:
            self.live.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self):
        self.open = False
        with self.lock:
            live = list(self.live)
        for s in live:
            self._drop(s)

    def restore(self):
        self.open = True

    def close(self):
        self.closing = True
        self.cut()
        self.sock.close()


class DevCluster:
    """`runway dev-cluster` (simulated kubelet) on a fixed loopback port, so it can
    be stopped and started again empty with the same kubeconfig."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="runway-chaos-dc-")
        self.port = free_port()
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.proc = None
        self.starts = 0

    def start(self):
        from kubernetes import client, config

        self.starts += 1  # before it listens: a watch connected from now on sees this start
        self.proc = subprocess.Popen(
            [RUNWAY_BIN, "dev-cluster", "--listen", f"127.0.0.1:{self.port}", "--kubeconfig",
             self.kubeconfig, "--kubelet", "simulated"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        # What the step Jobs refer to (the instance ConfigMap); the namespace and
        # its default ServiceAccount come with the cluster.
        api = config.new_client_from_config(config_file=self.kubeconfig)
        client.CoreV1Api(api).create_namespaced_config_map(
            NS, {"metadata": {"name": "dagster-instance"}, "data": {"dagster.yaml": "{}"}})
        api.close()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        assert self.proc.returncode == 0, f"dev-cluster exited {self.proc.returncode}"

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
