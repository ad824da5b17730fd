"""The seed deployment (Dagster 1.1.9 Helm values) as data, and the corpus's fixed entries built
from it (the first entries of every corpus; four of the 1.13 ones are the committed fixtures)."""

from __future__ import annotations

import copy
import json
from typing import Any

from gen_base import ACCEPTS_1_13, Accepts

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
# Fixed entries (seed deployment, fixtures). Skeletons: gen_cases completes them with the target
# Dagster (run.args, task_kwargs).
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


def _run_entry(name, launcher_class, cfg, run, env, features, expect) -> dict:
    cfg = json.loads(json.dumps(cfg))
    run = json.loads(json.dumps(run))
    case = {"kind": "run", "launcher_class": launcher_class, "launcher": cfg, "run": run}
    return {"name": name, "case": case, "env": dict(env), "features": sorted(features), "expect": expect}
def fixed_entries(accepts: Accepts = ACCEPTS_1_13) -> list[dict]:
    """The seed deployment's cases for the target version (skeletons). For 1.1.9 the celery
    launcher has no `job_namespace` (its chart did not render one; 0.17.9 refuses it, which is
    kept as an expected rejection) and the step has no per_step_k8s_config."""
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
    out.append(_run_entry(
        "seed_k8s_run_asis", "K8sRunLauncher",
        helm_k8s_run_launcher_config(SEED_K8S_RUN_LAUNCHER_VALUES, corrected=False),
        _seed_run(), SEED_ENV, seed_features | env_src | {"error", "error:seed_resources"}, "error"))
    out.append(_run_entry(
        "seed_k8s_run_env_sources", "K8sRunLauncher",
        helm_k8s_run_launcher_config(SEED_K8S_RUN_LAUNCHER_VALUES, corrected=True),
        _seed_run(), SEED_ENV, seed_features | env_src, "ok"))
    out.append(_run_entry(
        "seed_k8s_run", "K8sRunLauncher", corrected, _seed_run(), {}, seed_features, "ok"))
    out.append(_run_entry(
        "seed_k8s_run_tags", "K8sRunLauncher", corrected,
        _seed_run({"dagster-k8s/config": json.dumps(SEED_TAG_CONFIG)}), {},
        seed_features | tag_features, "ok"))
    out.append(_run_entry(
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
            **({"job_namespace": SEED_NAMESPACE} if accepts.celery_launcher_job_namespace else {}),
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
    out.append(_run_entry("celery_run", "CeleryK8sRunLauncher", celery_cfg(False),
                                 celery_run(False), {}, celery_features, "ok"))
    out.append(_run_entry("celery_run_env_sources", "CeleryK8sRunLauncher", celery_cfg(True),
                                 celery_run(True), celery_env, celery_features | env_src, "ok"))

    if not accepts.celery_launcher_job_namespace and accepts.newer_key_errors:
        cfg = {**celery_cfg(False), "job_namespace": SEED_NAMESPACE}  # as the current chart renders it
        out.append(_run_entry("celery_run_launcher_job_namespace", "CeleryK8sRunLauncher", cfg,
                              celery_run(False), {},
                              celery_features | {"error", "error:celery_launcher_job_namespace", "newer_key"},
                              "error"))

    # step fixture: the message the celery_run above would publish for op `example_one`
    executor: dict[str, Any] = {"job_image": SEED_USER_DEPLOYMENT["image"], "job_namespace": SEED_NAMESPACE}
    step_features = {"kind:step", "op_tag_config", "node_selector", "retries_enabled", "celery_job_image"}
    if accepts.per_step_k8s_config:
        executor["per_step_k8s_config"] = {"example_one": {"container_config": {
            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}}}}}
        step_features |= {"per_step_k8s_config", "resources"}
    pending = {
        "launcher_cfg": celery_cfg(True), "executor_cfg": executor, "run_id": SEED_RUN_ID,
        "job_name": "example_job", "origin_image": SEED_USER_DEPLOYMENT["image"],
        "step_key": "example_one",
        "op_tags": {"dagster-k8s/config": json.dumps({"pod_spec_config": {"nodeSelector": {"disktype": "ssd"}}})},
        "previous_attempts": {}, "run_worker_env": celery_env,
    }
    out.append({"name": "step_basic", "case": {"kind": "step", "pending": pending}, "env": {},
                "features": sorted(step_features), "expect": "ok"})
    if not accepts.common_errors:
        out = [e for e in out if e["expect"] == "ok"]
    return json.loads(json.dumps(out))


FIXTURE_NAMES = ["seed_k8s_run", "seed_k8s_run_tags", "step_basic", "celery_run"]
