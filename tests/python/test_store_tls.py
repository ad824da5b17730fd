"""TLS to every store, end to end with the real binary: a `runway worker` reaches
RabbitMQ over amqps://, Redis over rediss:// and PostgreSQL with
sslmode=verify-full, all loopback servers with a CA the test made, and runs a step
task the real Celery client published; the result lands. Then what must fail does,
clearly and without the password: a wrong CA for each store, verify-full to a host
name the certificate does not carry (verify-ca passes), sslmode=disable against a
server that requires TLS; and `prefer` falls back to plain against a plain server.

The PostgreSQL cases vary the task's instance_ref (the storage params the worker
reads), so one worker serves them all."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from devcluster import RUNWAY_BIN
from tls_servers import Certs, OwnPostgres, OwnRabbitTls, OwnRedisTls, wait_for
from worker_env import wait_http
from worker_tasks import NS, cluster, events_of, step_kwargs  # noqa: F401 (fixture)

PASSWORD = "pg-s3cret-pw"  # trust auth ignores it; it must never show up in an error


@pytest.fixture(scope="module")
def certs():
    c = Certs()
    yield c
    c.close()


@pytest.fixture(scope="module")
def stores(certs):
    with contextlib.ExitStack() as stack:
        s = {}
        for key, make in (("pg", lambda: OwnPostgres(certs, tls=True)),
                          ("plain", lambda: OwnPostgres(certs, tls=False)),
                          ("redis", lambda: OwnRedisTls(certs)),
                          ("rabbit", lambda: OwnRabbitTls(certs))):
            s[key] = make()
            stack.callback(s[key].close)
        s["backend"] = (f"rediss://localhost:{s['redis'].port}/0"
                        f"?ssl_cert_reqs=required&ssl_ca_certs={certs.ca}")
        yield s


def storage_yaml(port: int, db: str, host: str = "localhost", **params: str) -> str:
    lines = "".join(f"        {k}: '{v}'\n" for k, v in params.items())
    return ("storage:\n  postgres:\n    postgres_db:\n      username: postgres\n"
            f"      password: {PASSWORD}\n      hostname: {host}\n      db_name: {db}\n"
            f"      port: {port}\n      scheme: postgresql+psycopg2\n      params:\n{lines}"
            "telemetry:\n  enabled: false\n")


@contextlib.contextmanager
def dagster_home(yaml_text: str):
    home = tempfile.mkdtemp(prefix="runway-tls-dh-")
    with open(os.path.join(home, "dagster.yaml"), "w") as f:
        f.write(yaml_text)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


class RefOnly:
    """What step_kwargs needs of an instance: its ref, read from dagster.yaml
    without connecting (so a ref that cannot connect can still be sent)."""

    def __init__(self, home: str):
        from dagster._core.instance.ref import InstanceRef
        self.ref = InstanceRef.from_dir(home)

    def get_ref(self):
        return self.ref


@pytest.fixture(scope="module")
def instances(stores, certs):
    """A Dagster instance over TLS (verify-full against the CA), and one on the
    plain server (prefer), each on a database of its own."""
    from dagster import DagsterInstance

    out = {}
    with contextlib.ExitStack() as stack:
        for key, server, params in (
                ("tls", stores["pg"], {"sslmode": "verify-full", "sslrootcert": certs.ca}),
                ("plain", stores["plain"], {"sslmode": "prefer"})):
            db = f"runway_tls_{key}"
            server.create_database(db)
            home = stack.enter_context(dagster_home(storage_yaml(server.port, db, **params)))
            inst = DagsterInstance.from_config(home)
            stack.callback(inst.dispose)
            out[key] = (inst, server.port, db)
        yield out


@pytest.fixture(scope="module")
def celery_task(stores, certs):
    from dagster_celery.make_app import make_app
    from dagster_celery_k8s.executor import create_k8s_job_task

    app = make_app({"broker": stores["rabbit"].url, "backend": stores["backend"], "include": [],
                    "config_source": None, "retries": None})
    app.conf.broker_use_ssl = stores["rabbit"].ssl_options
    return create_k8s_job_task(app)


@contextlib.contextmanager
def worker(kubeconfig: str, queue: str, stores, *extra: str, env=None, ready: bool = True,
           backend: str | None = None):
    """`runway worker` on `queue` over amqps:// and rediss://; yields its log path."""
    log = tempfile.NamedTemporaryFile(prefix="runway-tls-worker-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [RUNWAY_BIN, "worker", "-Q", queue, "--broker-url", stores["rabbit"].url,
         "--result-backend", backend or stores["backend"], "--kubeconfig", kubeconfig,
         "--namespace", NS,
         "--http-listen", "127.0.0.1:0", "--hostname", f"runway-tls@{queue}",
         "--log-format", "text", "--shutdown-grace-secs", "5",
         "--event-write-patience-secs", "3", *extra],
        stdout=subprocess.PIPE, stderr=log, text=True, env=dict(os.environ, **(env or {})))
    try:
        if ready:
            line = proc.stdout.readline()
            assert "consuming" in line, line + open(log.name).read()
            wait_http(f"http://{line.rsplit('http://', 1)[1].strip().rstrip(')')}/ready")
        yield log.name
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        os.unlink(log.name)


def wait_log(path: str, *needles: str, timeout: float = 60) -> str:
    def found():
        with open(path, errors="replace") as f:
            text = f.read()
        return text if all(n in text for n in needles) else ""
    try:
        wait_for(found, f"{needles} in the worker's log", timeout)
    except AssertionError:
        raise AssertionError(open(path).read()[-3000:]) from None
    return open(path).read()


def submit(celery_task, queue, kubeconfig, ref_source, run_instance):
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    run = create_run_for_test(run_instance, job_name="my_job", status=DagsterRunStatus.STARTED)
    _, kwargs = step_kwargs(ref_source, kubeconfig, run=run)
    result = celery_task.si(**kwargs).apply_async(
        queue=queue, routing_key=f"{queue}.execute_step_k8s_job")
    result.run_id = run.run_id
    return result


def succeeded(result) -> None:
    types = [e.event_type_value for e in events_of(result.get(timeout=120))]
    assert types[-2:] == ["STEP_START", "STEP_SUCCESS"], types


def failure(result) -> str:
    result.get(timeout=60, propagate=False)
    assert result.state == "FAILURE", result.state
    text = str(result.result)
    assert PASSWORD not in text, text
    return text


@pytest.fixture(scope="module")
def tls_worker(cluster, stores, certs):
    kubeconfig, _ = cluster
    queue = f"tls-{uuid.uuid4().hex[:8]}"
    # The broker's CA through the environment, Redis's through Celery's URL.
    with worker(kubeconfig, queue, stores, env={"RUNWAY_BROKER_CA_FILE": certs.ca}) as log:
        yield queue, log


def test_a_step_runs_over_tls_to_every_store(cluster, instances, celery_task, tls_worker):
    kubeconfig, _ = cluster
    queue, log = tls_worker
    inst = instances["tls"][0]
    result = submit(celery_task, queue, kubeconfig, inst, inst)
    succeeded(result)
    # The engine events went to PostgreSQL over TLS, read back through psycopg2 with verify-full.
    messages = [r.dagster_event.message for r in inst.all_logs(result.run_id) if r.is_dagster_event]
    assert any("picked up by Celery" in m for m in messages), messages
    assert "unreachable" not in open(log).read()


def test_serve_publishes_over_amqps_and_watches_results_over_rediss(
        cluster, stores, certs, instances, tls_worker):
    """serve's SubmitStep goes out over amqps:// and its WatchStep reads the
    worker's result over rediss:// (CA options this time, not the URL's)."""
    import json

    kubeconfig, _ = cluster
    queue, _ = tls_worker
    backend = f"rediss://localhost:{stores['redis'].port}/0?ssl_cert_reqs=CERT_REQUIRED"
    proc = subprocess.Popen(
        [RUNWAY_BIN, "serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
         "--kubeconfig", kubeconfig, "--namespace", NS, "--broker-url", stores["rabbit"].url,
         "--broker-ca-file", certs.ca, "--result-backend", backend, "--redis-ca-file", certs.ca,
         "--log-format", "text"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, line
        endpoint = "http://" + line.split("listening on ", 1)[1].split(" ", 1)[0]
        from dagster._core.storage.dagster_run import DagsterRunStatus
        from dagster._core.test_utils import create_run_for_test
        inst = instances["tls"][0]
        run = create_run_for_test(inst, job_name="my_job", status=DagsterRunStatus.STARTED)
        _, kwargs = step_kwargs(inst, kubeconfig, run=run)
        path = os.path.join(certs.dir, "kwargs.json")
        with open(path, "w") as f:
            json.dump(kwargs, f)

        def client(*args):
            out = subprocess.run([RUNWAY_BIN, "client", "--endpoint", endpoint, *args],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            return [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
        [submitted] = client("submit-step", "--kwargs-file", path, "--queue", queue)
        # One WatchStep stream from PENDING through STARTED (stored as the step
        # starts) to the final state, which ends it.
        states = client("watch-step", "--task-id", submitted["task_id"])
        final = states[-1]
        assert [s["state"] for s in states[:-1]] in (
            [], ["PENDING"], ["STARTED"], ["PENDING", "STARTED"]), states
        assert final["state"] == "SUCCESS", final
        types = [e.event_type_value for e in events_of(final["events"])]
        assert types[-2:] == ["STEP_START", "STEP_SUCCESS"], types
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def variant(instances, certs, host="localhost", **params):
    _, port, db = instances["tls"]
    return dagster_home(storage_yaml(port, db, host=host, **params))


def test_verify_full_needs_the_host_name_in_the_certificate_verify_ca_does_not(
        cluster, instances, celery_task, tls_worker, certs):
    kubeconfig, _ = cluster
    queue, _ = tls_worker
    inst = instances["tls"][0]
    with variant(instances, certs, host="127.0.0.1", sslmode="verify-full",
                 sslrootcert=certs.ca) as home:
        text = failure(submit(celery_task, queue, kubeconfig, RefOnly(home), inst))
    assert "PostgreSQL postgresql://postgres@127.0.0.1:" in text, text
    assert "not valid for name" in text and "127.0.0.1" in text, text
    with variant(instances, certs, host="127.0.0.1", sslmode="verify-ca",
                 sslrootcert=certs.ca) as home:
        succeeded(submit(celery_task, queue, kubeconfig, RefOnly(home), inst))


def test_postgres_refusals_name_the_store_and_the_cause(
        cluster, instances, celery_task, tls_worker, certs):
    kubeconfig, _ = cluster
    queue, _ = tls_worker
    inst = instances["tls"][0]
    cases = [
        (dict(sslmode="verify-full", sslrootcert=certs.other_ca), ["UnknownIssuer"]),
        (dict(sslmode="disable"), ["no pg_hba.conf entry", "no encryption"]),
        (dict(sslmode="verify_full"), ['sslmode "verify_full"', "verify-full"]),
    ]
    for params, needles in cases:
        with variant(instances, certs, **params) as home:
            text = failure(submit(celery_task, queue, kubeconfig, RefOnly(home), inst))
        assert "PostgreSQL postgresql://postgres@localhost:" in text, (params, text)
        for n in needles:
            assert n in text, (params, text)


def test_prefer_falls_back_to_plain_against_a_plain_server(
        cluster, instances, celery_task, tls_worker):
    kubeconfig, _ = cluster
    queue, _ = tls_worker
    inst = instances["plain"][0]
    succeeded(submit(celery_task, queue, kubeconfig, inst, inst))


def test_a_wrong_broker_ca_is_reported_with_the_cause(cluster, stores, certs):
    kubeconfig, _ = cluster
    queue = f"tls-{uuid.uuid4().hex[:8]}"
    with worker(kubeconfig, queue, stores, "--broker-ca-file", certs.other_ca,
                ready=False) as log:
        text = wait_log(log, "broker connection failed", "UnknownIssuer")
    assert "guest:guest" not in text


def test_a_wrong_redis_ca_is_reported_with_the_cause(
        cluster, stores, certs, instances, celery_task):
    kubeconfig, _ = cluster
    queue = f"tls-{uuid.uuid4().hex[:8]}"
    with worker(kubeconfig, queue, stores, "--broker-ca-file", certs.ca,
                "--redis-ca-file", certs.other_ca) as log:
        inst = instances["tls"][0]
        submit(celery_task, queue, kubeconfig, inst, inst)
        text = wait_log(log, "redis", "UnknownIssuer")
    assert PASSWORD not in text


def test_ssl_cert_reqs_none_checks_nothing(cluster, stores, certs, instances, celery_task):
    """Celery's CERT_NONE: the worker trusts a Redis whose CA it was never given."""
    kubeconfig, _ = cluster
    queue = f"tls-{uuid.uuid4().hex[:8]}"
    backend = f"rediss://localhost:{stores['redis'].port}/0?ssl_cert_reqs=CERT_NONE"
    with worker(kubeconfig, queue, stores, "--broker-ca-file", certs.ca, backend=backend) as log:
        inst = instances["tls"][0]
        succeeded(submit(celery_task, queue, kubeconfig, inst, inst))
        assert "unreachable" not in open(log).read()


def test_bad_tls_settings_fail_at_start_up(cluster, stores, certs):
    kubeconfig, _ = cluster
    empty = os.path.join(certs.dir, "empty.pem")
    open(empty, "w").close()
    good = stores["backend"]
    cases = [
        (["--broker-ca-file", empty], good, "--broker-ca-file: CA file"),
        (["--redis-ca-file", os.path.join(certs.dir, "missing.pem")], good, "--result-backend"),
        ([], "rediss://:pw-redis@localhost:1/0?ssl_cert_reqs=maybe", "ssl_cert_reqs=\"maybe\""),
        ([], "redis://:pw-redis@localhost:1/0?ssl_cert_reqs=none", "uses the rediss:// scheme"),
        (["--postgres-url", "postgresql://u:pw-redis@localhost:1/db?sslmode=verify_full"], good,
         '--postgres-url: PostgreSQL postgresql://u@localhost:1/db: sslmode "verify_full"'),
        (["--postgres-url", "postgresql://u@localhost:1/db?sslmode=verify-ca",
          "--postgres-ca-file", empty], good, "no PEM certificate"),
    ]
    for extra, backend, needle in cases:
        out = subprocess.run(
            [RUNWAY_BIN, "worker", "--broker-url", stores["rabbit"].url, "--kubeconfig", kubeconfig,
             "--result-backend", backend, "--http-listen", "127.0.0.1:0", *extra],
            capture_output=True, text=True, timeout=60)
        assert out.returncode != 0, out
        assert needle in out.stderr, (extra, out.stderr)
        assert "pw-redis" not in out.stderr, out.stderr
