"""What the parity corpus of each Dagster version must cover: the feature tags (each in
at least MIN_PER_FEATURE entries at the default size) and the share of each kind of case
and of expected errors."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gen_cases  # noqa: E402

# Feature tags the corpus must cover (with at least MIN_PER_FEATURE entries at the default size).
REQUIRED_FEATURES = [
    "kind:k8s_run", "kind:celery_run", "kind:step", "seed_case",
    "labels", "env", "env_from", "env_config_maps", "env_secrets", "env_vars_kv", "env_vars_from_env",
    "env_value_from", "cc_env", "volumes", "volume_mounts", "camel_keys", "snake_keys", "resources",
    "numeric_quantity", "affinity", "tolerations", "node_selector", "sidecar", "init_containers",
    "container_security_context", "pod_security_context", "image_pull_policy", "image_pull_secrets",
    "service_account_name", "scheduler_name", "launcher_run_k8s_config", "container_config",
    "pod_template_spec_metadata", "pod_spec_config", "job_config", "job_metadata", "annotations",
    "owner_references", "job_spec_config", "ttl", "backoff_limit", "active_deadline_seconds",
    "job_spec_template_ignored", "tag_config", "tag_merge_deep", "tag_merge_shallow",
    "tag_merge_absent", "resource_requirements_tag", "container_context", "cc_env_vars",
    "cc_namespace", "cc_run_k8s_config", "cc_merge_shallow", "cc_merge_deep",
    "allowlist_fields_pass", "allowlist_fields_violate", "allowlist_env_vars", "env_source",
    "env_source_in_array", "resume", "fail_pod_on_run_failure", "long_job_name", "odd_job_name",
    "unicode_name", "long_op_name", "odd_op_name", "odd_location_name", "code_location",
    "per_step_k8s_config", "per_step_other_key_ignored", "retry_attempt", "retries_enabled",
    "retries_disabled", "celery_run_config", "celery_legacy_run_config", "celery_job_image",
    "celery_job_namespace", "celery_list_concat", "celery_labels", "celery_image_override",
    "celery_ignored_fields", "celery_current_image", "op_tag_config", "command", "user_args_replaced",
    "container_name_override", "container_config_image", "automount_override",
    "restart_policy_override", "type_coercion", "load_incluster_config_false", "job_namespace",
    "dagster_home", "job_image", "origin_image", "error",
    # invalid cases Dagster rejects
    "error:unknown_k8s_key", "error:camel_and_snake", "error:incluster_with_kubeconfig",
    "error:init_rejects_key", "error:env_source_unset", "error:env_vars_unset",
    "error:seed_resources", "error:allowlist_violation", "error:no_image",
    "error:launcher_unknown_key",
]
# 1.1.9 has no merge_behavior, allowlists, per-step config or container-context env; it covers
# every error kind of its rotation instead (common ones and newer keys).
_NOT_IN_1_1_9 = {"tag_merge_deep", "tag_merge_shallow", "cc_merge_shallow", "cc_merge_deep", "cc_env",
                 "allowlist_fields_pass", "allowlist_fields_violate", "allowlist_env_vars",
                 "per_step_k8s_config", "per_step_other_key_ignored", "error:allowlist_violation"}
REQUIRED_FEATURES_1_1_9 = sorted(
    {f for f in REQUIRED_FEATURES if f not in _NOT_IN_1_1_9} | {"newer_key"}
    | {f"error:{e}" for _, e in gen_cases.ERROR_PAIRS_1_1_9}
)
MIN_PER_FEATURE = 3
# (kind ratio bounds K8sRunLauncher, CeleryK8sRunLauncher, step; expected-error ratio bounds)
RATIOS = {"1.13.27": ((0.44, 0.56), (0.11, 0.19), (0.29, 0.41), (0.05, 0.10)),
          "1.1.9": ((0.44, 0.56), (0.11, 0.19), (0.29, 0.41), (0.10, 0.20))}


def required_features(version: str) -> list[str]:
    return REQUIRED_FEATURES_1_1_9 if version == "1.1.9" else REQUIRED_FEATURES
