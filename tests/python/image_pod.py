"""Run a rendered Deployment's container in the production image with podman,
exactly as its pod spec says: the image's entrypoint with the container's
args, its env (values and Secret keys resolved from the rendered Secrets), its
ConfigMap/Secret volumes as files at their mountPath, emptyDirs as tmpfs, the
read-only root filesystem, runAsUser/runAsGroup, dropped capabilities, no new
privileges, and the memory and CPU limits. Host networking stands in for the
pod network (the dev cluster, RabbitMQ, Redis and PostgreSQL are on loopback).

As for the process runner (chart_pod.py), only what cannot exist here is
replaced, each replacement given by the caller: Secret values that name
in-cluster hosts, Secret keys of the Dagster release, and the in-cluster
service account (RUNWAY_KUBECONFIG, a kubeconfig file mounted read-only).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import chart_helm as ch
import chart_pod

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTAINERS_CONF = os.path.join(ROOT, "scripts", "podman", "containers.conf")
KUBECONFIG_IN_CONTAINER = "/var/run/runway-test/kubeconfig"


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, CONTAINERS_CONF=os.environ.get("CONTAINERS_CONF", CONTAINERS_CONF))
    out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert out.returncode == 0, f"podman {' '.join(args)}: {out.stderr[-3000:]}"
    return out


def cpus(limit: str) -> str:
    """A Kubernetes CPU quantity as podman's --cpus."""
    return str(int(limit[:-1]) / 1000) if limit.endswith("m") else str(float(limit))


def memory(limit: str) -> str:
    """A Kubernetes memory quantity as podman's --memory (bytes)."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 1000, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if limit.endswith(suffix):
            return str(int(float(limit[: -len(suffix)]) * factor))
    return str(int(limit))


@dataclass
class ImagePod:
    name: str
    argv: list[str]
    root: str
    started: float = 0.0
    grace: int = 30

    def start(self) -> None:
        self.started = time.monotonic()
        podman(*self.argv)

    def logs(self) -> str:
        out = podman("logs", self.name, check=False)
        return out.stdout + out.stderr

    def running(self) -> bool:
        out = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return out.stdout.strip() == "true"

    def wait_http(self, port: int, path: str, timeout: float) -> tuple[int, str, float]:
        """Polls until the path answers 200: the last status and body, and the
        seconds since the container was started."""
        deadline = time.monotonic() + timeout
        status, body = 0, ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    status, body = r.status, r.read().decode()
                    if status == 200:
                        return status, body, time.monotonic() - self.started
            except urllib.error.HTTPError as e:
                status, body = e.code, e.read().decode()
            except OSError:
                if not self.running():
                    raise AssertionError(f"{self.name} exited before {path} was 200:\n{self.logs()}")
            time.sleep(0.05)
        return status, body, time.monotonic() - self.started

    def stop(self) -> tuple[int, float]:
        """`podman stop` (SIGTERM, then SIGKILL after the pod's grace period):
        the exit code and how long the stop took."""
        t = time.monotonic()
        podman("stop", "--time", str(self.grace), self.name, timeout=self.grace + 30)
        took = time.monotonic() - t
        code = podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip()
        return int(code), took

    def cleanup(self) -> None:
        podman("rm", "--force", self.name, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _env_args(objs: list[dict[str, Any]], c: dict[str, Any], repl: chart_pod.Replacements) -> list[str]:
    args = []
    for e in c.get("env", []):
        if "value" in e:
            value = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            value = chart_pod._secret_value(objs, ref["name"], ref["key"], repl)
        args += ["--env", f"{e['name']}={value}"]
    assert not c.get("envFrom"), "envFrom is not expected from this chart"
    return args + ["--env", f"RUNWAY_KUBECONFIG={KUBECONFIG_IN_CONTAINER}"]


def _volume_args(objs: list[dict[str, Any]], spec: dict[str, Any], c: dict[str, Any],
                 root: str, uid: int) -> list[str]:
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    args = []
    for m in c.get("volumeMounts", []):
        vol = volumes[m["name"]]
        if "emptyDir" in vol:
            args += ["--tmpfs", f"{m['mountPath']}:rw,mode=1777"]
            continue
        local = os.path.join(root, m["name"])
        os.makedirs(local)
        for rel, content in chart_pod._volume_files(objs, vol).items():
            path = os.path.join(local, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(content)
            os.chmod(path, 0o444)
        os.chmod(local, 0o755)
        mode = "ro" if m.get("readOnly") else "rw"
        args += ["--volume", f"{local}:{m['mountPath']}:{mode}"]
    return args


def image_pod(objs: list[dict[str, Any]], deploy: dict[str, Any], image: str,
              repl: chart_pod.Replacements) -> ImagePod:
    spec = deploy["spec"]["template"]["spec"]
    c = ch.container(deploy)
    assert "command" not in c, "the chart must use the image's entrypoint"
    pod_sc, sc = spec.get("securityContext", {}), c.get("securityContext", {})
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    assert uid and gid, "the chart sets runAsUser and runAsGroup"
    assert sc.get("readOnlyRootFilesystem") is True
    assert sc.get("allowPrivilegeEscalation") is False
    assert sc.get("capabilities", {}).get("drop") == ["ALL"]
    root = tempfile.mkdtemp(prefix=f"runway-image-{c['name']}-")
    os.chmod(root, 0o755)
    kube = os.path.join(root, "kubeconfig")
    shutil.copy(repl.kubeconfig, kube)
    os.chmod(kube, 0o444)
    limits = c.get("resources", {}).get("limits", {})
    name = f"runway-image-test-{uuid.uuid4().hex[:8]}"
    argv = ["run", "--detach", "--name", name, "--network", "host",
            "--read-only", "--user", f"{uid}:{gid}", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--volume", f"{kube}:{KUBECONFIG_IN_CONTAINER}:ro"]
    if "memory" in limits:
        argv += ["--memory", memory(limits["memory"])]
    if "cpu" in limits:
        argv += ["--cpus", cpus(limits["cpu"])]
    argv += _env_args(objs, c, repl) + _volume_args(objs, spec, c, root, uid)
    argv += [image, *c.get("args", [])]
    grace = int(spec.get("terminationGracePeriodSeconds", 30))
    return ImagePod(name=name, argv=argv, root=root, grace=grace)


def inspect_image(image: str) -> dict[str, Any]:
    return json.loads(podman("image", "inspect", image).stdout)[0]
