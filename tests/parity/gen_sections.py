"""Raw k8s config sections (container_config, pod_spec_config, ...) for the generated corpus."""

from __future__ import annotations

import copy

from gen_base import Builder
from gen_fragments import (
    frag_affinity,
    frag_annotations,
    frag_container_security_context,
    frag_env,
    frag_env_from,
    frag_labels,
    frag_node_selector,
    frag_owner_references,
    frag_pod_security_context,
    frag_resources,
    frag_sidecars,
    frag_tolerations,
    frag_volumes,
)
from gen_seed import SEED_HOSTNAME_AFFINITY

# Section generators for raw k8s config (container_config etc.).

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

