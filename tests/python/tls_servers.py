"""Loopback stores configured for TLS, for the TLS suite: a self-signed CA made by
the test (a server certificate for `localhost` only, and a second CA that signed
nothing), a private PostgreSQL (TLS required, or plain), a redis-server with only
a TLS port, and a throwaway RabbitMQ node with an ssl listener. Each lives under
its own temp dir and is stopped at the end."""
from __future__ import annotations

import datetime
import glob
import os
import shutil
import ssl
import subprocess
import tempfile

from own_rabbit import OwnRabbit
from waits import free_port, wait_for  # noqa: F401 (used here and by the tests)

# Debian's layout: the newest installed PostgreSQL server.
PG_BIN = max(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]),
             default="/usr/lib/postgresql/15/bin")


class Certs:
    """`ca.pem` (signed `server.pem` for DNS:localhost, key `server.key`) and
    `other-ca.pem` (a CA that signed nothing here), in a dir readable by all."""

    def __init__(self):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.dir = tempfile.mkdtemp(prefix="runway-tls-")
        os.chmod(self.dir, 0o755)
        now = datetime.datetime.now(datetime.timezone.utc)

        def name(cn):
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        def ca(cn):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(hours=1))
                    .not_valid_after(now + datetime.timedelta(days=2))
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                    .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                 False, False), True)
                    .sign(key, hashes.SHA256()))
            return key, cert

        ca_key, ca_cert = ca("runway test CA")
        _, other = ca("runway other CA")
        key = ec.generate_private_key(ec.SECP256R1())
        server = (x509.CertificateBuilder().subject_name(name("localhost"))
                  .issuer_name(ca_cert.subject).public_key(key.public_key())
                  .serial_number(x509.random_serial_number())
                  .not_valid_before(now - datetime.timedelta(hours=1))
                  .not_valid_after(now + datetime.timedelta(days=2))
                  .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
                  .add_extension(x509.ExtendedKeyUsage(
                      [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
                  .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        self.ca = self._write("ca.pem", ca_cert.public_bytes(pem))
        self.other_ca = self._write("other-ca.pem", other.public_bytes(pem))
        self.cert = self._write("server.pem", server.public_bytes(pem))
        self.key = self._write("server.key", key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
        return path

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnPostgres:
    """A private PostgreSQL cluster run as the `postgres` OS user (we are root),
    `trust` auth on loopback. With `tls`, ssl=on and pg_hba takes TLS only
    (`hostssl`): a plain connection is refused by the server."""

    def __init__(self, certs: Certs, tls: bool):
        self.dir = tempfile.mkdtemp(prefix="runway-tls-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_pg(os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "postgres",
                    "--auth=trust", "--no-sync")
        conf = [f"port = {self.port}", "listen_addresses = 'localhost'",
                f"unix_socket_directories = '{self.dir}'", "fsync = off"]
        hba = "hostssl" if tls else "host"
        if tls:
            for src, dst in ((certs.cert, "server.pem"), (certs.key, "server.key")):
                shutil.copy(src, os.path.join(self.data, dst))
                shutil.chown(os.path.join(self.data, dst), "postgres", "postgres")
                os.chmod(os.path.join(self.data, dst), 0o600)
            conf += ["ssl = on", "ssl_cert_file = 'server.pem'", "ssl_key_file = 'server.key'"]
        else:
            conf += ["ssl = off"]
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n".join(conf) + "\n")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write(f"local all all trust\n{hba} all all 127.0.0.1/32 trust\n"
                    f"{hba} all all ::1/128 trust\n")
        self._as_pg(os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l",
                    os.path.join(self.dir, "log"), "-w", "-t", "60", "start")

    def _as_pg(self, *argv: str):
        out = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, f"{argv[0]}: {out.stdout}\n{out.stderr}"

    def create_database(self, name: str):
        self._as_pg(os.path.join(PG_BIN, "psql"), "-h", self.dir, "-p", str(self.port),
                    "-U", "postgres", "-c", f"CREATE DATABASE {name}")

    def close(self):
        subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(PG_BIN, "pg_ctl"),
                        "-D", self.data, "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnRedisTls:
    """redis-server with only a TLS port; clients are not asked for certificates."""

    def __init__(self, certs: Certs):
        import redis

        self.dir = tempfile.mkdtemp(prefix="runway-tls-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(self.port),
             "--bind", "127.0.0.1", "-::1", "--tls-cert-file", certs.cert,
             "--tls-key-file", certs.key, "--tls-ca-cert-file", certs.ca,
             "--tls-auth-clients", "no", "--dir", self.dir, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(host="localhost", port=self.port, ssl=True,
                                  ssl_ca_certs=certs.ca, ssl_cert_reqs="required")

        def up():
            assert self.proc.poll() is None, "redis-server exited"
            try:
                return self.client.ping()
            except redis.ConnectionError:
                return False
        wait_for(up, "redis-server (TLS)", 15, every=0.05)

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnRabbitTls(OwnRabbit):
    """The suite's own RabbitMQ node with, beside its plain loopback listener, an
    ssl listener on `localhost` that asks clients for no certificate."""

    def __init__(self, certs: Certs):
        self.tls_port = free_port()
        super().__init__("tls", heartbeat=None, conf=(
            f"listeners.ssl.1 = 127.0.0.1:{self.tls_port}",
            f"listeners.ssl.2 = ::1:{self.tls_port}",
            f"ssl_options.cacertfile = {certs.ca}", f"ssl_options.certfile = {certs.cert}",
            f"ssl_options.keyfile = {certs.key}", "ssl_options.verify = verify_none",
            "ssl_options.fail_if_no_peer_cert = false"))
        self.url = f"amqps://guest:guest@localhost:{self.tls_port}//"
        self.ssl_options = {"ca_certs": certs.ca, "cert_reqs": ssl.CERT_REQUIRED,
                            "server_hostname": "localhost"}
        self.start(timeout=120)

    def amqp_ok(self) -> bool:
        """Ready when the ssl listener completes a verified handshake."""
        from kombu import Connection
        try:
            with Connection(self.url, ssl=self.ssl_options, connect_timeout=2) as c:
                c.connect()
            return True
        except Exception:
            return False
