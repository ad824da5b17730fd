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
schema is reproduced here from the rules its generator applies:

* kubernetes-client/gen `openapi/preprocess_spec.py`:
  - `remove_model_prefixes`: each `io.k8s...` definition is renamed to its
    last two dotted parts (`io.k8s.api.core.v1.Container` -> `v1.Container`);
    names that collide (over *all* definitions, not only the ones we emit) take
    one more part, repeatedly (`io.k8s.api.core.v1.ResourceClaim` ->
    `core.v1.ResourceClaim`). Deprecated redirect models are dropped first.
  - `inline_primitive_models`: every definition without `properties` is not a
    model; references to it are replaced by its own schema, with
    `intstr.IntOrString` forced to `object` and a missing type meaning
    `object`. Hence Quantity -> `str` (a plain string in swagger.json; the
    JSON-schema form says string-or-number), IntOrString -> `object`,
    Time / MicroTime -> `datetime` (string, format date-time), FieldsV1,
    RawExtension, Patch, apiextensions JSON and friends -> `object`.
* openapi-generator's (legacy) Python client generator:
  - class name = camelize(sanitize(name)): `v1.Container` -> `V1Container`,
    `v1beta1.Foo` -> `V1beta1Foo`, `core.v1.ResourceClaim` ->
    `CoreV1ResourceClaim`.
  - attribute name = toVarName(json name): sanitize (drop `$`, `-` -> `_`),
    all-caps names lowered, `underscore()` (acronym-aware snake case, e.g.
    `podIPs` -> `pod_ips`, `hostIPC` -> `host_ipc`), then a reserved Python
    word gets a leading `_` (`exec` -> `_exec`, `from` -> `_from`).
  - types: string -> `str` (date-time -> `datetime`, date -> `date`),
    integer -> `int`, number -> `float`, boolean -> `bool`,
    array -> `list[T]`, object with additionalProperties -> `dict[str, T]`,
    any other object -> `object`.

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
import re
import sys
from dataclasses import dataclass
from typing import Union

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

# Inlined primitive definitions whose client type is not what their JSON-schema
# form says (see inline_primitive_models in the module docstring).
PRIMITIVE_OVERRIDES = {
    # swagger.json: {"type": "string"}; JSON schema: oneOf string / number.
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "str",
    # preprocess_spec.py forces intstr.IntOrString to "object".
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "object",
}

# Known differences between the schema and the Python client, applied so the
# table follows the client: {definition: {camel: client type string or None to
# drop the field}}. Empty for v1.36.0 / kubernetes 36.0.3.
CLIENT_OVERRIDES: dict[str, dict[str, str | None]] = {}

# openapi-generator PythonClientCodegen reserved words (plus the local variable
# names of its API method template). A reserved attribute name gets a "_" prefix.
PYTHON_RESERVED = frozenset(
    """
    all_params resource_path path_params query_params header_params form_params
    local_var_files body_params auth_settings property
    and del from not global with as elif if or yield assert else import pass break
    except in raise continue finally is return def for lambda try self nonlocal
    none true false async await print exec
    """.split()
)


# --------------------------------------------------------------------------
# Types, as Python data: a string for primitives ("str", "int", "float",
# "bool", "datetime", "date", "object"), ("model", definition),
# ("list", T) or ("map", T).

Ty = Union[str, tuple]
PRIMITIVES = ("str", "int", "float", "bool", "datetime", "date", "object")


@dataclass(frozen=True)
class Field:
    camel: str
    snake: str
    ty: Ty
    required: bool


@dataclass(frozen=True)
class Model:
    definition: str  # e.g. io.k8s.api.core.v1.Container
    name: str  # Python client class name, e.g. V1Container
    fields: tuple  # of Field, sorted by camel name


# --------------------------------------------------------------------------
# Loading


def schema_path(version: str) -> str:
    import kubernetes_validate

    return os.path.join(
        os.path.dirname(kubernetes_validate.__file__),
        "kubernetes-json-schema",
        f"v{version}-local",
        "_definitions.json",
    )


def load_definitions(version: str) -> dict:
    with open(schema_path(version), encoding="utf-8") as f:
        return json.load(f)["$defs"]


REF_PREFIX = "#/$defs/"


def ref_target(schema: dict) -> str | None:
    ref = schema.get("$ref")
    if ref is None:
        return None
    if not ref.startswith(REF_PREFIX):
        raise ValueError(f"unsupported $ref {ref!r}")
    return ref[len(REF_PREFIX):]


# --------------------------------------------------------------------------
# Naming


def _is_deprecated_redirect(schema: dict) -> bool:
    # preprocess_spec.py is_model_deprecated
    return (
        len(schema) == 2
        and "$ref" in schema
        and "description" in schema
        and schema["description"].startswith("Deprecated.")
    )


def short_names(defs: dict) -> dict[str, str]:
    """preprocess_spec.py remove_model_prefixes: definition -> short dotted name."""
    names = [k for k, v in defs.items() if k.startswith("io.k8s") and not _is_deprecated_redirect(v)]
    split_n = {k: 2 for k in names}
    while True:
        short = {k: ".".join(k.rsplit(".", split_n[k])[1:]) for k in names}
        seen: dict[str, list[str]] = {}
        for k in names:
            seen.setdefault(short[k], []).append(k)
        clashes = [ks for ks in seen.values() if len(ks) > 1]
        if not clashes:
            return short
        for ks in clashes:
            for k in ks:
                if split_n[k] >= k.count("."):
                    raise ValueError(f"cannot shorten model name {k}")
                split_n[k] += 1


def sanitize_name(name: str) -> str:
    """openapi-generator DefaultCodegen.sanitizeName."""
    if name == "$":
        return "value"
    name = name.replace("[]", "")
    name = name.replace("[", "_").replace("]", "")
    name = name.replace("(", "_").replace(")", "")
    for ch in ".-| /\\":
        name = name.replace(ch, "_")
    return re.sub(r"\W", "", name, flags=re.ASCII)


def class_name(short: str) -> str:
    """openapi-generator PythonClientCodegen.toModelName (camelize)."""
    name = sanitize_name(short)
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def underscore(word: str) -> str:
    """openapi-generator StringUtils.underscore (the capital-run pattern needs two
    lower-case letters after the run's last capital, so `podIPs` -> `pod_ips`,
    `nonResourceURLs` -> `non_resource_urls`, `FSGroup` -> `fs_group`)."""
    word = word.replace(".", "/").replace("$", "__")
    word = re.sub(r"([A-Z]+)([A-Z][a-z][a-z]+)", r"\1_\2", word)
    word = re.sub(r"([a-z\d])([A-Z])", r"\1_\2", word)
    return word.replace("-", "_").replace(" ", "_").lower()


def snake_name(camel: str) -> str:
    """openapi-generator PythonClientCodegen.toVarName."""
    name = sanitize_name(camel)
    if re.fullmatch(r"[A-Z_]*", name):
        name = name.lower()
    name = underscore(name)
    name = name.lstrip("_")
    if name in PYTHON_RESERVED or re.match(r"\d", name):
        name = "_" + name
    return name


def const_name(cls: str) -> str:
    """Rust constant for a model index: V1ObjectMeta -> V1_OBJECT_META."""
    return underscore(cls).upper()


# --------------------------------------------------------------------------
# Types


def _types_of(schema: dict) -> list[str]:
    t = schema.get("type")
    if t is None:
        return []
    ts = [t] if isinstance(t, str) else list(t)
    return [x for x in ts if x != "null"]


def is_inlined(defs: dict, name: str) -> bool:
    # preprocess_spec.py inline_primitive_models: no "properties" -> not a model.
    return "properties" not in defs[name]


def resolve_type(defs: dict, schema: dict, where: str) -> Ty:
    target = ref_target(schema)
    if target is not None:
        if target not in defs:
            raise ValueError(f"{where}: dangling $ref {target}")
        if not is_inlined(defs, target):
            return ("model", target)
        if target in PRIMITIVE_OVERRIDES:
            return PRIMITIVE_OVERRIDES[target]
        return resolve_type(defs, defs[target], f"{where} -> {target}")

    if "oneOf" in schema or "anyOf" in schema or "allOf" in schema:
        raise ValueError(f"{where}: unsupported composite schema outside PRIMITIVE_OVERRIDES")
    if "properties" in schema:
        raise ValueError(f"{where}: unsupported inline object schema")

    types = _types_of(schema)
    if len(types) > 1:
        raise ValueError(f"{where}: unsupported type union {types}")
    t = types[0] if types else "object"
    fmt = schema.get("format")
    if t == "string":
        return {"date-time": "datetime", "date": "date"}.get(fmt, "str")
    if t == "integer":
        return "int"
    if t == "number":
        return "float"
    if t == "boolean":
        return "bool"
    if t == "array":
        items = schema.get("items")
        if not isinstance(items, dict):
            raise ValueError(f"{where}: array without an items schema")
        return ("list", resolve_type(defs, items, where + "[]"))
    if t == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return ("map", resolve_type(defs, extra, where + "{}"))
        return "object"
    raise ValueError(f"{where}: unsupported type {t!r}")


def client_type(ty: Ty, names: dict[str, str]) -> str:
    """The type as the Python client's openapi_types spells it."""
    if isinstance(ty, str):
        return ty
    kind, inner = ty
    if kind == "model":
        return names[inner]
    if kind == "list":
        return f"list[{client_type(inner, names)}]"
    if kind == "map":
        return f"dict[str, {client_type(inner, names)}]"
    raise ValueError(ty)


def parse_client_type(s: str, by_class: dict[str, str]) -> Ty:
    """Inverse of client_type, for CLIENT_OVERRIDES."""
    m = re.fullmatch(r"list\[(.*)\]", s)
    if m:
        return ("list", parse_client_type(m.group(1), by_class))
    m = re.fullmatch(r"dict\[str, (.*)\]", s)
    if m:
        return ("map", parse_client_type(m.group(1), by_class))
    if s in PRIMITIVES:
        return s
    return ("model", by_class[s])


def model_refs(ty: Ty):
    if isinstance(ty, tuple):
        kind, inner = ty
        if kind == "model":
            yield inner
        else:
            yield from model_refs(inner)


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
