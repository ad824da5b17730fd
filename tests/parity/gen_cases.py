"""Deterministic generator of the Runway <-> Dagster parity corpus.

    generate(seed: int, count: int) -> list[{"name", "case", "env", "features", "expect"}]

`case` is what `runway render --case FILE` reads; `env` is the process environment (on top of a
minimal base env) both implementations run with; `features` are coverage tags; `expect` is the
outcome the generator intends ("ok" or "error"), checked against Dagster by test_parity.py.

Everything Dagster computes for a case (run-worker argv, Celery step kwargs) is computed here with
the REAL Dagster code: `ExecuteRunArgs`/`ResumeRunArgs(...).get_command_args()` with the instance
ref the launcher uses, and for steps the real `celery_k8s_job_executor` factory plus the real
`_submit_task_k8s_job` (only the Celery publish is intercepted, and the kwargs go through kombu's
JSON serializer like on the wire).

Usage: python gen_cases.py [--seed N] [--count N] [--out DIR]   (writes one JSON per entry)
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import sys
import uuid
from types import SimpleNamespace
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dagster_harness as h  # noqa: E402

DEFAULT_SEED = 20251125
DEFAULT_COUNT = 1200

# ------------------------------------------------------------------------------------------------
# Seed deployment data, copied from the seed Helm values (runLauncher.config.k8sRunLauncher and the
# k8s-example-user-code-1 user deployment). Kept here as data so the corpus does not depend on the
# shared seed file.
# ------------------------------------------------------------------------------------------------

SEED_NAMESPACE = "dagster-system"
SEED_RELEASE = "dagster"
SEED_IMAGE_PULL_SECRETS = [{"name": "dagster-image-pull-secrets"}]
SEED_HOSTNAME_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/hostname",
                            "operator": "In",
                            "values": ["devmaster1", "devmaster2", "devmaster3"],
                        }
                    ]
                }
            ]
        }
    }
}
SEED_LAUNCHER_LABELS = {
    "app.aipaas.io/app": "dagster",
    "app.aipaas.io/component": "k8s-run-launcher",
    "app.aipaas.io/np.middleware": "allowed",
}
SEED_K8S_RUN_LAUNCHER_VALUES = {  # runLauncher.config.k8sRunLauncher (Helm values, camelCase)
    "labels": SEED_LAUNCHER_LABELS,
    "resources": {
        "limits": {"cpu": "100m", "memory": "128Mi"},
        "requests": {"cpu": "100m", "memory": "128Mi"},
    },
    "runK8sConfig": {
        "containerConfig": {"resources": {"cpu": "100m", "memory": "128Mi"}},
        "podTemplateSpecMetadata": {"labels": SEED_LAUNCHER_LABELS},
        "podSpecConfig": {"affinity": SEED_HOSTNAME_AFFINITY},
        "jobSpecConfig": {
            "ttlSecondsAfterFinished": 7200,
            "template": {"spec": {"affinity": SEED_HOSTNAME_AFFINITY}},
        },
        "jobMetadata": {"labels": SEED_LAUNCHER_LABELS},
    },
}
# Chart defaults for the values the seed does not set.
SEED_CHART_DEFAULTS = {"loadInclusterConfig": True, "imagePullPolicy": "Always"}
SEED_USER_DEPLOYMENT = {
    "name": "k8s-example-user-code-1",
    "image": "docker.io/dagster/user-code-example:1.1.9",
    "pullPolicy": "Always",
    "labels": {
        "app.aipaas.io/app": "dagster",
        "app.aipaas.io/component": "k8s-example-user-code-1",
        "app.aipaas.io/np.middleware": "allowed",
    },
    "resources": {
        "limits": {"cpu": "200m", "memory": "256Mi"},
        "requests": {"cpu": "200m", "memory": "256Mi"},
    },
}
# Env the chart gives the daemon (configmap-env-*), read by the {env: ...} sources below.
SEED_ENV = {
    "DAGSTER_HOME": "/opt/dagster/dagster_home",
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": f"{SEED_RELEASE}-instance",
    "DAGSTER_K8S_PG_PASSWORD_SECRET": f"{SEED_RELEASE}-postgresql-secret",
    "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": f"{SEED_RELEASE}-pipeline-env",
    "DAGSTER_K8S_PIPELINE_RUN_NAMESPACE": SEED_NAMESPACE,
}
SEED_RUN_ID = "1c2e9a5b-7d3e-4e8f-9a1b-2c3d4e5f6a7b"
SEED_TAG_CONFIG = {
    "container_config": {
        "resources": {
            "limits": {"cpu": "500m", "memory": "1Gi"},
            "requests": {"cpu": "250m", "memory": "512Mi"},
        },
        "env": [{"name": "PIPELINE_MODE", "value": "batch"}],
    },
    "pod_spec_config": {
        "tolerations": [{"operator": "Exists"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
    },
    "pod_template_spec_metadata": {"annotations": {"example.com/owner": "data-team"}},
    "job_spec_config": {"activeDeadlineSeconds": 7200},
}


def helm_k8s_run_launcher_config(values: dict, corrected: bool, env_sources: bool = True) -> dict:
    """dagster.yaml `run_launcher.config` the Dagster Helm chart renders for K8sRunLauncher
    (`helpers/instance/_run-launcher.tpl`): camelCase Helm values become snake_case launcher keys,
    raw k8s config is passed through with its camelCase keys, plus the chart's standard keys.

    env_sources=True: the chart generation of the seed's 1.1.9 deployment, which points
    dagster_home / instance_config_map / postgres_password_secret and the pipeline-run env
    ConfigMap at the daemon's env ({env: ...}, values in SEED_ENV).
    env_sources=False: the same values as literals (as the current chart writes them), so the
    case needs no environment.
    """
    v = {**SEED_CHART_DEFAULTS, **copy.deepcopy(values)}

    def src(var: str):
        return {"env": var} if env_sources else SEED_ENV[var]

    cfg: dict[str, Any] = {
        "load_incluster_config": v["loadInclusterConfig"],
        "job_namespace": v.get("jobNamespace") or SEED_NAMESPACE,
        "image_pull_policy": v["imagePullPolicy"],
        "image_pull_secrets": copy.deepcopy(SEED_IMAGE_PULL_SECRETS),
        "service_account_name": SEED_RELEASE,
        "dagster_home": src("DAGSTER_HOME"),
        "instance_config_map": src("DAGSTER_K8S_INSTANCE_CONFIG_MAP"),
        "postgres_password_secret": src("DAGSTER_K8S_PG_PASSWORD_SECRET"),
        "env_config_maps": [src("DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP")],
    }
    if v.get("labels"):
        cfg["labels"] = v["labels"]
    if v.get("resources"):
        cfg["resources"] = v["resources"]
    rk = v.get("runK8sConfig") or {}
    if rk:
        out = {}
        for helm_key, key in [
            ("containerConfig", "container_config"),
            ("podSpecConfig", "pod_spec_config"),
            ("podTemplateSpecMetadata", "pod_template_spec_metadata"),
            ("jobSpecConfig", "job_spec_config"),
            ("jobMetadata", "job_metadata"),
        ]:
            if rk.get(helm_key):
                out[key] = rk[helm_key]
        if corrected:
            res = out["container_config"]["resources"]
            out["container_config"]["resources"] = {"limits": dict(res), "requests": dict(res)}
        cfg["run_k8s_config"] = out
    return cfg


def seed_container_context() -> dict:
    """Container context the user-deployments chart attaches (includeConfigInLaunchedRuns)."""
    d = SEED_USER_DEPLOYMENT
    fullname = f"{SEED_RELEASE}-dagster-user-deployments"
    return {
        "k8s": {
            "image_pull_policy": d["pullPolicy"],
            "image_pull_secrets": copy.deepcopy(SEED_IMAGE_PULL_SECRETS),
            "env_config_maps": [f"{fullname}-{d['name']}-user-env"],
            "labels": dict(d["labels"]),
            "resources": copy.deepcopy(d["resources"]),
            "namespace": SEED_NAMESPACE,
            "service_account_name": f"{fullname}-user-deployments",
            "run_k8s_config": {"pod_spec_config": {"automount_service_account_token": True}},
        }
    }


# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


class Builder:
    """Per-entry state: rng, env, feature tags, and key style."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.env: dict[str, str] = {}
        self.features: set[str] = set()
        self._var = 0

    # randomness
    def p(self, prob: float) -> bool:
        return self.rng.random() < prob

    def choice(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def sample(self, seq, k):
        return self.rng.sample(list(seq), k)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def feat(self, *names: str) -> None:
        self.features.update(names)

    # key style for a k8s dict: returns a function snake_name -> key
    def style(self) -> Callable[[str], str]:
        if self.p(0.5):
            self.feat("camel_keys")
            return camel
        self.feat("snake_keys")
        return lambda s: s

    # StringSource values: literal or {env: VAR} (VAR put in env)
    def var(self, hint: str) -> str:
        self._var += 1
        return f"RUNWAY_{hint.upper()}_{self._var}"

    def src(self, value: str, hint: str = "VAL", prob: float = 0.15, in_array: bool = False):
        if self.p(prob):
            name = self.var(hint)
            self.env[name] = value
            self.feat("env_source")
            if in_array:
                self.feat("env_source_in_array")
            return {"env": name}
        return value


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


def frag_container_security_context(b: Builder) -> dict:
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


# Section generators for raw k8s config (container_config etc.). `allow` restricts keys (used so
# that allowlist-passing cases only use allowlisted fields).


def sec_container_config(b: Builder, rich: bool = True) -> dict:
    k = b.style()
    out: dict = {}
    opts = ["env", "env_from", "resources", "volume_mounts", "security_context", "command", "args",
            "working_dir", "image_pull_policy", "ports", "image", "readiness_probe", "name"]
    for key in b.sample(opts, b.rng.randint(1, 4 if rich else 2)):
        if key == "env":
            out[k("env")] = frag_env(b)
        elif key == "env_from":
            out[k("env_from")] = frag_env_from(b)
        elif key == "resources":
            out["resources"] = frag_resources(b)
        elif key == "volume_mounts":
            _, mounts = frag_volumes(b, 1)
            out[k("volume_mounts")] = mounts
        elif key == "security_context":
            out[k("security_context")] = frag_container_security_context(b)
        elif key == "command":
            b.feat("command")
            out["command"] = b.choice([["/bin/sh", "-c"], ["dagster"], ["tini", "--"]])
        elif key == "args":
            b.feat("user_args_replaced")
            out["args"] = ["--ignored"]
        elif key == "working_dir":
            out[k("working_dir")] = "/opt/dagster/app"
        elif key == "image_pull_policy":
            b.feat("image_pull_policy")
            out[k("image_pull_policy")] = b.choice(["Always", "IfNotPresent", "Never"])
        elif key == "ports":
            out["ports"] = [{k("container_port"): 8080, "name": "http"}]
        elif key == "image":
            b.feat("container_config_image")
            out["image"] = b.choice(["registry.example.com/dagster/override:2.0", "override:latest"])
        elif key == "readiness_probe":
            out[k("readiness_probe")] = {"exec": {"command": ["true"]}, k("period_seconds"): 20}
        elif key == "name":
            b.feat("container_name_override")
            out["name"] = "main"
    b.feat("container_config")
    return out


def sec_pod_spec_config(b: Builder) -> dict:
    k = b.style()
    out: dict = {}
    opts = ["affinity", "tolerations", "node_selector", "security_context", "containers", "init_containers",
            "volumes", "image_pull_secrets", "service_account_name", "scheduler_name",
            "priority_class_name", "termination_grace_period_seconds", "automount", "dns_policy",
            "restart_policy", "host_aliases"]
    for key in b.sample(opts, b.rng.randint(1, 4)):
        if key == "affinity":
            out["affinity"] = frag_affinity(b)
        elif key == "tolerations":
            out["tolerations"] = frag_tolerations(b)
        elif key == "node_selector":
            out[k("node_selector")] = frag_node_selector(b)
        elif key == "security_context":
            out[k("security_context")] = frag_pod_security_context(b)
        elif key == "containers":
            out["containers"] = frag_sidecars(b)
        elif key == "init_containers":
            b.feat("init_containers")
            out[k("init_containers")] = [{"name": "init", "image": "busybox:1.36",
                                          "command": ["sh", "-c", "echo init"]}]
        elif key == "volumes":
            vols, _ = frag_volumes(b, 1)
            out["volumes"] = vols
        elif key == "image_pull_secrets":
            b.feat("image_pull_secrets")
            out[k("image_pull_secrets")] = [{"name": b.choice(["regcred", "dagster-image-pull-secrets"])}]
        elif key == "service_account_name":
            b.feat("service_account_name")
            out[k("service_account_name")] = b.choice(["user-sa", "dagster"])
        elif key == "scheduler_name":
            b.feat("scheduler_name")
            out[k("scheduler_name")] = "volcano"
        elif key == "priority_class_name":
            out[k("priority_class_name")] = "batch-low"
        elif key == "termination_grace_period_seconds":
            out[k("termination_grace_period_seconds")] = 60
        elif key == "automount":
            b.feat("automount_override")
            out[k("automount_service_account_token")] = False
        elif key == "dns_policy":
            out[k("dns_policy")] = "ClusterFirst"
        elif key == "restart_policy":
            b.feat("restart_policy_override")
            out[k("restart_policy")] = "OnFailure"
        elif key == "host_aliases":
            out[k("host_aliases")] = [{"ip": "10.0.0.1", "hostnames": ["db.internal"]}]
    b.feat("pod_spec_config")
    return out


def sec_pod_template_spec_metadata(b: Builder) -> dict:
    out: dict = {}
    if b.p(0.6):
        out["labels"] = frag_labels(b)
    if b.p(0.6) or not out:
        out["annotations"] = frag_annotations(b)
    b.feat("pod_template_spec_metadata")
    return out


def sec_job_metadata(b: Builder) -> dict:
    k = b.style()
    out: dict = {}
    if b.p(0.5):
        out["annotations"] = frag_annotations(b)
    if b.p(0.5):
        out["labels"] = frag_labels(b, "job-")
    if b.p(0.3) or not out:
        out[k("owner_references")] = frag_owner_references(b)
    b.feat("job_metadata")
    return out


def sec_job_spec_config(b: Builder) -> dict:
    k = b.style()
    out: dict = {}
    if b.p(0.5):
        b.feat("ttl")
        out[k("ttl_seconds_after_finished")] = b.choice([0, 600, 3600, 7200])
    if b.p(0.5):
        b.feat("backoff_limit")
        out[k("backoff_limit")] = b.choice([0, 1, 3, 6])
    if b.p(0.4) or not out:
        b.feat("active_deadline_seconds")
        out[k("active_deadline_seconds")] = b.choice([600, 3600, 86400])
    if b.p(0.1):
        b.feat("job_spec_template_ignored")
        out["template"] = {"spec": {"affinity": copy.deepcopy(SEED_HOSTNAME_AFFINITY)}}
    b.feat("job_spec_config")
    return out


def sec_job_config(b: Builder) -> dict:
    b.feat("job_config")
    if b.p(0.5):
        return {"metadata": {"annotations": {"ignored": "job_config.metadata is overwritten"}}}
    return {"status": {}}


SECTION_GENERATORS = {
    "container_config": sec_container_config,
    "pod_template_spec_metadata": sec_pod_template_spec_metadata,
    "pod_spec_config": sec_pod_spec_config,
    "job_config": sec_job_config,
    "job_metadata": sec_job_metadata,
    "job_spec_config": sec_job_spec_config,
}


def frag_raw_k8s_config(b: Builder, *, sections=None, max_sections: int = 3,
                        exclude=()) -> dict:
    names = [s for s in SECTION_GENERATORS if s not in exclude]
    if sections is None:
        weights = {"job_config": 0.1}
        sections = [s for s in names if b.p(weights.get(s, 0.45))][:max_sections] or [b.choice(names)]
    return {s: SECTION_GENERATORS[s](b) for s in sections}


def frag_type_coercion(b: Builder) -> dict:
    """Values the kubernetes model layer coerces (int(), str(), bool())."""
    b.feat("type_coercion")
    k = b.style()
    return b.choice([
        {"job_spec_config": {k("backoff_limit"): "2"}},
        {"job_spec_config": {k("ttl_seconds_after_finished"): 600.0}},
        {"pod_template_spec_metadata": {"labels": {"numeric-label": 7}}},
        {"pod_spec_config": {k("termination_grace_period_seconds"): "30"}},
        {"container_config": {"resources": {"limits": {"cpu": 1.0, "memory": 1e9}}}},
    ])


# ------------------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------------------

JOB_NAMES = ["my_job", "example_job", "daily_etl", "ingest_orders"]
ODD_JOB_NAMES = [
    ("long_job_name", "a_really_long_job_name_" + "x" * 50),
    ("long_job_name", "J" * 63),
    ("long_job_name", "partition_backfill_job_for_the_customer_orders_warehouse_v2_final_1"),
    ("odd_job_name", "data_pipeline.v2"),
    ("odd_job_name", "__private_job__"),
    ("odd_job_name", "-leading-dash"),
    ("odd_job_name", "trailing.dot."),
    ("odd_job_name", "_-.x.-_"),
    ("odd_job_name", "job with spaces"),
    ("unicode_name", "数据管道_job"),
    ("unicode_name", "ünïcödé_job_" + "é" * 60),
    ("odd_job_name", "UPPER_case_Job"),
    ("odd_job_name", "..."),
]
LOCATION_NAMES = ["k8s-example-user-code-1", "analytics", "user_code"]
ODD_LOCATION_NAMES = ["my location!", "loc_" + "z" * 70, "équipe-données", "__loc__"]
OP_NAMES = ["my_op", "example_one", "load_table", "transform"]
ODD_OP_NAMES = [
    ("long_op_name", "compute_something_with_a_very_long_descriptive_op_name_" + "y" * 20),
    ("odd_op_name", "process_chunk[chunk_0]"),
    ("odd_op_name", "outer_graph.inner_op"),
    ("odd_op_name", "_leading_underscore"),
    ("unicode_name", "opé_ü"),
    ("odd_op_name", "op.-_"),
]
IMAGES = ["docker.io/dagster/user-code-example:1.1.9", "registry.example.com/team/etl:2024.05.1",
          "ghcr.io/acme/pipelines@sha256:" + "ab" * 32, "localhost:5000/dev:latest"]


def pick_job_name(b: Builder) -> str:
    if b.p(0.15):
        feat, name = b.choice(ODD_JOB_NAMES)
        b.feat(feat)
        return name
    return b.choice(JOB_NAMES)


def pick_location(b: Builder) -> str | None:
    r = b.rng.random()
    if r < 0.2:
        return None
    b.feat("code_location")
    if r < 0.28:
        b.feat("odd_location_name")
        return b.choice(ODD_LOCATION_NAMES)
    return b.choice(LOCATION_NAMES)


def pick_op(b: Builder) -> str:
    if b.p(0.2):
        feat, name = b.choice(ODD_OP_NAMES)
        b.feat(feat)
        return name
    return b.choice(OP_NAMES)


# ------------------------------------------------------------------------------------------------
# Launcher configs
# ------------------------------------------------------------------------------------------------

GENEROUS_ALLOWLIST = {
    "container_config": ["env", "env_from", "resources", "volume_mounts", "security_context", "command",
                         "args", "working_dir", "image_pull_policy", "ports", "image", "readiness_probe",
                         "name"],
    "pod_spec_config": ["affinity", "tolerations", "node_selector", "security_context", "containers",
                        "init_containers", "volumes", "image_pull_secrets", "service_account_name",
                        "scheduler_name", "termination_grace_period_seconds", "priority_class_name",
                        "automount_service_account_token", "dns_policy", "restart_policy", "host_aliases"],
    "pod_template_spec_metadata": ["labels", "annotations"],
    "job_metadata": ["labels", "annotations", "owner_references"],
    "job_spec_config": ["ttl_seconds_after_finished", "backoff_limit", "active_deadline_seconds", "template"],
}


def gen_env_vars(b: Builder) -> list[str]:
    out = []
    for i in range(b.rng.randint(1, 3)):
        r = b.rng.random()
        if r < 0.45:
            b.feat("env_vars_kv")
            out.append(b.choice(["STAGE=prod", "EMPTY=", "URL=postgres://u:p@h/db?x=1", "EQ=a=b=c"]))
        else:
            b.feat("env_vars_from_env")
            name = b.var("PASSTHRU")
            b.env[name] = b.choice(["from-launcher-env", "", "spaces and ü"])
            out.append(name)
    return out


def gen_k8s_launcher_config(b: Builder) -> dict:
    cfg: dict[str, Any] = {
        "instance_config_map": b.src("dagster-instance", "ICM"),
        "service_account_name": b.src(b.choice(["dagster", "dagster-run-sa"]), "SA"),
    }
    if b.p(0.8):
        cfg["postgres_password_secret"] = b.src("dagster-postgresql-secret", "PGSECRET")
    if b.p(0.3):
        b.feat("dagster_home")
        cfg["dagster_home"] = b.src(b.choice(["/opt/dagster/dagster_home", "/opt/dagster/home2"]), "HOME")
    if b.p(0.5):
        cfg["job_image"] = b.src(b.choice(IMAGES), "IMAGE")
        b.feat("job_image")
    if b.p(0.5):
        b.feat("image_pull_policy")
        cfg["image_pull_policy"] = b.src(b.choice(["Always", "IfNotPresent", "Never"]), "IPP")
    if b.p(0.25):
        b.feat("image_pull_secrets")
        cfg["image_pull_secrets"] = [{"name": b.src("regcred", "IPS", prob=0.3, in_array=True)}]
    if b.p(0.25):
        b.feat("load_incluster_config_false")
        cfg["load_incluster_config"] = False
        if b.p(0.5):
            cfg["kubeconfig_file"] = "/home/dagster/.kube/config"
    elif b.p(0.2):
        cfg["load_incluster_config"] = True
    if b.p(0.5):
        b.feat("job_namespace")
        cfg["job_namespace"] = b.src(b.choice(["dagster", "dagster-system", "runs"]), "NS")
    if b.p(0.4):
        b.feat("env_config_maps")
        cfg["env_config_maps"] = [b.src(n, "CM", prob=0.3, in_array=True)
                                  for n in b.sample(["dagster-pipeline-env", "shared-env", "team-env"],
                                                    b.rng.randint(1, 2))]
    if b.p(0.3):
        b.feat("env_secrets")
        cfg["env_secrets"] = [b.src(n, "SECRET", prob=0.3, in_array=True)
                              for n in b.sample(["db-creds", "api-keys"], b.rng.randint(1, 2))]
    if b.p(0.4):
        cfg["env_vars"] = gen_env_vars(b)
    if b.p(0.4):
        vols, mounts = frag_volumes(b)
        if b.p(0.85):
            cfg["volumes"] = vols
        if b.p(0.85):
            cfg["volume_mounts"] = mounts
    if b.p(0.35):
        cfg["labels"] = frag_labels(b)
    if b.p(0.3):
        b.feat("fail_pod_on_run_failure")
        cfg["fail_pod_on_run_failure"] = b.p(0.7)
    if b.p(0.35):
        cfg["resources"] = frag_resources(b)
    if b.p(0.2):
        b.feat("scheduler_name")
        cfg["scheduler_name"] = b.src(b.choice(["volcano", "default-scheduler"]), "SCHED")
    if b.p(0.25):
        cfg["security_context"] = frag_container_security_context(b)
    if b.p(0.5):
        b.feat("launcher_run_k8s_config")
        cfg["run_k8s_config"] = frag_raw_k8s_config(b)
    if b.p(0.05):
        b.feat("k8s_api_ssl_ca_cert_file")
        cfg["k8s_api_ssl_ca_cert_file"] = "/etc/ssl/certs/cluster-ca.crt"
    return cfg


def gen_container_context(b: Builder) -> dict:
    b.feat("container_context")
    cc: dict[str, Any] = {}
    if b.p(0.35):
        b.feat("cc_env_vars")
        cc["env_vars"] = gen_env_vars(b)
    if b.p(0.1):
        b.feat("cc_other_platform")
        cc["docker"] = {"env_vars": ["IGNORED=1"]}
    if b.p(0.85) or not cc:
        k8s: dict[str, Any] = {}
        if b.p(0.4):
            b.feat("cc_namespace")
            k8s["namespace"] = b.src(b.choice(["team-a", "dagster-system"]), "CCNS")
        if b.p(0.3):
            b.feat("env_config_maps")
            k8s["env_config_maps"] = [b.src("user-code-env", "CCCM", prob=0.2, in_array=True)]
        if b.p(0.2):
            b.feat("env_secrets")
            k8s["env_secrets"] = ["user-code-secret"]
        if b.p(0.2):
            k8s["env_vars"] = gen_env_vars(b)
        if b.p(0.3):
            b.feat("cc_env")
            k8s["env"] = frag_env(b)
        if b.p(0.25):
            vols, mounts = frag_volumes(b, 1)
            k8s["volumes"], k8s["volume_mounts"] = vols, mounts
        if b.p(0.25):
            k8s["labels"] = frag_labels(b)
        if b.p(0.25):
            k8s["resources"] = frag_resources(b)
        if b.p(0.2):
            b.feat("image_pull_policy")
            k8s["image_pull_policy"] = b.choice(["Always", "IfNotPresent"])
        if b.p(0.15):
            b.feat("image_pull_secrets")
            k8s["image_pull_secrets"] = [{"name": "user-regcred"}]
        if b.p(0.2):
            b.feat("service_account_name")
            k8s["service_account_name"] = b.src("user-code-sa", "CCSA")
        if b.p(0.1):
            b.feat("scheduler_name")
            k8s["scheduler_name"] = "user-scheduler"
        if b.p(0.15):
            k8s["security_context"] = frag_container_security_context(b)
        if b.p(0.4):
            b.feat("cc_run_k8s_config")
            rk = frag_raw_k8s_config(b, max_sections=2)
            mb = b.rng.random()
            if mb < 0.3:
                b.feat("cc_merge_shallow")
                rk["merge_behavior"] = "SHALLOW"
            elif mb < 0.5:
                b.feat("cc_merge_deep")
                rk["merge_behavior"] = "DEEP"
            k8s["run_k8s_config"] = rk
        if b.p(0.1):
            b.feat("cc_server_config_ignored")
            k8s["server_k8s_config"] = {"container_config": {"env": [{"name": "SERVER_ONLY", "value": "1"}]}}
            k8s["server_replica_count"] = 2
        cc["k8s"] = k8s
    return cc


def gen_tag_config(b: Builder, exclude=()) -> dict:
    b.feat("tag_config")
    cfg = frag_raw_k8s_config(b, exclude=exclude)
    r = b.rng.random()
    if r < 0.3:
        b.feat("tag_merge_shallow")
        cfg["merge_behavior"] = "SHALLOW"
    elif r < 0.5:
        b.feat("tag_merge_deep")
        cfg["merge_behavior"] = "DEEP"
    else:
        b.feat("tag_merge_absent")
    return cfg


def gen_resource_requirements_tag(b: Builder) -> str:
    b.feat("resource_requirements_tag")
    return json.dumps(frag_resources(b, allow_numeric=False))


def gen_run_tags(b: Builder, allow_merge: bool = True, exclude=()) -> dict:
    tags = {}
    if b.p(0.3):
        tags["team"] = "data"
    if b.p(0.5):
        cfg = gen_tag_config(b, exclude=exclude)
        if not allow_merge:
            cfg.pop("merge_behavior", None)
        if b.p(0.05):
            cfg.update(frag_type_coercion(b))
        tags["dagster-k8s/config"] = json.dumps(cfg)
    if b.p(0.1):
        tags["dagster-k8s/resource_requirements"] = gen_resource_requirements_tag(b)
    return tags


def _tag_config(tags: dict) -> dict:
    return json.loads(tags.get("dagster-k8s/config", "{}"))


def _set_tag_config(tags: dict, cfg: dict) -> None:
    tags["dagster-k8s/config"] = json.dumps(cfg)


# ------------------------------------------------------------------------------------------------
# K8sRunLauncher run cases
# ------------------------------------------------------------------------------------------------

K8S_RUN_ERRORS = [
    "unknown_k8s_key", "camel_and_snake", "incluster_with_kubeconfig", "launcher_unknown_key",
    "env_source_unset", "env_vars_unset", "seed_resources", "allowlist_violation", "no_image",
    "service_account_missing", "service_account_null", "tag_unknown_section", "tag_invalid_json",
    "deployment_name_value_from", "env_without_name", "launcher_label_not_str",
    "resource_requirements_invalid", "instance_config_map_missing", "cc_env_vars_unset",
    "cc_unknown_key",
]


def run_case_k8s(b: Builder, error: str | None) -> dict:
    b.feat("kind:k8s_run")
    cfg = gen_k8s_launcher_config(b)
    job_name = pick_job_name(b)
    location = pick_location(b)
    image = b.choice(IMAGES) if b.p(0.7) else None
    if image:
        b.feat("origin_image")
    cc = gen_container_context(b) if b.p(0.4) else None
    tags = gen_run_tags(b)

    # allowlists
    allow_mode = None
    if error == "allowlist_violation":
        allow_mode = "violate"
    elif b.p(0.08):
        allow_mode = "pass"
    if allow_mode:
        k = b.style()
        allow: dict[str, Any] = {sec: {k(f): True for f in fields} for sec, fields in GENEROUS_ALLOWLIST.items()}
        allow["namespace"] = True
        if allow_mode == "pass":
            b.feat("allowlist_fields_pass")
            # job_config can never be allowlisted: keep it out of the user layer
            tc = _tag_config(tags)
            tc.pop("job_config", None)
            if tags.get("dagster-k8s/config"):
                _set_tag_config(tags, tc)
            if cc and "k8s" in cc and "run_k8s_config" in cc["k8s"]:
                cc["k8s"]["run_k8s_config"].pop("job_config", None)
        else:
            b.feat("allowlist_fields_violate")
            violation = b.choice(["priority_class", "namespace", "section"])
            if violation == "namespace":
                allow["namespace"] = False
                cc = cc or {}
                cc.setdefault("k8s", {})["namespace"] = "not-allowed-ns"
                b.feat("cc_namespace", "container_context")
            elif violation == "section":
                allow.pop("pod_spec_config")
                tc = _tag_config(tags)
                tc.setdefault("pod_spec_config", {})["node_selector"] = {"pool": "forbidden"}
                _set_tag_config(tags, tc)
                b.feat("tag_config")
            else:
                tc = _tag_config(tags)
                tc.setdefault("pod_spec_config", {})["runtimeClassName"] = "gvisor"
                _set_tag_config(tags, tc)
                b.feat("tag_config")
        cfg["only_allow_user_defined_k8s_config_fields"] = allow
    if b.p(0.08):
        b.feat("allowlist_env_vars")
        cfg["only_allow_user_defined_env_vars"] = b.sample(ENV_NAMES, 3)

    run = {
        "run_id": b.uuid(),
        "job_name": job_name,
        "location_name": location,
        "image": image,
        "container_context": cc,
        "tags": tags,
        "resume_attempt": 0,
    }
    if b.p(0.1):
        b.feat("resume")
        run["resume_attempt"] = b.rng.randint(1, 3)

    # make sure a valid case has an image somewhere
    has_image = image or cfg.get("job_image") or _tag_config(tags).get("container_config", {}).get("image") \
        or (cfg.get("run_k8s_config", {}).get("container_config", {}).get("image"))
    if not has_image and error != "no_image":
        run["image"] = b.choice(IMAGES)
        b.feat("origin_image")

    if error:
        apply_k8s_run_error(b, error, cfg, run)
    run["args"] = h.run_worker_args("K8sRunLauncher", cfg, run)
    return {"kind": "run", "launcher_class": "K8sRunLauncher", "launcher": cfg, "run": run}


def apply_k8s_run_error(b: Builder, error: str, cfg: dict, run: dict) -> None:
    tags = run["tags"]
    b.feat(f"error:{error}")
    if error == "unknown_k8s_key":
        where = b.choice(["tag", "launcher", "cc"])
        bad = {"container_config": {"bogusField": 1}} if b.p(0.5) else {"pod_spec_config": {"nodeSelectorz": {"a": "b"}}}
        if where == "tag":
            tc = _tag_config(tags)
            tc.update(bad)
            _set_tag_config(tags, tc)
        elif where == "launcher":
            cfg.setdefault("run_k8s_config", {}).update(bad)
        else:
            run["container_context"] = {"k8s": {"run_k8s_config": bad}}
    elif error == "camel_and_snake":
        tc = _tag_config(tags)
        tc["pod_spec_config"] = {"nodeSelector": {"a": "b"}, "node_selector": {"a": "c"}}
        _set_tag_config(tags, tc)
    elif error == "incluster_with_kubeconfig":
        cfg["load_incluster_config"] = True
        cfg["kubeconfig_file"] = "/home/dagster/.kube/config"
    elif error == "launcher_unknown_key":
        cfg[b.choice(["job_namspace", "max_concurrent", "envVars"])] = "x"
    elif error == "env_source_unset":
        cfg["job_namespace"] = {"env": "RUNWAY_UNSET_NAMESPACE_VAR"}
    elif error == "env_vars_unset":
        cfg["env_vars"] = ["RUNWAY_UNSET_PASSTHROUGH"]
    elif error == "seed_resources":
        cfg.setdefault("run_k8s_config", {})["container_config"] = {"resources": {"cpu": "100m", "memory": "128Mi"}}
    elif error == "no_image":
        run["image"] = None
        cfg.pop("job_image", None)
        for d in (cfg.get("run_k8s_config", {}).get("container_config", {}),):
            d.pop("image", None)
        tc = _tag_config(tags)
        if tc.get("container_config", {}).pop("image", None) is not None:
            _set_tag_config(tags, tc)
        cc = run.get("container_context") or {}
        cc.get("k8s", {}).get("run_k8s_config", {}).get("container_config", {}).pop("image", None)
    elif error == "service_account_missing":
        cfg.pop("service_account_name", None)
    elif error == "service_account_null":
        cfg["service_account_name"] = None
    elif error == "tag_unknown_section":
        tc = _tag_config(tags)
        tc["server_k8s_config"] = {}
        _set_tag_config(tags, tc)
    elif error == "tag_invalid_json":
        tags["dagster-k8s/config"] = "{container_config: not json"
    elif error == "deployment_name_value_from":
        tc = _tag_config(tags)
        tc.setdefault("container_config", {})["env"] = [
            {"name": "DAGSTER_CLOUD_DEPLOYMENT_NAME",
             "valueFrom": {"configMapKeyRef": {"name": "deploy", "key": "name"}}}]
        _set_tag_config(tags, tc)
        cfg.pop("only_allow_user_defined_env_vars", None)  # would filter the entry out first
    elif error == "env_without_name":
        tc = _tag_config(tags)
        tc["container_config"] = {"env": [{"value": "nameless"}]}
        _set_tag_config(tags, tc)
    elif error == "launcher_label_not_str":
        cfg["labels"] = {"replicas": 3}
    elif error == "resource_requirements_invalid":
        tags["dagster-k8s/resource_requirements"] = json.dumps({"limits": {"cpu": "1"}, "cpu": "1"})
    elif error == "instance_config_map_missing":
        cfg.pop("instance_config_map")
    elif error == "cc_env_vars_unset":
        run["container_context"] = {"env_vars": ["RUNWAY_UNSET_CC_VAR"]}
    elif error == "cc_unknown_key":
        run["container_context"] = {"k8s": {"namespace": "x", "bogus_key": 1}}
    elif error == "allowlist_violation":
        pass  # set up together with the allowlist in run_case_k8s
    else:
        raise ValueError(error)


# ------------------------------------------------------------------------------------------------
# CeleryK8sRunLauncher configs and run cases
# ------------------------------------------------------------------------------------------------


def gen_celery_launcher_config(b: Builder) -> dict:
    helm_style = b.p(0.4)
    if helm_style:
        b.feat("helm_env_sources")
        for name, value in [("DAGSTER_HOME", "/opt/dagster/dagster_home"),
                            ("DAGSTER_K8S_INSTANCE_CONFIG_MAP", "dagster-instance"),
                            ("DAGSTER_K8S_PG_PASSWORD_SECRET", "dagster-postgresql-secret"),
                            ("DAGSTER_CELERY_BROKER_URL", "pyamqp://test:test@dagster-rabbitmq:5672//"),
                            ("DAGSTER_CELERY_BACKEND_URL", "rpc://"),
                            ("DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP", "dagster-pipeline-env")]:
            b.env[name] = value
        cfg: dict[str, Any] = {
            "dagster_home": {"env": "DAGSTER_HOME"},
            "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
            "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
            "broker": {"env": "DAGSTER_CELERY_BROKER_URL"},
            "backend": {"env": "DAGSTER_CELERY_BACKEND_URL"},
            "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"}],
        }
        b.feat("env_source", "env_source_in_array", "env_config_maps")
    else:
        cfg = {
            "dagster_home": b.src("/opt/dagster/dagster_home", "HOME"),
            "instance_config_map": b.src("dagster-instance", "ICM"),
            "postgres_password_secret": b.src("dagster-postgresql-secret", "PGSECRET"),
        }
        if b.p(0.5):
            cfg["broker"] = b.src("redis://:pass@dagster-redis-master:6379/0", "BROKER")
        if b.p(0.3):
            cfg["backend"] = "redis://:pass@dagster-redis-master:6379/0"
        if b.p(0.4):
            b.feat("env_config_maps")
            cfg["env_config_maps"] = [b.src("dagster-pipeline-env", "CM", prob=0.3, in_array=True)]
    if b.p(0.2):
        cfg["include"] = ["my_module"]
    if b.p(0.15):
        cfg["config_source"] = {"worker_concurrency": 2, "task_acks_late": True}
    if b.p(0.3):
        r = b.choice(["enabled", "disabled"])
        b.feat(f"retries_{r}")
        cfg["retries"] = {r: {}}
    if b.p(0.3):
        b.feat("env_secrets")
        cfg["env_secrets"] = [b.src("dagster-celery-config-secret", "SECRET", prob=0.3, in_array=True)]
    if b.p(0.3):
        vols, mounts = frag_volumes(b)
        cfg["volumes"], cfg["volume_mounts"] = vols, mounts
    if b.p(0.5):
        b.feat("service_account_name")
        cfg["service_account_name"] = b.src("dagster", "SA")
    if b.p(0.4):
        b.feat("image_pull_policy")
        cfg["image_pull_policy"] = b.choice(["Always", "IfNotPresent"])
    if b.p(0.3):
        b.feat("image_pull_secrets")
        cfg["image_pull_secrets"] = copy.deepcopy(SEED_IMAGE_PULL_SECRETS)
    if b.p(0.4):
        b.feat("celery_labels")
        cfg["labels"] = frag_labels(b)
    if b.p(0.2):
        b.feat("fail_pod_on_run_failure")
        cfg["fail_pod_on_run_failure"] = True
    if b.p(0.4):
        b.feat("job_namespace")
        cfg["job_namespace"] = b.src(SEED_NAMESPACE, "NS")
    if b.p(0.1):
        b.feat("load_incluster_config_false")
        cfg["load_incluster_config"] = False
        cfg["kubeconfig_file"] = "/home/dagster/.kube/config"
    return cfg


def gen_executor_config(b: Builder, *, for_step: bool) -> dict:
    ex: dict[str, Any] = {}
    if b.p(0.6):
        b.feat("celery_job_image")
        ex["job_image"] = b.src(b.choice(IMAGES), "EXIMAGE", prob=0.2)
    if b.p(0.4):
        b.feat("celery_job_namespace")
        ex["job_namespace"] = b.src(b.choice(["celery-runs", SEED_NAMESPACE]), "EXNS", prob=0.3)
    if b.p(0.3):
        b.feat("image_pull_policy")
        ex["image_pull_policy"] = b.choice(["Always", "IfNotPresent", "Never"])
    elif b.p(0.04):
        b.feat("celery_pull_policy_null")
        ex["image_pull_policy"] = None
    if b.p(0.3):
        b.feat("celery_list_concat", "image_pull_secrets")
        ex["image_pull_secrets"] = [{"name": "executor-regcred"}]
    if b.p(0.3):
        b.feat("service_account_name")
        ex["service_account_name"] = "executor-sa"
    if b.p(0.4):
        b.feat("celery_list_concat", "env_config_maps")
        ex["env_config_maps"] = [b.src("executor-env", "EXCM", prob=0.3, in_array=True)]
    if b.p(0.3):
        b.feat("celery_list_concat", "env_secrets")
        ex["env_secrets"] = ["executor-secret"]
    if b.p(0.3):
        vols, mounts = frag_volumes(b, 1)
        ex["volumes"], ex["volume_mounts"] = vols, mounts
        b.feat("celery_list_concat")
    if b.p(0.3):
        b.feat("celery_labels")
        ex["labels"] = frag_labels(b, "exec-")
    if b.p(0.15):
        b.feat("celery_ignored_fields")
        ex["env_vars"] = ["IGNORED=1"]
        ex["resources"] = {"limits": {"cpu": "4"}}
        ex["scheduler_name"] = "ignored"
        ex["security_context"] = {"runAsUser": 0}
    if b.p(0.2):
        ex["broker"] = "pyamqp://guest@rabbit:5672//"
    if b.p(0.2):
        r = b.choice(["enabled", "disabled"])
        b.feat("executor_retries_ignored")
        ex["retries"] = {r: {}}
    if b.p(0.15):
        b.feat("load_incluster_config_false")
        ex["load_incluster_config"] = False
        if b.p(0.5):
            ex["kubeconfig_file"] = "/home/dagster/.kube/config"
    if b.p(0.15):
        ex["job_wait_timeout"] = b.choice([600.0, 3600, 86400.0])
    if b.p(0.1):
        ex["repo_location_name"] = "k8s-example-user-code-1"
    return ex


CELERY_RUN_ERRORS = [
    "init_rejects_key", "postgres_password_secret_missing", "incluster_with_kubeconfig",
    "broker_env_unset", "executor_unknown_key", "no_image", "tag_unknown_k8s_key",
    "executor_pull_secrets_null", "seed_resources",
]
INIT_REJECTED_KEYS = {
    "job_image": "docker.io/dagster/user-code-example:1.1.9",
    "env_vars": ["A=1"],
    "resources": {"limits": {"cpu": "1"}},
    "run_k8s_config": {"container_config": {}},
    "scheduler_name": "volcano",
    "security_context": {"runAsUser": 1000},
    "only_allow_user_defined_env_vars": ["A"],
    "only_allow_user_defined_k8s_config_fields": {"namespace": True},
}


def run_case_celery(b: Builder, error: str | None) -> dict:
    b.feat("kind:celery_run")
    cfg = gen_celery_launcher_config(b)
    job_name = pick_job_name(b)
    location = pick_location(b)
    image = b.choice(IMAGES) if b.p(0.6) else None
    if image:
        b.feat("origin_image")
    ex = gen_executor_config(b, for_step=False)
    tags = gen_run_tags(b, allow_merge=True)
    run_config: dict[str, Any] = {}
    shape = b.rng.random()
    if shape < 0.2:
        b.feat("celery_legacy_run_config")
        run_config = {"execution": {"celery-k8s": {"config": ex}}}
    elif shape < 0.9 or ex:
        b.feat("celery_run_config")
        run_config = {"execution": {"config": ex}}
    if b.p(0.2):
        run_config["ops"] = {"my_op": {"config": {"x": 1}}}
    if not image and not ex.get("job_image") and error != "no_image":
        image = b.choice(IMAGES)
        b.feat("origin_image")
    if image and ex.get("job_image"):
        b.feat("celery_image_override")
    cc = None
    if b.p(0.15):
        b.feat("celery_container_context_ignored")
        cc = {"k8s": {"env_config_maps": ["ignored-by-celery"], "namespace": "ignored"}}
    run = {
        "run_id": b.uuid(),
        "job_name": job_name,
        "location_name": location,
        "image": image,
        "container_context": cc,
        "tags": tags,
        "resume_attempt": 0,
        "run_config": run_config,
    }
    if error:
        b.feat(f"error:{error}")
        if error == "init_rejects_key":
            key = b.choice(sorted(INIT_REJECTED_KEYS))
            cfg[key] = copy.deepcopy(INIT_REJECTED_KEYS[key])
        elif error == "postgres_password_secret_missing":
            cfg.pop("postgres_password_secret")
        elif error == "incluster_with_kubeconfig":
            cfg["load_incluster_config"] = True
            cfg["kubeconfig_file"] = "/home/dagster/.kube/config"
        elif error == "broker_env_unset":
            cfg["broker"] = {"env": "RUNWAY_UNSET_BROKER_URL"}
        elif error == "executor_unknown_key":
            ex["max_concurrent"] = 4
            run_config["execution"] = {"config": ex}
        elif error == "no_image":
            run["image"] = None
            ex.pop("job_image", None)
            run_config["execution"] = {"config": ex}
        elif error == "tag_unknown_k8s_key":
            tc = _tag_config(tags)
            tc["container_config"] = {"resourcez": {}}
            _set_tag_config(tags, tc)
        elif error == "executor_pull_secrets_null":
            ex["image_pull_secrets"] = None
            run_config["execution"] = {"config": ex}
        elif error == "seed_resources":
            tc = _tag_config(tags)
            tc["container_config"] = {"resources": {"cpu": "300m", "memory": "2048Mi"}}
            _set_tag_config(tags, tc)
            # the legacy resource_requirements tag would replace (and so hide) those resources
            tags.pop("dagster-k8s/resource_requirements", None)
        else:
            raise ValueError(error)
    run["args"] = h.run_worker_args("CeleryK8sRunLauncher", cfg, run)
    return {"kind": "run", "launcher_class": "CeleryK8sRunLauncher", "launcher": cfg, "run": run}


# ------------------------------------------------------------------------------------------------
# Step cases: kwargs of an execute_step_k8s_job message, produced by the real executor code
# ------------------------------------------------------------------------------------------------


class _Publish(BaseException):
    def __init__(self, kwargs, options):
        super().__init__("publish intercepted")
        self.kwargs = kwargs
        self.options = options


@contextlib.contextmanager
def _intercept_publish():
    import celery.canvas

    saved = celery.canvas.Signature.apply_async

    def apply_async(self, args=None, kwargs=None, **options):
        raise _Publish(dict(self.kwargs), options)

    celery.canvas.Signature.apply_async = apply_async
    try:
        yield
    finally:
        celery.canvas.Signature.apply_async = saved


def celery_step_kwargs(launcher_cfg: dict, executor_cfg: dict, *, run_id: str, job_name: str,
                       origin_image: str | None, step_key: str, op_tags: dict,
                       previous_attempts: dict, run_worker_env: dict) -> dict:
    """The kwargs stock Dagster 1.13 publishes for one step, as a Celery worker decodes them."""
    from dagster._config import process_config
    from dagster._core.execution.plan.state import KnownExecutionState
    from dagster_celery.make_app import make_app
    from dagster_celery_k8s.executor import _submit_task_k8s_job, celery_k8s_job_executor
    from kombu.serialization import dumps, loads

    ref = h.instance_ref_for("CeleryK8sRunLauncher", launcher_cfg)
    with h.process_env(run_worker_env), h.fake_kubernetes():
        launcher = ref.run_launcher  # what the run worker rehydrates from its instance ref
        processed = process_config(celery_k8s_job_executor.config_schema.config_type, executor_cfg)
        if not processed.success:
            raise ValueError(f"invalid executor config: {processed.errors}")
        executor = celery_k8s_job_executor.executor_creation_fn(
            SimpleNamespace(instance=SimpleNamespace(run_launcher=launcher),
                            executor_config=processed.value)
        )
        origin = h.job_python_origin(job_name, origin_image, None)
        plan_context = SimpleNamespace(
            reconstructable_job=SimpleNamespace(get_python_origin=lambda: origin),
            dagster_run=SimpleNamespace(run_id=run_id),
            instance=h.InstanceStandIn(ref),
            executor=executor,
        )
        step = SimpleNamespace(key=step_key, tags=op_tags)
        app = make_app(executor.app_args())
        with _intercept_publish():
            try:
                _submit_task_k8s_job(app, plan_context, step, "dagster", 5,
                                     KnownExecutionState(previous_retry_attempts=previous_attempts))
            except _Publish as published:
                kwargs = published.kwargs
            else:
                raise AssertionError("no publish")
    content_type, encoding, body = dumps(kwargs, serializer="json")
    return loads(body, content_type, encoding)


STEP_ERRORS = ["per_step_unknown_key", "per_step_camel_and_snake", "per_step_seed_resources",
               "per_step_model_type"]


def step_case(b: Builder, error: str | None) -> dict:
    b.feat("kind:step")
    launcher_cfg = gen_celery_launcher_config(b)
    run_worker_env = dict(b.env)
    b.env = {}  # the celery worker's own env (the task reads nothing from it for the Job)
    ex = gen_executor_config(b, for_step=True)
    run_worker_env.update(b.env)
    b.env = {}
    job_name = pick_job_name(b)
    step_key = pick_op(b)
    origin_image = b.choice(IMAGES) if b.p(0.5) else None
    if not ex.get("job_image") and not origin_image:
        if b.p(0.3):
            b.feat("celery_current_image")
            run_worker_env["DAGSTER_CURRENT_IMAGE"] = "docker.io/dagster/user-code-example:current"
        else:
            origin_image = b.choice(IMAGES)
    if ex.get("load_incluster_config") is not False:
        ex.pop("kubeconfig_file", None)
    op_tags = {}
    if b.p(0.55):
        cfg = gen_tag_config(b)
        op_tags["dagster-k8s/config"] = json.dumps(cfg)
        b.feat("op_tag_config")
    if b.p(0.1):
        op_tags["dagster-k8s/resource_requirements"] = gen_resource_requirements_tag(b)
    if b.p(0.2):
        op_tags["dagster-celery/queue"] = "dagster"
    per_step: dict[str, Any] = {}
    if b.p(0.4):
        b.feat("per_step_k8s_config")
        per_step[step_key] = frag_raw_k8s_config(b, max_sections=2)
        if b.p(0.3):
            b.feat("per_step_other_key_ignored")
            per_step["some_other_op"] = {"container_config": {"image": "never-used:1"}}
    previous = {}
    if b.p(0.2):
        b.feat("retry_attempt")
        previous[step_key] = b.rng.randint(1, 4)
    if b.p(0.1):
        previous["upstream_op"] = 1
    if error:
        b.feat(f"error:{error}")
        bad = {
            "per_step_unknown_key": {"container_config": {"resourceLimits": {"cpu": "1"}}},
            "per_step_camel_and_snake": {"pod_spec_config": {"nodeSelector": {"a": "b"}, "node_selector": {"a": "c"}}},
            "per_step_seed_resources": {"container_config": {"resources": {"cpu": "1", "memory": "1Gi"}}},
            "per_step_model_type": {"pod_spec_config": {"tolerations": {"operator": "Exists"}}},
        }[error]
        per_step[step_key] = bad
    if per_step:
        ex["per_step_k8s_config"] = per_step
    kwargs = celery_step_kwargs(
        launcher_cfg, ex, run_id=b.uuid(), job_name=job_name, origin_image=origin_image,
        step_key=step_key, op_tags=op_tags, previous_attempts=previous, run_worker_env=run_worker_env,
    )
    retry_mode = kwargs["execute_step_args_packed"]["retry_mode"]["__enum__"]
    b.feat("retries_disabled" if retry_mode.endswith("DISABLED") else "retries_enabled")
    return {"kind": "step", "task_kwargs": kwargs}


# ------------------------------------------------------------------------------------------------
# Fixed entries (seed deployment, fixtures)
# ------------------------------------------------------------------------------------------------


def _seed_run(tags: dict | None = None) -> dict:
    return {
        "run_id": SEED_RUN_ID,
        "job_name": "example_job",
        "location_name": SEED_USER_DEPLOYMENT["name"],
        "image": SEED_USER_DEPLOYMENT["image"],
        "container_context": seed_container_context(),
        "tags": tags or {},
        "resume_attempt": 0,
    }


def _finish_run_entry(name, launcher_class, cfg, run, env, features, expect) -> dict:
    cfg = json.loads(json.dumps(cfg))
    run = json.loads(json.dumps(run))
    run["args"] = h.run_worker_args(launcher_class, cfg, run)
    case = {"kind": "run", "launcher_class": launcher_class, "launcher": cfg, "run": run}
    return {"name": name, "case": case, "env": dict(env), "features": sorted(features), "expect": expect}


def fixed_entries() -> list[dict]:
    out = []
    seed_features = {"kind:k8s_run", "seed_case", "labels", "resources", "affinity",
                     "env_config_maps", "image_pull_secrets", "image_pull_policy", "container_context",
                     "cc_namespace", "launcher_run_k8s_config", "container_config", "pod_spec_config",
                     "pod_template_spec_metadata", "job_spec_config", "job_metadata", "ttl",
                     "job_spec_template_ignored", "code_location", "origin_image", "camel_keys",
                     "service_account_name", "job_namespace", "dagster_home"}
    env_src = {"env_source", "env_source_in_array"}
    corrected = helm_k8s_run_launcher_config(SEED_K8S_RUN_LAUNCHER_VALUES, corrected=True, env_sources=False)
    tag_features = {"tag_config", "tag_merge_absent", "tolerations", "node_selector", "annotations",
                    "active_deadline_seconds", "env", "snake_keys"}
    out.append(_finish_run_entry(
        "seed_k8s_run_asis", "K8sRunLauncher",
        helm_k8s_run_launcher_config(SEED_K8S_RUN_LAUNCHER_VALUES, corrected=False),
        _seed_run(), SEED_ENV, seed_features | env_src | {"error", "error:seed_resources"}, "error"))
    out.append(_finish_run_entry(
        "seed_k8s_run_env_sources", "K8sRunLauncher",
        helm_k8s_run_launcher_config(SEED_K8S_RUN_LAUNCHER_VALUES, corrected=True),
        _seed_run(), SEED_ENV, seed_features | env_src, "ok"))
    out.append(_finish_run_entry(
        "seed_k8s_run", "K8sRunLauncher", corrected, _seed_run(), {}, seed_features, "ok"))
    out.append(_finish_run_entry(
        "seed_k8s_run_tags", "K8sRunLauncher", corrected,
        _seed_run({"dagster-k8s/config": json.dumps(SEED_TAG_CONFIG)}), {},
        seed_features | tag_features, "ok"))
    out.append(_finish_run_entry(
        "seed_k8s_run_tag_with_seed_resources", "K8sRunLauncher", corrected,
        _seed_run({"dagster-k8s/config": json.dumps({"container_config": {"resources": {"cpu": "1", "memory": "1Gi"}}})}),
        {}, seed_features | {"tag_config", "error", "error:seed_resources"}, "error"))

    # CeleryK8sRunLauncher as the chart renders it (celeryK8sRunLauncher values of the seed) + a
    # run whose executor config is the chart's usual `execution: config:` block.
    celery_env = {
        "DAGSTER_HOME": "/opt/dagster/dagster_home",
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "dagster-instance",
        "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
        "DAGSTER_CELERY_BROKER_URL": "pyamqp://dagsterrabbit:dagsterpass@dagster-rabbitmq:5672//",
        "DAGSTER_CELERY_BACKEND_URL": "rpc://",
        "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": "dagster-pipeline-env",
        "DAGSTER_K8S_PIPELINE_RUN_NAMESPACE": SEED_NAMESPACE,
    }

    def celery_cfg(env_sources: bool) -> dict:
        def src(var):
            return {"env": var} if env_sources else celery_env[var]

        return {
            "dagster_home": src("DAGSTER_HOME"),
            "instance_config_map": src("DAGSTER_K8S_INSTANCE_CONFIG_MAP"),
            "postgres_password_secret": src("DAGSTER_K8S_PG_PASSWORD_SECRET"),
            "broker": src("DAGSTER_CELERY_BROKER_URL"),
            "backend": src("DAGSTER_CELERY_BACKEND_URL"),
            "env_config_maps": [src("DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP")],
            "labels": {"app.aipaas.io/app": "dagster",
                       "app.aipaas.io/component": "celery-k8s-run-launcher",
                       "app.aipaas.io/np.middleware": "allowed"},
            "image_pull_secrets": copy.deepcopy(SEED_IMAGE_PULL_SECRETS),
            "service_account_name": SEED_RELEASE,
            "job_namespace": SEED_NAMESPACE,
        }

    def celery_run(env_sources: bool) -> dict:
        run = dict(_seed_run({"dagster-k8s/config": json.dumps({
            "pod_spec_config": {"affinity": SEED_HOSTNAME_AFFINITY, "tolerations": [{"operator": "Exists"}]},
            "container_config": {"resources": {"limits": {"cpu": "300m", "memory": "2048Mi"},
                                               "requests": {"cpu": "300m", "memory": "2048Mi"}}},
        })}))
        run["container_context"] = None
        run["run_config"] = {"execution": {"config": {
            "job_namespace": {"env": "DAGSTER_K8S_PIPELINE_RUN_NAMESPACE"} if env_sources else SEED_NAMESPACE,
            "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"} if env_sources
                                else "dagster-pipeline-env"],
            "image_pull_policy": "Always",
            "labels": {"exec": "celery"},
        }}}
        return run

    celery_features = {"kind:celery_run", "celery_run_config", "celery_labels", "celery_list_concat",
                       "affinity", "tolerations", "resources", "tag_config", "code_location",
                       "origin_image", "image_pull_secrets", "job_namespace", "celery_job_namespace",
                       "env_config_maps", "service_account_name"}
    out.append(_finish_run_entry("celery_run", "CeleryK8sRunLauncher", celery_cfg(False),
                                 celery_run(False), {}, celery_features, "ok"))
    out.append(_finish_run_entry("celery_run_env_sources", "CeleryK8sRunLauncher", celery_cfg(True),
                                 celery_run(True), celery_env, celery_features | env_src, "ok"))

    # step fixture: the message the celery_run above would publish for op `example_one`
    kwargs = celery_step_kwargs(
        celery_cfg(True),
        {"job_image": SEED_USER_DEPLOYMENT["image"],
         "job_namespace": SEED_NAMESPACE,
         "per_step_k8s_config": {"example_one": {"container_config": {
             "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}}}}}},
        run_id=SEED_RUN_ID, job_name="example_job", origin_image=SEED_USER_DEPLOYMENT["image"],
        step_key="example_one",
        op_tags={"dagster-k8s/config": json.dumps({"pod_spec_config": {"nodeSelector": {"disktype": "ssd"}}})},
        previous_attempts={}, run_worker_env=celery_env,
    )
    out.append({"name": "step_basic", "case": {"kind": "step", "task_kwargs": kwargs}, "env": {},
                "features": sorted({"kind:step", "per_step_k8s_config", "op_tag_config", "resources",
                                    "node_selector", "retries_enabled", "celery_job_image"}),
                "expect": "ok"})
    return out


FIXTURE_NAMES = ["seed_k8s_run", "seed_k8s_run_tags", "step_basic", "celery_run"]


# ------------------------------------------------------------------------------------------------
# Corpus
# ------------------------------------------------------------------------------------------------

# Every ERROR_PERIOD-th generated entry is an invalid case; the invalid cases rotate through all
# (case kind, error) pairs so that each kind of rejection is covered evenly (~8% of the corpus).
ERROR_PERIOD = 12
ERROR_PAIRS = ([("k8s-run", e) for e in K8S_RUN_ERRORS] + [("celery-run", e) for e in CELERY_RUN_ERRORS]
               + [("step", e) for e in STEP_ERRORS])


def generate_entry(seed: int, i: int) -> dict:
    rng = random.Random(f"runway-parity:{seed}:{i}")
    b = Builder(rng)
    r = rng.random()
    kind = "k8s-run" if r < 0.50 else "celery-run" if r < 0.65 else "step"
    error = None
    if i % ERROR_PERIOD == ERROR_PERIOD // 2:
        kind, error = ERROR_PAIRS[(i // ERROR_PERIOD) % len(ERROR_PAIRS)]
    if kind == "k8s-run":
        case = run_case_k8s(b, error)
    elif kind == "celery-run":
        case = run_case_celery(b, error)
    else:
        case = step_case(b, error)
    if error:
        b.feat("error")
    name = f"{i:04d}-{kind}" + (f"-err-{error}" if error else "")
    entry = {"name": name, "case": case, "env": dict(sorted(b.env.items())),
             "features": sorted(b.features), "expect": "error" if error else "ok"}
    return json.loads(json.dumps(entry))  # exactly what a JSON corpus file holds


def generate(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT) -> list[dict]:
    entries = json.loads(json.dumps(fixed_entries()))[:count]
    i = 0
    while len(entries) < count:
        entries.append(generate_entry(seed, i))
        i += 1
    return entries


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="write the parity corpus")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("PARITY_SEED", DEFAULT_SEED)))
    parser.add_argument("--count", type=int, default=int(os.environ.get("PARITY_COUNT", DEFAULT_COUNT)))
    parser.add_argument("--out", help="directory for <name>.json entries (default: print summary)")
    args = parser.parse_args(argv)
    entries = generate(args.seed, args.count)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for e in entries:
            with open(os.path.join(args.out, e["name"] + ".json"), "w", encoding="utf-8") as f:
                json.dump(e, f, indent=1, ensure_ascii=False)
    from collections import Counter

    c = Counter(f for e in entries for f in e["features"])
    for feat, n in sorted(c.items()):
        print(f"{n:6d}  {feat}")
    print(f"{len(entries)} entries, {sum(e['expect'] == 'error' for e in entries)} expected errors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
