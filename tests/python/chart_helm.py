"""The chart through the real Helm engine (helm-python-sdk bundles Helm's Go SDK)
and its manifests through kubernetes-validate's strict schemas.

Rendering is offline (`helm template`): Chart.render() coalesces the values
with values.yaml, validates them against values.schema.json, and renders the
templates with Helm's default capabilities (Kubernetes v1.36.0 for the bundled
Helm 4.2.3, the version k8s-openapi's v1_36 feature pins). Results are cached
per values, so each combination is rendered once per test session.
"""
from __future__ import annotations

import base64
import copy
import json
import os
from functools import lru_cache
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "chart")
EXAMPLES = os.path.join(CHART, "examples")

# The Kubernetes version the project pins (k8s-openapi feature v1_36); the
# kubernetes-validate 1.37.0 package ships schemas for 1.34 to 1.37.
KUBE_VERSION = "1.36.0"
RELEASE = "runway"
NAMESPACE = "dagster-system"

# Kinds kubernetes-validate has no schema for (CRDs). Only these may be
# skipped, and only with SchemaNotFoundError; the tests check them by hand.
NO_SCHEMA_KINDS = {"ServiceMonitor"}


def example(name: str) -> dict[str, Any]:
    with open(os.path.join(EXAMPLES, name)) as f:
        return yaml.safe_load(f)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of two values files: maps merge, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@lru_cache(maxsize=1)
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


@lru_cache(maxsize=None)
def _render(key: str, name: str, namespace: str) -> tuple[tuple[str, str], ...]:
    out = _chart().render(json.loads(key), name=name, namespace=namespace)
    return tuple(sorted(out.items()))


def render_files(values: dict[str, Any] | None = None, *, name: str = RELEASE,
                 namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included)."""
    return dict(_render(json.dumps(values or {}, sort_keys=True), name, namespace))


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE,
           namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The rendered objects, as `helm template` would print them."""
    objs = []
    for path, text in render_files(values, name=name, namespace=namespace).items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objs.append(doc)
    return copy.deepcopy(objs)


def schema_error(values: dict[str, Any]) -> str:
    """The message Helm gives for values the schema rejects (fails if accepted)."""
    try:
        _chart().render(values, name=RELEASE, namespace=NAMESPACE)
    except helm.HelmValuesError as e:
        return str(e)
    raise AssertionError(f"the schema accepted {values!r}")


def render_error(values: dict[str, Any]) -> str:
    """The message of a template `fail`/`required` (fails if it rendered)."""
    try:
        _chart().render(values, name=RELEASE, namespace=NAMESPACE)
    except helm.HelmRenderError as e:
        return str(e)
    raise AssertionError(f"the chart rendered {values!r}")


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return helm.lint(CHART, values, strict=True, namespace=NAMESPACE,
                     kube_version=f"v{KUBE_VERSION}")


def validate(objs: list[dict[str, Any]]) -> list[str]:
    """kubernetes-validate --strict on every object. Returns the kinds skipped
    for want of a schema (only NO_SCHEMA_KINDS may be)."""
    skipped = []
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert obj["kind"] in NO_SCHEMA_KINDS, f"no schema for {obj['kind']} {obj['apiVersion']}"
            skipped.append(obj["kind"])
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            raise AssertionError(
                f"{obj['kind']}/{obj['metadata']['name']} is not valid Kubernetes "
                f"{KUBE_VERSION}: {path}: {e.message}") from None
    return skipped


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None,
         namespace: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)
            and (namespace is None or o["metadata"].get("namespace") == namespace)]


def one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(objs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: found {len(found)} in {[(o['kind'], o['metadata']['name']) for o in objs]}"
    return found[0]


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def container(deploy: dict[str, Any]) -> dict[str, Any]:
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_map(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}
