"""Celery-k8s step cases: the kwargs of one `execute_step_k8s_job` message.

step_case returns a skeleton {"kind": "step", "pending": {...}}: the executor inputs; the kwargs
themselves are published by the target's real `_submit_task_k8s_job` (dagster_complete.py), so a
1.1.9 case carries 0.17.9's 7 kwargs and ExecuteStepArgs, a 1.13 case 1.13's 8.
"""

from __future__ import annotations

import json
from typing import Any

from gen_base import IMAGES, Builder, pick_job_name, pick_op
from gen_config import (
    gen_celery_launcher_config,
    gen_executor_config,
    gen_resource_requirements_tag,
    gen_tag_config,
)
from gen_sections import frag_raw_k8s_config

# Malformed raw config in the worker-side config the task merges (1.13: the per-step config the
# executor passes through unchecked; 1.1.9: the user_defined_k8s_config_dict of the message, as
# another publisher could send it). Every version's worker rejects them.
BAD_USER_CONFIG = {
    "unknown_key": {"container_config": {"resourceLimits": {"cpu": "1"}}},
    "camel_and_snake": {"pod_spec_config": {"nodeSelector": {"a": "b"}, "node_selector": {"a": "c"}}},
    "seed_resources": {"container_config": {"resources": {"cpu": "1", "memory": "1Gi"}}},
    "model_type": {"pod_spec_config": {"tolerations": {"operator": "Exists"}}},
}
STEP_ERRORS = ["per_step_unknown_key", "per_step_camel_and_snake", "per_step_seed_resources",
               "per_step_model_type"]
STEP_ERRORS_1_1_9 = ["user_config_" + k for k in BAD_USER_CONFIG]
# 1.13-shaped kwargs (8th kwarg per_step_k8s_config): a 0.17.9 worker's task has no such parameter.
STEP_NEWER_KEY_ERRORS = ["per_step_kwarg"]


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
    if b.v.per_step_k8s_config and b.p(0.4):
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
    kwargs_patch = None
    if error:
        b.feat(f"error:{error}")
        if error.startswith("per_step_") and error in STEP_ERRORS:
            per_step[step_key] = BAD_USER_CONFIG[error[len("per_step_"):]]
        elif error.startswith("user_config_"):
            kwargs_patch = {"user_config": BAD_USER_CONFIG[error[len("user_config_"):]]}
        elif error == "per_step_kwarg":
            b.feat("newer_key")
            extra = {step_key: frag_raw_k8s_config(b, max_sections=1)} if b.p(0.5) else {}
            kwargs_patch = {"set": {"per_step_k8s_config": extra}}
        else:
            raise ValueError(error)
    if per_step:
        ex["per_step_k8s_config"] = per_step
    pending = {
        "launcher_cfg": launcher_cfg, "executor_cfg": ex, "run_id": b.uuid(), "job_name": job_name,
        "origin_image": origin_image, "step_key": step_key, "op_tags": op_tags,
        "previous_attempts": previous, "run_worker_env": run_worker_env,
        "retries_feature": True,  # tag the entry retries_enabled / _disabled from the message
    }
    if kwargs_patch:
        pending["kwargs_patch"] = kwargs_patch
    return {"kind": "step", "pending": pending}
