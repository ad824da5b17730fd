"""Run a rendered Deployment's container as a local process, the way the
kubelet would: its command and args, its env (values and Secret keys), and its
ConfigMap/Secret/emptyDir volumes written out as files.

Only what cannot exist on this machine is replaced, and each replacement is
passed in explicitly by the caller:
- the image's entrypoint (`/runway`) -> the binary under test (RUNWAY_BIN);
- each volume's mountPath -> a temporary directory holding the rendered
  ConfigMap/Secret files (and the same prefix inside those files, so the
  config's tls-cert/token-file paths follow);
- Secret keys this release does not render (the Dagster release's
  PostgreSQL password) -> values given by the caller;
- Secret values that name in-cluster services (broker and backend URLs) ->
  loopback URLs given by the caller;
- the in-cluster service account -> RUNWAY_KUBECONFIG (the dev cluster's).
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import chart_helm as ch


@dataclass
class Replacements:
    binary: str
    kubeconfig: str
    # (secret name, key) -> value, for keys the release does not render or
    # whose rendered value names a host that only exists in the cluster.
    secret_values: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class LocalPod:
    argv: list[str]
    env: dict[str, str]
    root: str
    proc: subprocess.Popen | None = None
    log_path: str = ""

    def start(self) -> None:
        self.log_path = os.path.join(self.root, "output.log")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.root, start_new_session=True)
        log.close()

    def output(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_http(self, port: int, path: str, timeout: float) -> tuple[int, str]:
        """Polls until the path answers 200; returns the last status and body."""
        deadline = time.monotonic() + timeout
        status, body = 0, ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.argv[1]} exited {self.proc.returncode} before {path} was 200:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    status, body = r.status, r.read().decode()
                    if status == 200:
                        return status, body
            except urllib.error.HTTPError as e:
                status, body = e.code, e.read().decode()
            except OSError:
                pass
            time.sleep(0.1)
        return status, body

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"{self.argv[1]} did not stop within {timeout}s of SIGTERM:\n{self.output()}")
        return self.proc.returncode

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _secret_value(objs: list[dict[str, Any]], name: str, key: str, repl: Replacements) -> str:
    if (name, key) in repl.secret_values:
        return repl.secret_values[(name, key)]
    found = ch.find(objs, "Secret", name)
    assert found, (f"Secret {name} is neither rendered by the release nor given as a "
                   f"replacement (key {key})")
    data = ch.secret_data(found[0])
    assert key in data, f"Secret {name} has no key {key}: {sorted(data)}"
    return data[key]


def _volume_files(objs: list[dict[str, Any]], vol: dict[str, Any]) -> dict[str, bytes]:
    """The files a volume shows at its mountPath, by relative path."""
    if "emptyDir" in vol:
        return {}
    if "configMap" in vol:
        src = ch.one(objs, "ConfigMap", vol["configMap"]["name"])
        data = {k: v.encode() for k, v in src.get("data", {}).items()}
        items = vol["configMap"].get("items")
    elif "secret" in vol:
        name = vol["secret"]["secretName"]
        found = ch.find(objs, "Secret", name)
        assert found, f"Secret volume {name} is not rendered by the release"
        data = {k: base64.b64decode(v) for k, v in found[0].get("data", {}).items()}
        items = vol["secret"].get("items")
    else:
        raise AssertionError(f"volume {vol['name']}: only configMap, secret and emptyDir can run locally")
    if items:
        return {it["path"]: data[it["key"]] for it in items}
    return data


def local_pod(objs: list[dict[str, Any]], deploy: dict[str, Any], repl: Replacements) -> LocalPod:
    spec = deploy["spec"]["template"]["spec"]
    c = ch.container(deploy)
    root = tempfile.mkdtemp(prefix=f"runway-chart-{c['name']}-")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}

    # Volumes: each mountPath becomes a directory under root.
    mounts: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for m in c.get("volumeMounts", []):
        local = os.path.join(root, "mnt", m["name"])
        os.makedirs(local, exist_ok=True)
        mounts[m["mountPath"]] = local
        for rel, content in _volume_files(objs, volumes[m["name"]]).items():
            files[os.path.join(local, rel)] = content

    # One pass, longest mount path first, whole path components only: a
    # replaced path is never rewritten again (/tmp is itself a mount).
    pattern = re.compile("(?<![^\\s'\"=:])(" + "|".join(
        re.escape(p) for p in sorted(mounts, key=len, reverse=True)) + ")(?=/|$|[\\s'\"])", re.M)

    def relocate(text: str) -> str:
        return pattern.sub(lambda m: mounts[m.group(1)], text) if mounts else text

    for path, content in files.items():
        try:
            content = relocate(content.decode()).encode()
        except UnicodeDecodeError:
            pass
        with open(path, "wb") as f:
            f.write(content)

    # The environment the kubelet would give: env values and Secret keys,
    # nothing inherited from this test process but PATH.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": root}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = _secret_value(objs, ref["name"], ref["key"], repl)
    assert not c.get("envFrom"), "envFrom is not expected from this chart"
    env["RUNWAY_KUBECONFIG"] = repl.kubeconfig

    # The image's entrypoint is the binary; the chart gives args only.
    assert "command" not in c, f"the chart overrides the image's entrypoint: {c['command']}"
    argv = [repl.binary, *(relocate(a) for a in c.get("args", []))]
    return LocalPod(argv=argv, env=env, root=root)
