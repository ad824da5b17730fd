"""Run cases (K8sRunLauncher, CeleryK8sRunLauncher) and the rejections the corpus covers.

Error kinds: *_ERRORS are rejected by every version this corpus targets (the 1.13 lists are
frozen: they define the 1.13 corpus); *_NEWER_KEY_ERRORS use inputs the newest Dagster accepts and
1.1.9 refuses, so 1.1.9's rejection (and runway's, for the 1.1.9 profile) is what is checked.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from gen_base import IMAGES, Builder, pick_job_name, pick_location
from gen_config import (
    GENEROUS_ALLOWLIST,
    _set_tag_config,
    _tag_config,
    gen_celery_launcher_config,
    gen_container_context,
    gen_executor_config,
    gen_k8s_launcher_config,
    gen_run_tags,
)
from gen_fragments import ENV_NAMES

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
# 1.1.9 mode: the common kinds 0.17.9 rejects too (allowlists and the deployment-name label do
# not exist there), and the newer keys.
K8S_RUN_ERRORS_1_1_9 = [e for e in K8S_RUN_ERRORS if e not in ("allowlist_violation", "deployment_name_value_from")]
K8S_RUN_NEWER_KEY_ERRORS = [
    "ssl_ca_cert_file", "allowlist_fields", "allowlist_env_vars", "launcher_camel_security_context",
    "cc_env", "cc_server_replica_count", "cc_merge_behavior", "cc_server_merge_behavior",
    "cc_camel_security_context", "tag_merge_behavior", "image_only_in_user_config",
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
    elif error == "allowlist_fields" or (b.v.allowlists and b.p(0.08)):
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
    if error == "allowlist_env_vars" or (b.v.allowlists and b.p(0.08)):
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

    # make sure a valid case has an image somewhere (before 0.20.6 the origin's or job_image)
    has_image = image or cfg.get("job_image")
    if b.v.tag_image_launches:
        has_image = has_image or _tag_config(tags).get("container_config", {}).get("image") \
            or (cfg.get("run_k8s_config", {}).get("container_config", {}).get("image"))
    if not has_image and error not in ("no_image", "image_only_in_user_config"):
        run["image"] = b.choice(IMAGES)
        b.feat("origin_image")

    if error in K8S_RUN_NEWER_KEY_ERRORS:
        apply_k8s_run_newer_key(b, error, cfg, run)
    elif error:
        apply_k8s_run_error(b, error, cfg, run)
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


def _cc_k8s(run: dict) -> dict:
    run["container_context"] = run.get("container_context") or {}
    return run["container_context"].setdefault("k8s", {})


def apply_k8s_run_newer_key(b: Builder, error: str, cfg: dict, run: dict) -> None:
    """An input the newest Dagster accepts and 1.1.9 refuses, on an otherwise valid case."""
    tags = run["tags"]
    b.feat(f"error:{error}", "newer_key")
    if error == "ssl_ca_cert_file":
        cfg["k8s_api_ssl_ca_cert_file"] = "/etc/ssl/certs/cluster-ca.crt"
    elif error in ("allowlist_fields", "allowlist_env_vars"):
        pass  # set up in run_case_k8s like the allowlists of the 1.13 corpus
    elif error == "launcher_camel_security_context":
        cfg["security_context"] = {"runAsUser": 1000, "allowPrivilegeEscalation": False}
    elif error == "cc_env":
        _cc_k8s(run)["env"] = [{"name": "CC_ENV", "value": "from-code-location"}]
    elif error == "cc_server_replica_count":
        _cc_k8s(run)["server_replica_count"] = 2
    elif error == "cc_merge_behavior":
        k8s = _cc_k8s(run)
        k8s["run_k8s_config"] = {**(k8s.get("run_k8s_config") or {}), "merge_behavior": b.choice(["DEEP", "SHALLOW"])}
    elif error == "cc_server_merge_behavior":
        _cc_k8s(run)["server_k8s_config"] = {"merge_behavior": "SHALLOW",
                                             "container_config": {"env": [{"name": "SERVER_ONLY", "value": "1"}]}}
    elif error == "cc_camel_security_context":
        _cc_k8s(run)["security_context"] = {"runAsNonRoot": True}
    elif error == "tag_merge_behavior":
        tc = _tag_config(tags)
        tc["merge_behavior"] = b.choice(["DEEP", "SHALLOW"])
        _set_tag_config(tags, tc)
    elif error == "image_only_in_user_config":
        run["image"] = None
        cfg.pop("job_image", None)
        image = "registry.example.com/dagster/override:2.0"
        if b.p(0.5):
            tc = _tag_config(tags)
            tc.setdefault("container_config", {})["image"] = image
            _set_tag_config(tags, tc)
        else:
            cfg.setdefault("run_k8s_config", {}).setdefault("container_config", {})["image"] = image
    else:
        raise ValueError(error)


CELERY_RUN_ERRORS = [
    "init_rejects_key", "postgres_password_secret_missing", "incluster_with_kubeconfig",
    "broker_env_unset", "executor_unknown_key", "no_image", "tag_unknown_k8s_key",
    "executor_pull_secrets_null", "seed_resources",
]
CELERY_RUN_ERRORS_1_1_9 = list(CELERY_RUN_ERRORS)
CELERY_RUN_NEWER_KEY_ERRORS = [
    "celery_launcher_job_namespace", "celery_launcher_ssl_ca_cert_file", "executor_per_step_k8s_config",
    "tag_merge_behavior",
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
        elif error == "celery_launcher_job_namespace":
            cfg["job_namespace"] = "dagster-system"
        elif error == "celery_launcher_ssl_ca_cert_file":
            cfg["k8s_api_ssl_ca_cert_file"] = "/etc/ssl/certs/cluster-ca.crt"
        elif error == "executor_per_step_k8s_config":
            ex["per_step_k8s_config"] = {"my_op": {"container_config": {"resources": {"limits": {"cpu": "1"}}}}}
            run_config["execution"] = {"config": ex}
        elif error == "tag_merge_behavior":
            tc = _tag_config(tags)
            tc["merge_behavior"] = b.choice(["DEEP", "SHALLOW"])
            _set_tag_config(tags, tc)
        else:
            raise ValueError(error)
        if error in CELERY_RUN_NEWER_KEY_ERRORS:
            b.feat("newer_key")
    return {"kind": "run", "launcher_class": "CeleryK8sRunLauncher", "launcher": cfg, "run": run}

