"""Checks the generated Kubernetes field table (crates/runway-core/src/k8s/config/fields.rs).

The table is generated from the Kubernetes OpenAPI schema by
tools/gen_k8s_fields.py; runway uses it to reproduce dagster-k8s's key
conversion, which walks the Python client's `attribute_map` / `openapi_types`.
So every generated model must agree with the installed `kubernetes` client
exactly, and the committed file must be what the generator produces now.

Run with: .venv/bin/python -m pytest tests/python/test_k8s_fields.py
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import kubernetes.client.models as client_models
import pytest
from kubernetes.client.api_client import ApiClient
from kubernetes.client.configuration import Configuration

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR_PATH = REPO_ROOT / "tools" / "gen_k8s_fields.py"
FIELDS_RS = REPO_ROOT / "crates" / "runway-core" / "src" / "k8s" / "config" / "fields.rs"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_k8s_fields", GENERATOR_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def table():
    return gen.table_as_python(gen.DEFAULT_VERSION)


def _required_by_client(cls, snake: str) -> bool:
    """A required attribute's setter rejects None under client-side validation."""
    config = Configuration()
    config.client_side_validation = True
    obj = cls.__new__(cls)
    obj.local_vars_configuration = config
    try:
        setattr(obj, snake, None)
    except ValueError:
        return True
    return False


def _mismatches(table) -> list[str]:
    problems = []
    for name, model in table.items():
        where = f"{name} ({model['definition']})"
        cls = getattr(client_models, name, None)
        if cls is None or not hasattr(cls, "openapi_types"):
            problems.append(f"{where}: no such class in kubernetes.client.models")
            continue
        fields = model["fields"]
        ours_map = {f["snake"]: f["camel"] for f in fields}
        if ours_map != cls.attribute_map:
            for snake in sorted(set(ours_map) | set(cls.attribute_map)):
                a, b = ours_map.get(snake), cls.attribute_map.get(snake)
                if a != b:
                    problems.append(
                        f"{where}: attribute_map[{snake!r}]: generated {a!r}, client {b!r}"
                    )
        ours_types = {f["snake"]: f["type"] for f in fields}
        if ours_types != cls.openapi_types:
            for snake in sorted(set(ours_types) | set(cls.openapi_types)):
                a, b = ours_types.get(snake), cls.openapi_types.get(snake)
                if a != b:
                    problems.append(
                        f"{where}: openapi_types[{snake!r}]: generated {a!r}, client {b!r}"
                    )
        for f in fields:
            if f["snake"] in cls.attribute_map:
                client_required = _required_by_client(cls, f["snake"])
                if f["required"] != client_required:
                    problems.append(
                        f"{where}: {f['snake']} required: generated {f['required']},"
                        f" client {client_required}"
                    )
    return problems


def test_models_match_python_client(table):
    problems = _mismatches(table)
    if problems:
        print("Generated table vs kubernetes python client:")
        for p in problems:
            print("  " + p)
    assert not problems, f"{len(problems)} mismatch(es):\n" + "\n".join(problems)


def test_roots_are_present(table):
    for name in (
        "V1Container",
        "V1EnvVar",
        "V1Job",
        "V1JobSpec",
        "V1LocalObjectReference",
        "V1ObjectMeta",
        "V1PodSpec",
        "V1ResourceRequirements",
        "V1ServiceSpec",
        "V1Volume",
        "V1VolumeMount",
    ):
        assert name in table


def test_types_are_resolvable_by_dagster_k8s(table):
    # dagster_k8s.models._get_k8s_class: a native type name or a client model.
    def check(t: str):
        m = re.fullmatch(r"list\[(.*)\]", t) or re.fullmatch(r"dict\[str, (.*)\]", t)
        if m:
            check(m.group(1))
        elif t not in ApiClient.NATIVE_TYPES_MAPPING:
            assert t in table, f"type {t} is neither native nor a generated model"

    for model in table.values():
        for f in model["fields"]:
            check(f["type"])


def test_fields_sorted_and_unique(table):
    names = list(table)
    assert names == sorted(names)
    for name, model in table.items():
        camels = [f["camel"] for f in model["fields"]]
        snakes = [f["snake"] for f in model["fields"]]
        assert camels == sorted(camels), name
        assert len(set(camels)) == len(camels), name
        assert len(set(snakes)) == len(snakes), name


def test_generation_is_deterministic():
    assert gen.generate(gen.DEFAULT_VERSION) == gen.generate(gen.DEFAULT_VERSION)


def test_committed_fields_rs_is_current():
    expected = gen.generate(gen.DEFAULT_VERSION)
    actual = FIELDS_RS.read_text(encoding="utf-8")
    assert actual == expected, (
        "crates/runway-core/src/k8s/config/fields.rs is stale; regenerate it with"
        " `.venv/bin/python tools/gen_k8s_fields.py`"
    )


def test_rust_index_constants_match_positions(table):
    text = FIELDS_RS.read_text(encoding="utf-8")
    consts = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^pub const (\w+): usize = (\d+);$", text, re.M)
    }
    names = re.findall(r'^    Model \{\n        name: "(\w+)",$', text, re.M)
    assert names == list(table)
    assert len(consts) == len(names)
    for i, name in enumerate(names):
        assert consts[gen.const_name(name)] == i, name
    for const in ("V1_CONTAINER", "V1_OBJECT_META", "V1_POD_SPEC", "V1_JOB", "V1_JOB_SPEC"):
        assert const in consts
    # Every model reference points at a defined constant.
    for ref in re.findall(r"Ty::Model\((\w+)\)", text):
        assert ref in consts, ref
