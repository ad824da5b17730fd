"""The services the chaos suite owns, so it can break them without touching the
machine's: a throwaway RabbitMQ node, a Redis with an append-only file, a TCP
proxy in front of PostgreSQL that can be cut, and a dev cluster on a fixed port
that can be restarted empty."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import redis

from devcluster import RUNWAY_BIN
from own_rabbit import OwnRabbit  # noqa: F401 (the suite's broker)
from waits import free_port, wait_for  # noqa: F401 (used here and by the tests)

NS = "default"


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
