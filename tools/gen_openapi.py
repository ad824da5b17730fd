#!/usr/bin/env python3
"""Generates the OpenAPI v3 documents the dev cluster serves (kubectl's
validation, `apply` and `explain` read them) from the Kubernetes 1.36 schema
that kubernetes-validate ships, keeping only what the served kinds need.

Run with the project venv's python, from anywhere:

    .venv/bin/python tools/gen_openapi.py            # rewrites crates/runway-devcluster/openapi
    .venv/bin/python tools/gen_openapi.py --out DIR  # writes elsewhere (the currency test)

Output, mirroring the URLs it is served at:
    v3.json                the discovery map (`GET /openapi/v3`), with each document's hash
    v3/api/v1.json         `GET /openapi/v3/api/v1`
    v3/apis/batch/v1.json  `GET /openapi/v3/apis/batch/v1`
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.resources
import json
import os
from dataclasses import dataclass

SCHEMA_SET = "v1.36.0-local"
KUBERNETES_VERSION = "v1.36.0"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "crates", "runway-devcluster", "openapi")
COMPONENTS = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = False


@dataclass(frozen=True)
class GroupVersion:
    group: str
    version: str
    package: str
    resources: tuple[Resource, ...]

    @property
    def path(self) -> str:
        return f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"

    @property
    def op_prefix(self) -> str:
        return (self.group.capitalize() if self.group else "Core") + self.version.capitalize()


# The kinds the dev cluster serves (runway-devcluster's `Kind`), with the
# status subresources its discovery lists.
GROUP_VERSIONS = (
    GroupVersion("", "v1", "io.k8s.api.core.v1.", (
        Resource("configmaps", "ConfigMap"),
        Resource("events", "Event"),
        Resource("namespaces", "Namespace", namespaced=False, status=True),
        Resource("pods", "Pod", status=True),
        Resource("secrets", "Secret"),
        Resource("serviceaccounts", "ServiceAccount"),
    )),
    GroupVersion("batch", "v1", "io.k8s.api.batch.v1.", (
        Resource("jobs", "Job", status=True),
    )),
)


def definitions() -> tuple[dict, str]:
    """The `$defs` of kubernetes-validate's schema set, and the package version."""
    path = (importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
            / SCHEMA_SET / "_definitions.json")
    with path.open() as f:
        defs = json.load(f)["$defs"]
    return defs, importlib.metadata.version("kubernetes-validate")


# === schemas ===

def def_name(ref: str) -> str:
    assert ref.startswith("#/$defs/"), ref
    return ref[len("#/$defs/"):]


def openapi_type(value):
    """`["string", "null"]` (JSON Schema's nullable) is OpenAPI's `"string"`."""
    if isinstance(value, list):
        kept = [t for t in value if t != "null"]
        return kept[0] if len(kept) == 1 else kept
    return value


def convert(schema: dict, is_kind: bool = False) -> dict:
    """A kubernetes-validate schema (JSON Schema 2020-12) as kube-apiserver's
    OpenAPI v3 writes it: `$ref` into components, wrapped in `allOf` when it
    has siblings such as a description (kubectl explain prints both)."""
    out = {}
    for key, value in schema.items():
        if key == "$ref":
            continue
        if key == "type":
            value = openapi_type(value)
        elif key == "properties":
            # kubernetes-validate pins a kind's apiVersion and kind with an
            # enum the real document does not have.
            value = {name: convert_property(prop, drop_enum=is_kind and name in ("apiVersion", "kind"))
                     for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = convert(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            value = [convert(v) for v in value]
        elif key == "enum":
            value = [v for v in value if v is not None]
        out[key] = value
    if "$ref" not in schema:
        return out
    ref = {"$ref": COMPONENTS + def_name(schema["$ref"])}
    return {"allOf": [ref], **out} if out else ref


def convert_property(schema: dict, drop_enum: bool) -> dict:
    if drop_enum:
        schema = {k: v for k, v in schema.items() if k != "enum"}
    return convert(schema)


def convert_definition(name: str, schema: dict) -> dict:
    # Both are a oneOf of scalars in JSON Schema; kube-apiserver's document
    # declares them as strings, and kubectl reads them that way.
    if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
        return {"description": "IntOrString is a type that can hold an int32 or a string.  When used in "
                "JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  "
                "This allows you to have, for example, a JSON field that can accept a name or number.",
                "format": "int-or-string", "type": "string"}
    if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
        return {"description": "Quantity is a fixed-point representation of a number. It provides "
                "convenient marshaling/unmarshaling in JSON and YAML, in addition to String() and "
                "AsInt64() accessors.", "type": "string"}
    return convert(schema, is_kind="x-kubernetes-group-version-kind" in schema)


def closure(defs: dict, roots: list[str]) -> list[str]:
    """Every definition the roots reference, directly or not."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        stack = [defs[name]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if isinstance(node.get("$ref"), str):
                    todo.append(def_name(node["$ref"]))
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return sorted(seen)


# === paths ===

def query(name: str, description: str, type_: str = "string") -> dict:
    return {"name": name, "in": "query", "description": description,
            "schema": {"type": type_, "uniqueItems": True}}


DRY_RUN = query("dryRun", "When present, indicates that modifications should not be persisted. "
                "Valid values are: - All: all dry run stages will be processed")
FIELD_MANAGER = query("fieldManager", "fieldManager is a name associated with the actor or entity "
                      "that is making these changes.")
FIELD_VALIDATION = query(
    "fieldValidation", "fieldValidation instructs the server on how to handle objects in the request "
    "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will "
    "ignore any unknown fields that are silently dropped from the object, and will ignore all but the "
    "last duplicate field that the decoder encounters. - Warn: This will send a warning via the "
    "standard warning response header for each unknown field that is dropped from the object, and for "
    "each duplicate field that is encountered. This is the default. - Strict: This will fail the "
    "request with a BadRequest error if any unknown fields would be dropped from the object, or if any "
    "duplicate fields are present. The error returned from the server will contain all unknown and "
    "duplicate fields encountered.")
FORCE = query("force", "Force is going to \"force\" Apply requests. It means user will re-acquire "
              "conflicting fields owned by other people.", "boolean")
LIST_PARAMS = [
    query("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
          "boolean"),
    query("continue", "The continue option should be set when retrieving more results from the server."),
    query("fieldSelector", "A selector to restrict the list of returned objects by their fields."),
    query("labelSelector", "A selector to restrict the list of returned objects by their labels."),
    query("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
    query("resourceVersion", "resourceVersion sets a constraint on what resource versions a request "
          "may be served from."),
    query("resourceVersionMatch", "resourceVersionMatch determines how resourceVersion is applied to "
          "list calls."),
    query("sendInitialEvents", "`sendInitialEvents=true` may be set together with `watch=true`.",
          "boolean"),
    query("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    query("watch", "Watch for changes to the described resources and return them as a stream of add, "
          "update, and remove notifications.", "boolean"),
]
DELETE_PARAMS = [
    DRY_RUN,
    query("gracePeriodSeconds", "The duration in seconds before the object should be deleted.",
          "integer"),
    query("orphanDependents", "Deprecated: please use the PropagationPolicy.", "boolean"),
    query("propagationPolicy", "Whether and how garbage collection will be performed."),
]


def path_param(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "uniqueItems": True}}


def operation(gv: GroupVersion, res: Resource, action: str, op_id: str, response: str,
              params: list | None = None, body: tuple[str, ...] = (), body_schema: str = "") -> dict:
    op = {
        "operationId": op_id,
        "tags": [f"{gv.group or 'core'}_{gv.version}"],
        "responses": {"200": {"description": "OK", "content": {
            "application/json": {"schema": {"$ref": COMPONENTS + response}}}},
            "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        # An object, never a list: kubectl's field-validation check and
        # explain both compare it as one map (with "group": "" for core).
        "x-kubernetes-group-version-kind": {"group": gv.group, "kind": res.kind, "version": gv.version},
    }
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {
            media: {"schema": {"$ref": COMPONENTS + body_schema}} for media in body}}
    return op


def resource_paths(gv: GroupVersion, res: Resource) -> dict:
    kind_def, list_def = gv.package + res.kind, gv.package + res.kind + "List"
    scope = "Namespaced" if res.namespaced else ""
    prefix = f"/{gv.path}"
    collection = (f"{prefix}/namespaces/{{namespace}}/{res.plural}" if res.namespaced
                  else f"{prefix}/{res.plural}")
    ns = [path_param("namespace", "object name and auth scope, such as for teams and projects")]
    ns = ns if res.namespaced else []
    name = [path_param("name", f"name of the {res.kind}")]
    op = lambda *a, **k: operation(gv, res, *a, **k)  # noqa: E731
    write = [DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION]
    # Every PATCH must declare fieldValidation: kubectl checks one at random
    # and validates client-side (fetching /openapi/v2) when it is missing.
    patch = write + [FORCE]
    paths = {
        collection: {
            "get": op("list", f"list{gv.op_prefix}{scope}{res.kind}", list_def, LIST_PARAMS),
            "post": op("post", f"create{gv.op_prefix}{scope}{res.kind}", kind_def, write, ("*/*",),
                       kind_def),
            "parameters": ns,
        },
        f"{collection}/{{name}}": {
            "get": op("get", f"read{gv.op_prefix}{scope}{res.kind}", kind_def),
            "put": op("put", f"replace{gv.op_prefix}{scope}{res.kind}", kind_def, write, ("*/*",),
                      kind_def),
            "patch": op("patch", f"patch{gv.op_prefix}{scope}{res.kind}", kind_def, patch, PATCH_TYPES,
                        META + "Patch"),
            "delete": op("delete", f"delete{gv.op_prefix}{scope}{res.kind}", META + "Status",
                         DELETE_PARAMS, ("*/*",), META + "DeleteOptions"),
            "parameters": ns + name,
        },
    }
    if res.namespaced:
        paths[collection]["delete"] = op(
            "deletecollection", f"delete{gv.op_prefix}Collection{scope}{res.kind}", META + "Status",
            DELETE_PARAMS + LIST_PARAMS, ("*/*",), META + "DeleteOptions")
        paths[f"{prefix}/{res.plural}"] = {
            "get": op("list", f"list{gv.op_prefix}{res.kind}ForAllNamespaces", list_def, LIST_PARAMS)}
    else:
        del paths[collection]["parameters"]
    if res.status:
        paths[f"{collection}/{{name}}/status"] = {
            "get": op("get", f"read{gv.op_prefix}{scope}{res.kind}Status", kind_def),
            "put": op("put", f"replace{gv.op_prefix}{scope}{res.kind}Status", kind_def, write, ("*/*",),
                      kind_def),
            "patch": op("patch", f"patch{gv.op_prefix}{scope}{res.kind}Status", kind_def, patch,
                        PATCH_TYPES, META + "Patch"),
            "parameters": ns + name,
        }
    return paths


# === documents ===

def group_version_document(defs: dict, gv: GroupVersion, source: str) -> dict:
    paths: dict = {}
    roots = [META + "DeleteOptions", META + "Patch", META + "Status"]
    for res in gv.resources:
        paths.update(resource_paths(gv, res))
        roots += [gv.package + res.kind, gv.package + res.kind + "List"]
    schemas = {name: convert_definition(name, defs[name]) for name in closure(defs, roots)}
    return {
        "components": {"schemas": schemas},
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION, "x-runway-generated": source},
        "openapi": "3.0.0",
        "paths": paths,
    }


def compact(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_lines(entries: dict) -> str:
    return "{\n" + ",\n".join(f"{compact(k)}:{compact(v)}" for k, v in sorted(entries.items())) + "\n}"


def render(doc: dict) -> bytes:
    """Compact JSON with one path and one schema a line: small, and a
    regeneration's diff names what changed."""
    text = ('{"components":{"schemas":' + entry_lines(doc["components"]["schemas"]) + "},\n"
            '"info":' + compact(doc["info"]) + ",\n"
            '"openapi":' + compact(doc["openapi"]) + ",\n"
            '"paths":' + entry_lines(doc["paths"]) + "}\n")
    return text.encode()


def documents() -> dict[str, bytes]:
    """Every output file, by its path under the output folder."""
    defs, validate_version = definitions()
    source = (f"generated by tools/gen_openapi.py from kubernetes-validate {validate_version} "
              f"({SCHEMA_SET}); do not edit")
    files, discovery = {}, {}
    for gv in GROUP_VERSIONS:
        body = render(group_version_document(defs, gv, source))
        files[f"v3/{gv.path}.json"] = body
        # As kube-apiserver: the hash is the document's SHA-512, and clients
        # may cache a document for as long as its URL (hash included) holds.
        digest = hashlib.sha512(body).hexdigest().upper()
        discovery[gv.path] = {"serverRelativeURL": f"/openapi/v3/{gv.path}?hash={digest}"}
    files["v3.json"] = (compact({"paths": discovery}) + "\n").encode()
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    args = parser.parse_args()
    for rel, body in documents().items():
        path = os.path.join(args.out, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(body)
        print(f"wrote {os.path.relpath(path)} ({len(body)} bytes)")


if __name__ == "__main__":
    main()
