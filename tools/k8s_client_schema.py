"""The Python `kubernetes` client's view of the Kubernetes OpenAPI schema, for
tools/gen_k8s_fields.py: the schema loaded from the JSON-schema form that the
`kubernetes-validate` package ships, and the client's class names, attribute names
and types reproduced from the rules its generator applies:

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
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Union

# Inlined primitive definitions whose client type is not what their JSON-schema
# form says (see inline_primitive_models in the module docstring).
PRIMITIVE_OVERRIDES = {
    # swagger.json: {"type": "string"}; JSON schema: oneOf string / number.
    "io.k8s.apimachinery.pkg.api.resource.Quantity": "str",
    # preprocess_spec.py forces intstr.IntOrString to "object".
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": "object",
}

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
