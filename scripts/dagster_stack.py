"""A whole Dagster deployment on Runway, on this machine: the dev cluster (process kubelet),
`runway serve`, optionally `runway worker`s, a PostgreSQL-backed Dagster instance with the
QueuedRunCoordinator and run monitoring, a code location served by `dagster api grpc`,
`dagster-daemon`, and optionally the webserver.

The end-to-end tests (tests/python/test_dagster_e2e.py, tests/dagster-1.1.9/) and the demo
(scripts/demo.py) run on it. The Dagster programs run with `Options.python` (default: this
Python), and the pods with the Python of the code location's origin, so a whole instance can
come from another venv (.venv-1.1.9): dagster.yaml, launcher keys and run submission follow
the release installed there, which must also be the one imported here (the stack reads the
instance's storage in this process). Each part is started as the real program and stopped
with SIGTERM; `Stack` is a context manager and stops, in reverse order, whatever it started.
Submitting runs to it and waiting for them: stack_runs.py; its processes: stack_procs.py.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stack_procs import (BACKEND, BROKER, Proc, Processes, broker_vhost,  # noqa: E402,F401
                         dagster_version, database, free_port, wait_http, wait_port)
from stack_runs import LOCATION, StackRuns  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Absolute: the programs run in the stack's own working directory.
RUNWAY_BIN = os.path.abspath(os.environ.get("RUNWAY_BIN", os.path.join(ROOT, "target", "debug", "runway")))
NAMESPACE = "default"
PG_PASSWORD = "runway-stack-pw"  # loopback PostgreSQL trusts; the value only travels
IMAGE = "runway-example/user-code:1"


@dataclass
class Options:
    """What to run. `launcher` is `runway-k8s`, `runway-celery-k8s`, `stock-k8s` or
    `stock-celery-k8s` (the stock dagster-k8s / dagster-celery-k8s launchers)."""

    launcher: str = "runway-k8s"
    python: str = sys.executable  # the Dagster programs' venv (their dagster CLI)
    backend: str = BACKEND  # the steps' result backend (rpc:// if no `redis`; serve's stays)
    worker_args: tuple[str, ...] = ()  # more `runway worker` flags, e.g. --dagster-version
    own_vhost: bool = False  # a RabbitMQ vhost of its own (deleted at the end)
    job_file: str = os.path.join(ROOT, "scripts", "example_jobs.py")
    workers: tuple[str, ...] = ()  # one `runway worker -Q <queue>` each
    webserver: bool = False
    flower: bool = False
    database: Optional[str] = None  # None: a fresh one, dropped at the end
    keep_database: bool = False
    max_concurrent_runs: int = -1
    start_timeout_seconds: int = 180
    cancel_timeout_seconds: int = 60
    poll_interval_seconds: int = 5
    max_resume_run_attempts: int = 1
    images: str = "*,!*.invalid/*"
    node_cpu_millis: int = 64_000
    pause_kubelet: bool = False
    serve_args: tuple[str, ...] = ()
    extra_launcher_config: dict = field(default_factory=dict)
    work_dir: Optional[str] = None


class Stack(StackRuns, Processes):
    def __init__(self, options: Options = Options(), *, cluster: Optional["Stack"] = None):
        """With `cluster`, shares that stack's dev cluster and `runway serve` (a second
        Dagster instance on the same control plane)."""
        self.o = options
        self.shared = cluster
        self.bin = os.path.dirname(options.python)
        self.dagster_version = dagster_version(options.python)
        self._exit = contextlib.ExitStack()
        work = options.work_dir or tempfile.mkdtemp(prefix="runway-stack-")
        os.makedirs(work, exist_ok=True)
        self.home = os.path.join(work, "dagster_home")
        os.makedirs(self.home, exist_ok=True)
        super().__init__(work, dict(os.environ, DAGSTER_HOME=self.home,
                                    DAGSTER_PG_PASSWORD=PG_PASSWORD, PYTHONUNBUFFERED="1"))
        # The pods are local processes: `dagster` and the venv's Python come first on PATH,
        # as an image would have them.
        self.env["PATH"] = self.bin + os.pathsep + self.env["PATH"]
        self.kubeconfig = ""
        self.endpoint = ""
        self.serve_http = ""
        self.cluster_url = ""
        self.worker_http: dict[str, str] = {}
        self.webserver_url = ""
        self.flower_url = ""
        self.database = ""
        self.instance = None
        self.broker = BROKER
        self.vhost = ""

    # --- parts -----------------------------------------------------------------------------

    def _dev_cluster(self) -> None:
        self.kubeconfig = os.path.join(self.work, "kubeconfig")
        argv = [RUNWAY_BIN, "dev-cluster", "--listen", "127.0.0.1:0", "--kubeconfig",
                self.kubeconfig, "--kubelet", "process", "--images", self.o.images,
                "--node-cpu-millis", str(self.o.node_cpu_millis)]
        if self.o.pause_kubelet:
            argv.append("--pause-kubelet")
        proc = self.start("dev-cluster", argv, stdout=subprocess.PIPE, text=True)
        line = self._first_line(proc, "listening on")
        self.cluster_url = re.search(r"(https?://\S+)", line).group(1)
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=self.kubeconfig)
        core = client.CoreV1Api(api)
        try:
            core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": "default"}})
        except client.ApiException as e:
            if e.status != 409:  # a real cluster makes it with the namespace
                raise
        core.create_namespaced_config_map(
            NAMESPACE, {"metadata": {"name": "dagster-instance"}, "data": {"dagster.yaml": "{}"}})
        core.create_namespaced_secret(NAMESPACE, {
            "metadata": {"name": "dagster-postgresql-secret"},
            "stringData": {"postgresql-password": PG_PASSWORD}})
        api.close()

    def _serve(self) -> None:
        argv = [RUNWAY_BIN, "serve", "--listen=127.0.0.1:0", "--http-listen=127.0.0.1:0",
                f"--kubeconfig={self.kubeconfig}", f"--namespace={NAMESPACE}",
                "--kube-qps=0", "--log-format=text", f"--broker-url={self.broker}",
                f"--result-backend={BACKEND}", *self.o.serve_args]
        proc = self.start("runway-serve", argv, stdout=subprocess.PIPE, text=True)
        line = self._first_line(proc, "listening on")
        m = re.match(r"runway serve listening on (\S+) \(gRPC\) and (http://\S+) ", line)
        if not m:
            raise RuntimeError(f"runway serve printed {line!r}")
        self.endpoint, self.serve_http = m.group(1), m.group(2)
        wait_http(f"{self.serve_http}/ready")

    def _worker(self, queue: str) -> None:
        argv = [RUNWAY_BIN, "worker", "-Q", queue, "--broker-url", self.broker,
                "--result-backend", self.o.backend, "--kubeconfig", self.kubeconfig,
                "--namespace", NAMESPACE, "--http-listen", "127.0.0.1:0",
                "--hostname", f"runway@{queue}", "--log-format", "text",
                "--shutdown-grace-secs", "5", "--task-events", *self.o.worker_args]
        proc = self.start(f"runway-worker-{queue}", argv, stdout=subprocess.PIPE, text=True)
        line = self._first_line(proc, "consuming")
        http = "http://" + line.rsplit("http://", 1)[1].strip().rstrip(")")
        wait_http(f"{http}/ready")
        self.worker_http[queue] = http

    def _database(self) -> None:
        self.database = self.o.database or f"runway_stack_{uuid.uuid4().hex[:8]}"
        database(self.database)
        if not self.o.keep_database:
            self._exit.callback(database, self.database, create=False)

    def launcher_config(self) -> dict:
        common = {
            "instance_config_map": "dagster-instance",
            "postgres_password_secret": "dagster-postgresql-secret",
            "dagster_home": self.home,
            "load_incluster_config": False,
            "kubeconfig_file": self.kubeconfig,
            "job_namespace": NAMESPACE,
            # K8sRunLauncher requires it (a str, compat errata 1).
            "service_account_name": "default",
        }
        runway = {"runway_endpoint": self.endpoint}
        celery = {**common, "broker": self.broker, "backend": self.o.backend}
        if self.dagster_version < (1, 2, 2):
            # dagster-celery-k8s 0.17.9 has no launcher job_namespace (compat errata 16): its
            # runs name their namespace in the executor config.
            del celery["job_namespace"]
        if self.o.launcher == "runway-k8s":
            module, cls, config = "dagster_runway", "RunwayK8sRunLauncher", {**common, **runway}
        elif self.o.launcher == "runway-celery-k8s":
            module, cls, config = "dagster_runway", "RunwayCeleryK8sRunLauncher", {
                **celery, **runway}
        elif self.o.launcher == "stock-k8s":
            module, cls, config = "dagster_k8s", "K8sRunLauncher", common
        elif self.o.launcher == "stock-celery-k8s":
            module, cls, config = "dagster_celery_k8s", "CeleryK8sRunLauncher", celery
        else:
            raise ValueError(f"launcher {self.o.launcher!r}: expected runway-k8s,"
                             " runway-celery-k8s, stock-k8s or stock-celery-k8s")
        config.update(self.o.extra_launcher_config)
        return {"module": module, "class": cls, "config": config}

    def _dagster_yaml(self) -> None:
        import yaml

        doc = {
            "storage": {"postgres": {"postgres_db": {
                "username": "postgres", "password": {"env": "DAGSTER_PG_PASSWORD"},
                "hostname": "127.0.0.1", "db_name": self.database, "port": 5432,
                # psycopg2, which dagster-postgres installs (compat errata 12).
                "scheme": "postgresql+psycopg2"}}},
            "run_coordinator": {"module": "dagster._core.run_coordinator",
                                "class": "QueuedRunCoordinator",
                                "config": {"max_concurrent_runs": self.o.max_concurrent_runs,
                                           "dequeue_interval_seconds": 1}},
            "run_launcher": self.launcher_config(),
            "run_monitoring": {"enabled": True,
                               "start_timeout_seconds": self.o.start_timeout_seconds,
                               "cancel_timeout_seconds": self.o.cancel_timeout_seconds,
                               "poll_interval_seconds": self.o.poll_interval_seconds,
                               "max_resume_run_attempts": self.o.max_resume_run_attempts},
            "telemetry": {"enabled": False},
        }
        if self.dagster_version < (1, 2):
            # Dagster 1.1 knows no cancel timeout (its daemon leaves CANCELING runs alone).
            del doc["run_monitoring"]["cancel_timeout_seconds"]
        with open(os.path.join(self.home, "dagster.yaml"), "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)

    def _code_location(self) -> None:
        port = free_port()
        argv = [self.o.python, "-m", "dagster", "api", "grpc", "--python-file", self.o.job_file,
                "--working-directory", os.path.dirname(self.o.job_file), "--host", "127.0.0.1",
                "--port", str(port), "--location-name", LOCATION, "--container-image", IMAGE,
                "--use-python-environment-entry-point"]
        proc = self.start("code-location", argv)
        wait_port(port, timeout=120, proc=proc.popen)
        self.workspace = os.path.join(self.work, "workspace.yaml")
        with open(self.workspace, "w") as f:
            f.write("load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
                    f"      port: {port}\n      location_name: {LOCATION}\n")

    def _daemon(self) -> None:
        self.daemon = self.start("dagster-daemon", [
            os.path.join(self.bin, "dagster-daemon"), "run",
            "-w", self.workspace])

    def _webserver(self) -> None:
        port = free_port()
        # Dagster before 1.3 names it `dagit`.
        program = "dagster-webserver" if self.dagster_version >= (1, 3) else "dagit"
        proc = self.start("dagster-webserver", [
            os.path.join(self.bin, program),
            "-h", "127.0.0.1", "-p", str(port), "-w", self.workspace])
        self.webserver_url = f"http://127.0.0.1:{port}"
        wait_port(port, timeout=120, proc=proc.popen)
        wait_http(f"{self.webserver_url}/server_info", timeout=120)

    def __enter__(self) -> "Stack":
        if dagster_version(sys.executable) != self.dagster_version:
            raise RuntimeError(f"{self.o.python} runs Dagster {self.dagster_version}, this"
                               f" process {dagster_version(sys.executable)}: run it from there")
        try:
            if self.shared is not None:
                self.broker = self.shared.broker
            elif self.o.own_vhost:
                self.vhost = f"runway-stack-{uuid.uuid4().hex[:8]}"
                self.broker = broker_vhost(self.vhost)
            if self.shared is None:
                self._dev_cluster()
                self._serve()
            else:
                self.kubeconfig, self.endpoint = self.shared.kubeconfig, self.shared.endpoint
                self.serve_http, self.cluster_url = self.shared.serve_http, self.shared.cluster_url
            for q in self.o.workers:
                self._worker(q)
            self._database()
            self._dagster_yaml()
            self._code_location()
            self._daemon()
            if self.o.webserver:
                self._webserver()
            if self.o.flower:
                self.flower_url = self.start_flower(self.broker)
            from dagster import DagsterInstance

            # The instance in this process reads the same dagster.yaml.
            os.environ["DAGSTER_PG_PASSWORD"] = PG_PASSWORD
            self.instance = DagsterInstance.from_config(self.home)
            self._exit.callback(self.instance.dispose)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> dict[str, int]:
        """Stops everything (Dagster first, then the workers, serve, the cluster) and
        returns each program's exit status; then drops what they used (the database, whose
        loss would keep the daemon's threads retrying past its SIGTERM)."""
        codes = {}
        for proc in reversed(self.procs):
            # 1.1.9's daemon waits 30 s for its scheduler thread, which ignores the shutdown.
            legacy_daemon = proc.name == "dagster-daemon" and self.dagster_version < (1, 2)
            grace = 5.0 if legacy_daemon else 30.0
            codes[proc.name] = self.stop_proc(proc, grace)
        self.procs.clear()
        self._exit.close()
        if self.vhost:
            broker_vhost(self.vhost, create=False)
            self.vhost = ""
        if not self.o.work_dir:
            shutil.rmtree(self.work, ignore_errors=True)
        return codes


def celery_run_config(stack: Stack, queue: str) -> dict:
    """The celery_k8s_job_executor's run config: its image, namespace and cluster, and the
    queue for every op without a `dagster-celery/queue` tag."""
    return {"execution": {"config": {
        "job_image": IMAGE,
        "job_namespace": NAMESPACE,
        "load_incluster_config": False,
        "kubeconfig_file": stack.kubeconfig,
        "broker": stack.broker,
        "backend": stack.o.backend,
        "config_source": {"task_default_queue": queue},
        "job_wait_timeout": 300.0,
    }}}