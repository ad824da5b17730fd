"""The connection to `runway serve`: an unreachable service, a restarted one that has
forgotten the config, and the bearer token, TLS and mTLS."""
from __future__ import annotations

import datetime
import threading
import time

import pytest
from dagster._core.events import DagsterEventType
from dagster._core.launcher.base import WorkerStatus
from dagster._core.storage.dagster_run import DagsterRunStatus

import dagster_runway
from dagster_runs import engine_messages, instance_with, launch, make_run, mark
from launcher_cluster import IMAGE, WAIT, free_port, k8s_config, record_calls, runway_keys
from runway_serve import runway_serve


def test_unreachable_service_fails_the_launch_naming_endpoint_and_cause(kubeconfig, token_file):
    port = free_port()
    config = {**k8s_config(kubeconfig),
              **runway_keys(f"127.0.0.1:{port}", token_file, runway_retry_seconds=1.0)}
    with instance_with("dagster_runway", "RunwayK8sRunLauncher", config) as instance:
        run = make_run(instance)
        started = time.monotonic()
        with pytest.raises(dagster_runway.RunwayError) as err:
            instance.launch_run(run.run_id, workspace=None)
        elapsed = time.monotonic() - started
        message = str(err.value)
        assert f"runway serve at 127.0.0.1:{port}" in message
        assert f"LaunchRun of run {run.run_id} failed: UNAVAILABLE" in message
        assert "gave up after" in message and "runway_retry_seconds" in message
        assert 1.0 <= elapsed < 10, elapsed
        failed = instance.get_run_by_id(run.run_id)
        assert failed.status == DagsterRunStatus.FAILURE
        assert "dagster/image" not in failed.tags
        assert any(f"127.0.0.1:{port}" in m for m in engine_messages(instance, run.run_id))

        health = instance.run_launcher.check_run_worker_health(failed)
        assert health.status == WorkerStatus.UNKNOWN and f"127.0.0.1:{port}" in health.msg

        running = mark(instance, make_run(instance), DagsterEventType.RUN_START)
        assert instance.run_launcher.terminate(running.run_id) is None
        assert engine_messages(instance, running.run_id)[-1] == (
            "[K8sRunLauncher] Run was not terminated successfully; encountered error in delete_job")


def test_a_restarted_service_is_waited_for_and_relearns_the_config(kubeconfig, token_file):
    port = free_port()
    config = {**k8s_config(kubeconfig),
              **runway_keys(f"127.0.0.1:{port}", token_file, runway_retry_seconds=60)}
    with instance_with("dagster_runway", "RunwayK8sRunLauncher", config) as instance:
        launcher = instance.run_launcher
        calls = record_calls(launcher)
        with runway_serve(kubeconfig, f"--token-file={token_file}", listen=f"127.0.0.1:{port}"):
            launch(instance)
        assert [bool(req.launcher.config_json) for _, req in calls] == [True]

        # The service is down; it comes back 2.5 s later, knowing no config. (gRPC may
        # hold the first call on a channel whose server went away for about a second
        # before failing it, so the service stays away longer than that.)
        sleeps = []
        real_sleep = launcher.runway_client._sleep
        launcher.runway_client._sleep = lambda s: (sleeps.append(s), real_sleep(s))
        ready = threading.Event()
        stop = threading.Event()

        def restart():
            time.sleep(2.5)
            with runway_serve(kubeconfig, f"--token-file={token_file}", listen=f"127.0.0.1:{port}"):
                ready.set()
                stop.wait(WAIT)

        thread = threading.Thread(target=restart)
        thread.start()
        try:
            run = launch(instance)
        finally:
            stop.set()
            thread.join()
        assert ready.is_set()
        assert run.status == DagsterRunStatus.STARTING and run.tags["dagster/image"] == IMAGE
        assert sleeps, "the launch should have waited for the service"
        # Digest alone first (refused: UNKNOWN_CONFIG_DIGEST), then the body.
        assert [bool(req.launcher.config_json) for _, req in calls[1:]] == [False, True]


def test_token_tls_and_mtls(kubeconfig, tmp_path, token_file):
    certs = make_certs(tmp_path)
    with runway_serve(kubeconfig, f"--tls-cert={certs['server.crt']}", f"--tls-key={certs['server.key']}",
                      f"--tls-client-ca={certs['ca.crt']}", f"--token-file={token_file}") as addr:
        good = {**k8s_config(kubeconfig), **runway_keys(
            f"localhost:{addr.rsplit(':', 1)[1]}", token_file, runway_tls_ca_file=certs["ca.crt"],
            runway_tls_cert_file=certs["client.crt"], runway_tls_key_file=certs["client.key"])}
        with instance_with("dagster_runway", "RunwayK8sRunLauncher", good) as instance:
            assert launch(instance).tags["dagster/image"] == IMAGE

        wrong = tmp_path / "wrong-token"
        wrong.write_text("not-it")
        with instance_with("dagster_runway", "RunwayK8sRunLauncher", {**good, "runway_token_file": str(wrong)}) as instance:
            run = make_run(instance)
            with pytest.raises(dagster_runway.RunwayError, match="UNAUTHENTICATED: the bearer token"):
                instance.launch_run(run.run_id, workspace=None)

        no_client_cert = {k: v for k, v in good.items() if k not in ("runway_tls_cert_file", "runway_tls_key_file")}
        no_client_cert["runway_retry_seconds"] = 0.5
        with instance_with("dagster_runway", "RunwayK8sRunLauncher", no_client_cert) as instance:
            run = make_run(instance)
            # The server requires a client certificate: the handshake fails.
            with pytest.raises(dagster_runway.RunwayError,
                               match=f"runway serve at localhost:.*LaunchRun of run {run.run_id} failed: UNAVAILABLE"):
                instance.launch_run(run.run_id, workspace=None)


def make_certs(tmp_path) -> dict:
    """A CA, a server certificate for localhost, and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    out = {}

    def write(name, data):
        path = tmp_path / name
        path.write_bytes(data)
        out[name] = str(path)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def pem_key(k):
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = key()
    ca = (x509.CertificateBuilder().subject_name(name("runway test ca")).issuer_name(name("runway test ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    write("ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    for leaf, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                        ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        k = key()
        cert = (x509.CertificateBuilder().subject_name(name(f"runway test {leaf}")).issuer_name(ca.subject)
                .public_key(k.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        write(f"{leaf}.crt", cert.public_bytes(serialization.Encoding.PEM))
        write(f"{leaf}.key", pem_key(k))
    return out


