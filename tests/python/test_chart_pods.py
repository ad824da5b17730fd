"""chart/: the rendered launcher and worker containers started as real processes against
the dev cluster, and every config key and setting the chart writes checked to be a flag of
the binary.

These tests need the runway binary (RUNWAY_BIN); the worker one needs `runway worker`
(issue 6) and fails, not skips, without it.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chart_helm as ch  # noqa: E402
import chart_pod  # noqa: E402
from chart_cases import COMBOS, RUNWAY_BIN, SEED, objs  # noqa: E402
from devcluster import dev_cluster as start_dev_cluster  # noqa: E402

# --- The rendered containers run: real binaries, dev cluster, loopback services ---------------

LOOPBACK_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
LOOPBACK_BACKEND = "redis://127.0.0.1:6379/0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed() -> tuple[str, str]:
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "runway-launcher")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("runway-launcher")]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


@pytest.fixture(scope="module")
def dev_cluster():
    """`runway dev-cluster` on a free loopback port, with the seed's namespace."""
    assert os.path.exists(RUNWAY_BIN), f"{RUNWAY_BIN} not built (cargo build -p runway --features dev-cluster)"
    with start_dev_cluster() as path:
        from kubernetes import client, config
        api = config.new_client_from_config(config_file=path)
        for ns in (ch.NAMESPACE,):
            client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        api.close()
        yield path


@pytest.fixture(scope="module")
def rendered_for_run():
    """The seed example as deployed, plus TLS, a token and step publishing on
    the launcher. Set through the chart's own values, not rewritten after
    rendering: ports the OS picked free (this machine is shared), and a queue
    of the test's own, so the worker cannot take another test's tasks from
    the loopback RabbitMQ (the queue is deleted afterwards)."""
    cert, key = _self_signed()
    ports = {"grpc": _free_port(), "http": _free_port(), "worker": _free_port()}
    queue = f"runway-chart-test-{uuid.uuid4().hex[:8]}"
    values = ch.merge(SEED, {
        "launcher": {"grpcPort": ports["grpc"], "httpPort": ports["http"], "publishSteps": True,
                     "tls": {"enabled": True, "cert": cert, "key": key},
                     "auth": {"token": "chart-test-token"}},
        "worker": {"httpPort": ports["worker"], "workerQueues": [{"name": queue, "replicaCount": 2}]},
    })
    o = ch.render(values)
    ch.validate(o)
    yield o, ports, queue
    import amqp
    with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest") as conn:
        ch_ = conn.channel()
        ch_.queue_delete(queue)
        ch_.exchange_delete(queue)


def _replacements(kubeconfig: str) -> chart_pod.Replacements:
    conn = "runway-connections"
    return chart_pod.Replacements(
        binary=RUNWAY_BIN,
        kubeconfig=kubeconfig,
        secret_values={
            # The seed's dagster-rabbitmq / dagster-redis-master only resolve in the cluster.
            (conn, "broker-url"): LOOPBACK_BROKER,
            (conn, "result-backend"): LOOPBACK_BACKEND,
            # The Dagster release's Secret, not rendered by this chart.
            ("dagster-postgresql-secret", "postgresql-password"): "postgres",
        },
    )


def _run_until_ready(o, deploy_name, port, kubeconfig):
    pod = chart_pod.local_pod(o, ch.one(o, "Deployment", deploy_name), _replacements(kubeconfig))
    try:
        pod.start()
        status, body = pod.wait_http(port, "/ready", timeout=45)
        assert status == 200, f"/ready answered {status} {body!r}:\n{pod.output()}"
        assert pod.wait_http(port, "/live", timeout=5)[0] == 200
        status, metrics = pod.wait_http(port, "/metrics", timeout=5)
        assert status == 200 and metrics.strip(), metrics[-200:]
        code = pod.stop()
        out = pod.output()
        assert code == 0, f"exited {code} on SIGTERM:\n{out}"
        return pod, out
    finally:
        pod.stop()
        pod.cleanup()


def _flags(subcommand: str) -> set[str]:
    out = subprocess.run([RUNWAY_BIN, subcommand, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"`runway {subcommand} --help` failed:\n{out.stderr[-2000:]}"
    return set(re.findall(r"^\s+(?:-\w, )?--([a-z][a-z0-9-]*)", out.stdout, re.M)) - {"help", "config"}


@pytest.mark.parametrize("subcommand,settings", [("serve", "serveSettings"), ("worker", "workerSettings")])
def test_config_keys_and_settings_are_real_flags(subcommand, settings):
    """Every key the chart writes into a --config file, and every key the
    schema lets `settings` hold, is a flag of the binary. The worker case
    needs `runway worker` (issue 6)."""
    flags = _flags(subcommand)
    import json
    with open(os.path.join(ch.CHART, "values.schema.json")) as f:
        allowed = set(json.load(f)["definitions"][settings]["properties"])
    assert allowed <= flags, allowed - flags
    prefix = "launcher" if subcommand == "serve" else "worker-"
    written = set()
    for combo in COMBOS:
        for cm in ch.find(objs(combo), "ConfigMap"):
            for key, text in cm["data"].items():
                if key.startswith(prefix):
                    written |= set(yaml.safe_load(text))
    assert written and written <= flags, written - flags
    # A key the chart manages cannot also be given through settings.
    managed = set()
    for cm in ch.find(ch.render({"launcher": {"tls": {"enabled": True, "existingSecret": "t",
                                                      "requireClientCert": True},
                                              "auth": {"token": "t"}},
                                 "otlpEndpoint": "http://otel:4317",
                                 "worker": {"prefetch": 8}}), "ConfigMap"):
        for key, text in cm["data"].items():
            if key.startswith(prefix):
                managed |= set(yaml.safe_load(text))
    assert managed and not managed & allowed, managed & allowed


def test_rendered_launcher_runs_and_becomes_ready(dev_cluster, rendered_for_run):
    """The launcher Deployment's exact command, args, env and mounted files
    (ConfigMap, TLS and token Secrets), as `runway serve` with the real binary."""
    o, ports, _ = rendered_for_run
    c = ch.container(ch.one(o, "Deployment", "runway-launcher"))
    assert c["args"] == ["serve", "--config", "/etc/runway/config/launcher.yaml"]
    assert {"RUNWAY_BROKER_URL", "RUNWAY_RESULT_BACKEND"} <= set(ch.env_map(c))
    _run_until_ready(o, "runway-launcher", ports["http"], dev_cluster)


def test_rendered_worker_runs_and_becomes_ready(dev_cluster, rendered_for_run):
    """NEEDS `runway worker` (issue 6). Fails, never skips, while the binary
    has no worker subcommand: run it again once the worker lands.

    The worker Deployment's exact command, args, env and config file, as
    `runway worker` against loopback RabbitMQ and Redis and the dev cluster."""
    help_ = subprocess.run([RUNWAY_BIN, "worker", "--help"], capture_output=True, text=True, timeout=30)
    assert help_.returncode == 0, (
        "`runway worker --help` failed: this binary has no `runway worker` yet (issue 6), so the "
        f"chart's worker Deployment cannot be run:\n{help_.stderr[-2000:]}")
    o, ports, queue = rendered_for_run
    name = f"runway-worker-{queue}"
    c = ch.container(ch.one(o, "Deployment", name))
    assert c["args"] == ["worker", "--config", f"/etc/runway/config/worker-{queue}.yaml"]
    assert {"RUNWAY_BROKER_URL", "RUNWAY_RESULT_BACKEND", "DAGSTER_PG_PASSWORD"} <= set(ch.env_map(c))
    cfg = yaml.safe_load(ch.one(o, "ConfigMap", "runway-config")["data"][f"worker-{queue}.yaml"])
    assert cfg["dagster-version"] == "1.1.9"
    _, out = _run_until_ready(o, name, ports["worker"], dev_cluster)
    assert queue in out, out
