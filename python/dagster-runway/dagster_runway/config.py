"""The `runway_*` keys the Runway launchers add to the stock config schema."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Enum, EnumValue, Field, Noneable, StringSource

from dagster_runway.client import Settings
from dagster_runway.compat import check

RUNWAY_CONFIG = {
    "runway_endpoint": Field(
        StringSource,
        is_required=True,
        description="`host:port` of runway serve's gRPC port (`https://host:port` for TLS with"
        " the system roots).",
    ),
    "runway_tls_ca_file": Field(
        Noneable(StringSource),
        is_required=False,
        description="CA bundle that signed the service's certificate; setting it turns TLS on.",
    ),
    "runway_tls_cert_file": Field(
        Noneable(StringSource),
        is_required=False,
        description="Client certificate for mTLS (with runway_tls_key_file).",
    ),
    "runway_tls_key_file": Field(
        Noneable(StringSource),
        is_required=False,
        description="Private key of runway_tls_cert_file.",
    ),
    "runway_token_file": Field(
        Noneable(StringSource),
        is_required=False,
        description="File holding the bearer token the service was started with"
        " (`--token-file`); read on every call, so it can be rotated.",
    ),
    "runway_timeout_seconds": Field(
        float,
        is_required=False,
        default_value=30.0,
        description="Deadline of one call to the service.",
    ),
    "runway_retry_seconds": Field(
        float,
        is_required=False,
        default_value=30.0,
        description="How long a call keeps retrying, with back-off, while the service is"
        " unreachable (UNAVAILABLE) or rate limited, before the launch fails.",
    ),
    "runway_health_mode": Field(
        Enum(
            "RunwayHealthMode",
            [
                EnumValue("diagnose", description="dagster-k8s's rules plus pod-level failures."),
                EnumValue("dagster-compat", description="Exactly dagster-k8s's answers."),
            ],
        ),
        is_required=False,
        default_value="diagnose",
        description="How check_run_worker_health judges the run worker.",
    ),
    "runway_fail_unstartable_runs": Field(
        bool,
        is_required=False,
        default_value=True,
        description="Follow the service's WatchRuns stream from the launching process and fail"
        " a run still STARTING as soon as its run worker cannot start (an image that cannot be"
        " pulled, a pod that cannot be created), with the pod's reason, instead of after"
        " run_monitoring.start_timeout_seconds: the monitoring daemon does not health-check"
        " STARTING runs.",
    ),
}

RUNWAY_KEYS = frozenset(RUNWAY_CONFIG)


def settings_of(runway: Mapping[str, Any]) -> Settings:
    """The client settings of the `runway_*` values."""
    return Settings(
        endpoint=check.str_param(runway["runway_endpoint"], "runway_endpoint"),
        tls_ca_file=runway.get("runway_tls_ca_file"),
        tls_cert_file=runway.get("runway_tls_cert_file"),
        tls_key_file=runway.get("runway_tls_key_file"),
        token_file=runway.get("runway_token_file"),
        timeout_seconds=float(runway.get("runway_timeout_seconds") or 30.0),
        retry_seconds=float(
            30.0 if runway.get("runway_retry_seconds") is None else runway["runway_retry_seconds"]
        ),
        health_mode=runway.get("runway_health_mode") or "diagnose",
    )


def split_runway_keys(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Removes the runway_* keys from kwargs and returns them."""
    return {k: kwargs.pop(k) for k in list(kwargs) if k in RUNWAY_KEYS}
