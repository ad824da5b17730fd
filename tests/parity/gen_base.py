"""Generator basics: the target version's accepted inputs (`Accepts`), the per-entry Builder
(rng, env, feature tags, key style) and the name pools.

The corpus generator is split over gen_*.py (entry point gen_cases.py):
    gen_base.py       Accepts (per Dagster version), Builder, names
    gen_fragments.py  k8s fragments (env, volumes, resources, affinity, ...)
    gen_sections.py   raw k8s config sections (container_config, pod_spec_config, ...)
    gen_config.py     launcher configs, container contexts, run tags, executor configs
    gen_runs.py       K8sRunLauncher / CeleryK8sRunLauncher run cases and their rejections
    gen_steps.py      celery-k8s step cases and their rejections
    gen_seed.py       the seed deployment's fixed cases and the committed fixtures
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Callable

# ------------------------------------------------------------------------------------------------
# What the target Dagster accepts
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepts:
    """The inputs a generator mode may use (True: the target's launchers, container-context parser,
    tag parser and step task accept it). In brackets the dagster-k8s version that first accepts
    it (the version research's profile table), or "not 0.17.9" where only that is verified."""

    mode: str
    merge_behavior: bool  # `merge_behavior` in tags / container-context run_k8s_config [0.21.3]
    allowlists: bool  # only_allow_user_defined_k8s_config_fields / _env_vars [0.22.3]
    per_step_k8s_config: bool  # celery executor config and task kwarg [0.23.15]
    cc_env: bool  # container context `k8s.env` [0.17.21]
    cc_server_replica_count: bool  # container context `k8s.server_replica_count` [0.29.5]
    ssl_ca_cert_file: bool  # k8s_api_ssl_ca_cert_file on both launchers [0.28.20]
    celery_launcher_job_namespace: bool  # CeleryK8sRunLauncher `job_namespace` [0.18.2]
    camel_field_security_context: bool  # camelCase `security_context` launcher / cc field [not 0.17.9]
    tag_image_launches: bool  # an image only in user config (tag, run_k8s_config) launches [0.20.6]
    common_errors: bool  # cases every version rejects
    newer_key_errors: bool  # cases using keys the newest Dagster accepts and this one refuses


ACCEPTS_1_13 = Accepts("1.13", True, True, True, True, True, True, True, True, True,
                       common_errors=True, newer_key_errors=False)
ACCEPTS_1_1_9 = Accepts("1.1.9", False, False, False, False, False, False, False, False, False,
                        common_errors=True, newer_key_errors=True)
# Only inputs that both 1.1.9 and 1.13 accept (for the lines in between, in the compat sweep).
ACCEPTS_INTERSECTION = Accepts("intersection", False, False, False, False, False, False, False, False,
                               False, common_errors=False, newer_key_errors=False)

# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


class Builder:
    """Per-entry state: rng, env, feature tags, key style, and what the target accepts."""

    def __init__(self, rng: random.Random, accepts: Accepts = ACCEPTS_1_13):
        self.rng = rng
        self.v = accepts
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

