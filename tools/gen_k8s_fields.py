#!/usr/bin/env python3
"""Generate `crates/runway-core/src/k8s/config/fields.rs`: the Kubernetes model field table.

For every Kubernetes API model reachable from the models that Dagster's k8s
config sections use (see ROOTS), the table lists each field's JSON (camelCase)
name, the Python `kubernetes` client's attribute (snake_case) name, its type as
the client's `openapi_types` spells it, and whether the schema requires it.
Runway uses it to reproduce dagster-k8s's key conversion
(`dagster_k8s/models.py`: `k8s_snake_case_dict`, `k8s_model_from_dict`).

The source is the Kubernetes OpenAPI schema in the JSON-schema form that the
`kubernetes-validate` package ships (`kubernetes-json-schema/v<version>-local/
_definitions.json`), never the Python client itself. The client's view of that
schema (names and types) is reproduced by tools/k8s_client_schema.py from the
rules its generator applies (see that module's docstring).

Where the schema and the installed Python client (kubernetes 36.0.3) disagree,
the table must follow the client, because parity with dagster-k8s (which walks
the client's `attribute_map` / `openapi_types`) is the point of the table.
Such differences go in CLIENT_OVERRIDES below; for Kubernetes v1.36.0 and
kubernetes 36.0.3 there are none (tests/python/test_k8s_fields.py checks every
emitted model against the client and lists any mismatch).

Usage: python tools/gen_k8s_fields.py [--version 1.36.0] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from k8s_client_schema import (  # noqa: E402
    Field,
    Model,
    Ty,
    class_name,
    client_type,
    const_name,
    is_inlined,
    load_definitions,
    model_refs,
    parse_client_type,
    resolve_type,
    short_names,
    snake_name,
)

DEFAULT_VERSION = "1.36.0"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join("crates", "runway-core", "src", "k8s", "config", "fields.rs")  # relative to REPO_ROOT
GENERATOR = "tools/gen_k8s_fields.py"

# The models Dagster's k8s config sections are built from. Everything reachable
# from them (properties, array items, map values) is emitted too.
ROOTS = (
    "io.k8s.api.batch.v1.Job",
    "io.k8s.api.batch.v1.JobSpec",
    "io.k8s.api.core.v1.Container",
    "io.k8s.api.core.v1.EnvVar",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.PodSpec",
    "io.k8s.api.core.v1.ResourceRequirements",
    "io.k8s.api.core.v1.ServiceSpec",
    "io.k8s.api.core.v1.Volume",
    "io.k8s.api.core.v1.VolumeMount",
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
)

# Known differences between the schema and the Python client, applied so the
# table follows the client: {definition: {camel: client type string or None to
# drop the field}}. Empty for v1.36.0 / kubernetes 36.0.3.
CLIENT_OVERRIDES: dict[str, dict[str, str | None]] = {}


# --------------------------------------------------------------------------
# The table


def build_table(version: str = DEFAULT_VERSION) -> list[Model]:
    """All models reachable from ROOTS, sorted by class name; fields by camel name."""
    defs = load_definitions(version)
    short = short_names(defs)
    names = {k: class_name(v) for k, v in short.items()}
    by_class: dict[str, str] = {}
    for k, v in names.items():
        if v in by_class:
            raise ValueError(f"class name {v} for both {by_class[v]} and {k}")
        by_class[v] = k

    fields_of: dict[str, list[Field]] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in fields_of:
            continue
        if name not in defs or is_inlined(defs, name):
            raise ValueError(f"{name} is not a model in the v{version} schema")
        schema = defs[name]
        required = set(schema.get("required", ()))
        overrides = CLIENT_OVERRIDES.get(name, {})
        fields = []
        for camel, prop in schema["properties"].items():
            if camel in overrides:
                if overrides[camel] is None:
                    continue
                ty = parse_client_type(overrides[camel], by_class)
            else:
                ty = resolve_type(defs, prop, f"{name}.{camel}")
            fields.append(Field(camel, snake_name(camel), ty, camel in required))
            todo.extend(model_refs(ty))
        unknown = set(overrides) - set(schema["properties"])
        if unknown:
            raise ValueError(f"CLIENT_OVERRIDES for {name}: no such fields {sorted(unknown)}")
        fields.sort(key=lambda f: f.camel)
        fields_of[name] = fields

    models = [Model(k, names[k], tuple(v)) for k, v in fields_of.items()]
    models.sort(key=lambda m: m.name)
    consts = [const_name(m.name) for m in models]
    if len(set(consts)) != len(consts):
        raise ValueError("Rust constant names collide")
    for m in models:
        snakes = [f.snake for f in m.fields]
        if len(set(snakes)) != len(snakes):
            raise ValueError(f"{m.name}: attribute names collide")
    return models


def table_as_python(version: str = DEFAULT_VERSION) -> dict[str, dict]:
    """{class name: {"definition": ..., "fields": [{camel, snake, type, required}]}},
    types spelled as the Python client's openapi_types spells them."""
    models = build_table(version)
    names = {m.definition: m.name for m in models}
    return {
        m.name: {
            "definition": m.definition,
            "fields": [
                {
                    "camel": f.camel,
                    "snake": f.snake,
                    "type": client_type(f.ty, names),
                    "required": f.required,
                }
                for f in m.fields
            ],
        }
        for m in models
    }


# --------------------------------------------------------------------------
# Rust rendering

MAX_WIDTH = 100


def rust_ty(ty: Ty, index: dict[str, str]) -> str:
    if isinstance(ty, str):
        return {
            "str": "Ty::Str",
            "int": "Ty::Int",
            "float": "Ty::Float",
            "bool": "Ty::Bool",
            "datetime": "Ty::DateTime",
            "date": "Ty::Date",
            "object": "Ty::Object",
        }[ty]
    kind, inner = ty
    if kind == "model":
        return f"Ty::Model({index[inner]})"
    if kind == "list":
        return f"Ty::List(&{rust_ty(inner, index)})"
    if kind == "map":
        return f"Ty::Map(&{rust_ty(inner, index)})"
    raise ValueError(ty)


def rust_str(s: str) -> str:
    return json.dumps(s)  # names are plain ASCII; JSON escaping is valid Rust


def render_rust(models: list[Model], version: str) -> str:
    index = {m.definition: const_name(m.name) for m in models}
    out = [
        f"// @generated by {GENERATOR} from the Kubernetes v{version} OpenAPI schema."
        " Do not edit.",
        "use super::schema::{Field, Model, Ty};",
        "",
        f'pub const KUBERNETES_VERSION: &str = "{version}";',
        "",
    ]
    for i, m in enumerate(models):
        out.append(f"pub const {index[m.definition]}: usize = {i};")
    out += [
        "",
        "#[rustfmt::skip]",
        "pub static MODELS: &[Model] = &[",
    ]
    for m in models:
        out.append("    Model {")
        out.append(f"        name: {rust_str(m.name)},")
        if not m.fields:
            out.append("        fields: &[],")
        else:
            out.append("        fields: &[")
            for f in m.fields:
                parts = [
                    f"camel: {rust_str(f.camel)},",
                    f"snake: {rust_str(f.snake)},",
                    f"ty: {rust_ty(f.ty, index)},",
                    f"required: {'true' if f.required else 'false'},",
                ]
                line = "            Field { " + " ".join(parts)[:-1] + " },"
                if len(line) <= MAX_WIDTH:
                    out.append(line)
                else:
                    out.append("            Field {")
                    out += ["                " + p for p in parts]
                    out.append("            },")
            out.append("        ],")
        out.append("    },")
    out.append("];")
    text = "\n".join(out) + "\n"
    too_long = [l for l in text.splitlines() if len(l) > MAX_WIDTH]
    if too_long:
        raise ValueError(f"lines over {MAX_WIDTH} chars: {too_long[:3]}")
    return text


def generate(version: str = DEFAULT_VERSION) -> str:
    return render_rust(build_table(version), version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default=DEFAULT_VERSION, help="Kubernetes version")
    parser.add_argument(
        "--out",
        default=None,
        help=f"output file (default: {DEFAULT_OUT} under the repository root)",
    )
    args = parser.parse_args(argv)
    out = args.out or os.path.join(REPO_ROOT, DEFAULT_OUT)
    models = build_table(args.version)
    text = render_rust(models, args.version)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(
        f"wrote {os.path.relpath(out)}: {len(models)} models, "
        f"{sum(len(m.fields) for m in models)} fields",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())