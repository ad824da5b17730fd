"""k8s fragments for the generated corpus (each returns JSON-able data, keys in the chosen style)."""

from __future__ import annotations

from gen_base import Builder

# ------------------------------------------------------------------------------------------------
# k8s fragments (each returns JSON-able data; keys in the chosen style)
# ------------------------------------------------------------------------------------------------

ENV_NAMES = ["FOO", "BAR", "LOG_LEVEL", "AWS_REGION", "PIPELINE_MODE", "TZ", "FEATURE_FLAG"]


def frag_env(b: Builder, n: int | None = None, allow_value_from: bool = True) -> list:
    k = b.style()
    out = []
    for name in b.sample(ENV_NAMES, n if n is not None else b.rng.randint(1, 3)):
        r = b.rng.random()
        if allow_value_from and r < 0.2:
            b.feat("env_value_from")
            out.append({
                "name": name,
                k("value_from"): {k("secret_key_ref"): {"name": "app-secrets", "key": name.lower()}},
            })
        elif allow_value_from and r < 0.28:
            b.feat("env_value_from")
            out.append({
                "name": name,
                k("value_from"): {k("config_map_key_ref"): {"name": "app-config", "key": name.lower(),
                                                          "optional": True}},
            })
        elif allow_value_from and r < 0.33:
            b.feat("env_value_from")
            out.append({"name": name, k("value_from"): {k("field_ref"): {k("field_path"): "metadata.name"}}})
        else:
            out.append({"name": name, "value": b.choice(["1", "debug", "us-east-1", "", "a=b", "ü"])})
    b.feat("env")
    return out


def frag_env_from(b: Builder) -> list:
    k = b.style()
    out = []
    if b.p(0.7):
        out.append({k("config_map_ref"): {"name": b.choice(["shared-env", "team-env"])}})
    if b.p(0.5) or not out:
        entry = {k("secret_ref"): {"name": b.choice(["shared-secret", "db-creds"])}}
        if b.p(0.3):
            entry[k("secret_ref")]["optional"] = True
        out.append(entry)
    if b.p(0.2):
        out.append({"prefix": "CFG_", k("config_map_ref"): {"name": "prefixed-env"}})
    b.feat("env_from")
    return out


VOLUME_KINDS = ["pvc", "config_map", "empty_dir", "secret", "host_path", "empty_dir_sized"]


def frag_volumes(b: Builder, n: int | None = None) -> tuple[list, list]:
    """(volumes, volume_mounts) in one style each."""
    kv = b.style()
    km = b.style()
    vols, mounts = [], []
    for i, kind in enumerate(b.sample(VOLUME_KINDS, n if n is not None else b.rng.randint(1, 2))):
        name = f"{kind.replace('_', '-')}-vol{i}"
        if kind == "pvc":
            v = {"name": name, kv("persistent_volume_claim"): {kv("claim_name"): "data-pvc"}}
        elif kind == "config_map":
            v = {"name": name, kv("config_map"): {"name": "app-config",
                                                  "items": [{"key": "settings.yaml", "path": "settings.yaml"}],
                                                  kv("default_mode"): 420}}
        elif kind == "empty_dir":
            v = {"name": name, kv("empty_dir"): {}}
        elif kind == "empty_dir_sized":
            v = {"name": name, kv("empty_dir"): {"medium": "Memory", kv("size_limit"): "1Gi"}}
        elif kind == "secret":
            v = {"name": name, "secret": {kv("secret_name"): "tls-certs", "optional": False}}
        else:
            v = {"name": name, kv("host_path"): {"path": "/var/log/dagster", "type": "DirectoryOrCreate"}}
        vols.append(v)
        m = {"name": name, km("mount_path"): f"/mnt/{name}"}
        if b.p(0.4):
            m[km("read_only")] = True
        if b.p(0.2):
            m[km("sub_path")] = "sub"
        mounts.append(m)
    b.feat("volumes", "volume_mounts")
    return vols, mounts


def frag_resources(b: Builder, allow_numeric: bool = True) -> dict:
    def q(kind):
        if allow_numeric and b.p(0.3):
            b.feat("numeric_quantity")
            return b.choice([1, 2, 0.5, 0.25, 1073741824] if kind == "memory" else [1, 2, 0.5, 0.25, 4])
        return b.choice(["128Mi", "256Mi", "1Gi", "2Gi"] if kind == "memory" else ["100m", "250m", "1", "2"])

    out: dict = {}
    r = b.rng.random()
    if r < 0.8:
        out["limits"] = {"cpu": q("cpu"), "memory": q("memory")}
    if r > 0.3:
        out["requests"] = {"cpu": q("cpu"), "memory": q("memory")}
    if b.p(0.05):
        out.setdefault("limits", {})["nvidia.com/gpu"] = 1 if allow_numeric else "1"
    b.feat("resources")
    return out


def frag_affinity(b: Builder) -> dict:
    k = b.style()
    b.feat("affinity")
    if b.p(0.5):
        return {
            k("node_affinity"): {k("required_during_scheduling_ignored_during_execution"): {
                k("node_selector_terms"): [{k("match_expressions"): [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["devmaster1", "devmaster2"]}
                ]}]}}}
    return {
        k("pod_anti_affinity"): {
            k("preferred_during_scheduling_ignored_during_execution"): [
                {
                    "weight": 100,
                    k("pod_affinity_term"): {
                        k("label_selector"): {k("match_labels"): {"app.kubernetes.io/name": "dagster"}},
                        k("topology_key"): "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }


def frag_tolerations(b: Builder) -> list:
    k = b.style()
    b.feat("tolerations")
    pool = [
        {"operator": "Exists"},
        {"key": "dedicated", "operator": "Equal", "value": "dagster", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         k("toleration_seconds"): 300},
    ]
    return b.sample(pool, b.rng.randint(1, 2))


def frag_node_selector(b: Builder) -> dict:
    b.feat("node_selector")
    return dict(b.sample([("disktype", "ssd"), ("kubernetes.io/os", "linux"), ("pool", "batch")],
                         b.rng.randint(1, 2)))


def frag_container_security_context(b: Builder, as_field: bool = False) -> dict:
    """as_field: the launcher's / a container context's `security_context` field, which Dagster
    before 0.23 hands to the V1SecurityContext model as is (snake_case keys only)."""
    if as_field and not b.v.camel_field_security_context:
        b.rng.random()  # the style draw, so that the rest of the entry does not shift

        def k(s):
            return s
        b.feat("snake_keys")
    else:
        k = b.style()
    b.feat("container_security_context")
    out = {k("allow_privilege_escalation"): False, k("run_as_user"): 1000}
    if b.p(0.5):
        out[k("read_only_root_filesystem")] = True
    if b.p(0.5):
        out["capabilities"] = {"drop": ["ALL"]}
    return out


def frag_pod_security_context(b: Builder) -> dict:
    k = b.style()
    b.feat("pod_security_context")
    out = {k("run_as_user"): 1000, k("fs_group"): 2000}
    if b.p(0.5):
        out[k("run_as_non_root")] = True
    if b.p(0.3):
        out[k("seccomp_profile")] = {"type": "RuntimeDefault"}
    return out


def frag_sidecars(b: Builder) -> list:
    k = b.style()
    b.feat("sidecar")
    out = [{"name": "log-shipper", "image": "busybox:1.36",
            "command": ["sh", "-c", "tail -F /var/log/app.log"]}]
    if b.p(0.3):
        out[0]["resources"] = {"limits": {"cpu": "50m", "memory": "32Mi"}}
    if b.p(0.3):
        out.append({"name": "proxy", "image": "envoyproxy/envoy:v1.30",
                    k("ports"): [{k("container_port"): 15001, "name": "proxy", "protocol": "TCP"}]})
    return out


def frag_labels(b: Builder, prefix: str = "") -> dict:
    b.feat("labels")
    pool = [("team", "data"), ("app.example.com/tier", "batch"), ("cost-center", "cc-123"),
            ("env", "prod"), (f"{prefix}owner", "platform")]
    return dict(b.sample(pool, b.rng.randint(1, 3)))


def frag_annotations(b: Builder) -> dict:
    b.feat("annotations")
    pool = [("example.com/owner", "data-team"), ("cluster-autoscaler.kubernetes.io/safe-to-evict", "false"),
            ("prometheus.io/scrape", "true"), ("note", "multi\nline ü")]
    return dict(b.sample(pool, b.rng.randint(1, 2)))


def frag_owner_references(b: Builder) -> list:
    k = b.style()
    b.feat("owner_references")
    ref = {k("api_version"): "v1", "kind": "ConfigMap", "name": "run-owner", "uid": b.uuid()}
    if b.p(0.3):
        ref[k("block_owner_deletion")] = False
    return [ref]

