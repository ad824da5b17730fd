"""Launcher configs, code-location container contexts, run tags and celery executor configs for
the generated corpus, limited to what the target version accepts (`b.v`)."""

from __future__ import annotations

import copy
import json
from typing import Any

from gen_base import IMAGES, Builder
from gen_fragments import (
    frag_container_security_context,
    frag_env,
    frag_labels,
    frag_resources,
    frag_volumes,
)
from gen_sections import frag_raw_k8s_config, frag_type_coercion
from gen_seed import SEED_IMAGE_PULL_SECRETS, SEED_NAMESPACE

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
        cfg["security_context"] = frag_container_security_context(b, as_field=True)
    if b.p(0.5):
        b.feat("launcher_run_k8s_config")
        cfg["run_k8s_config"] = frag_raw_k8s_config(b)
    if b.v.ssl_ca_cert_file and b.p(0.05):
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
        if b.v.cc_env and b.p(0.3):
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
            k8s["security_context"] = frag_container_security_context(b, as_field=True)
        if b.p(0.4):
            b.feat("cc_run_k8s_config")
            rk = frag_raw_k8s_config(b, max_sections=2)
            mb = b.rng.random() if b.v.merge_behavior else 1.0
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
            if b.v.cc_server_replica_count:
                k8s["server_replica_count"] = 2
        cc["k8s"] = k8s
    return cc


def gen_tag_config(b: Builder, exclude=()) -> dict:
    b.feat("tag_config")
    cfg = frag_raw_k8s_config(b, exclude=exclude)
    r = b.rng.random() if b.v.merge_behavior else 1.0
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
# CeleryK8sRunLauncher and celery_k8s_job_executor configs
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
    if b.v.celery_launcher_job_namespace and b.p(0.4):
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

