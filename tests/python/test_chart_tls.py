"""The chart's `storeTLS` values: each CA Secret is mounted read-only in the pods
that reach its store and passed as that store's CA option (RUNWAY_*_CA_FILE);
nothing is rendered when none is given; the schema refuses unknown keys."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chart_helm as ch  # noqa: E402

ALL = {"storeTLS": {"brokerCA": {"secretName": "rabbit-ca"},
                    "redisCA": {"secretName": "redis-ca", "key": "ca.pem"},
                    "postgresCA": {"secretName": "pg-ca", "key": "root.crt"}}}
FILES = {"broker": "/etc/runway/store-ca/broker/ca.crt",
         "redis": "/etc/runway/store-ca/redis/ca.crt",
         "postgres": "/etc/runway/store-ca/postgres/ca.crt"}


def pod(objs, name):
    return ch.one(objs, "Deployment", name)["spec"]["template"]["spec"]


def store_cas(spec):
    """(env name -> value, mount path -> volume name, volume name -> secret source)."""
    c = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in c.get("env", []) if e["name"].endswith("_CA_FILE")}
    mounts = {m["mountPath"]: (m["name"], m.get("readOnly")) for m in c["volumeMounts"]
              if m["name"].startswith("store-ca-")}
    volumes = {v["name"]: v["secret"] for v in spec["volumes"] if v["name"].startswith("store-ca-")}
    return env, mounts, volumes


def test_workers_get_every_store_ca_mounted_read_only_and_passed():
    env, mounts, volumes = store_cas(pod(ch.render(ALL), "runway-worker-dagster"))
    assert env == {"RUNWAY_BROKER_CA_FILE": FILES["broker"],
                   "RUNWAY_REDIS_CA_FILE": FILES["redis"],
                   "RUNWAY_POSTGRES_CA_FILE": FILES["postgres"]}
    assert mounts == {f"/etc/runway/store-ca/{s}": (f"store-ca-{s}", True) for s in FILES}
    assert volumes == {
        "store-ca-broker": {"secretName": "rabbit-ca", "defaultMode": 0o444,
                            "items": [{"key": "ca.crt", "path": "ca.crt"}]},
        "store-ca-redis": {"secretName": "redis-ca", "defaultMode": 0o444,
                           "items": [{"key": "ca.pem", "path": "ca.crt"}]},
        "store-ca-postgres": {"secretName": "pg-ca", "defaultMode": 0o444,
                              "items": [{"key": "root.crt", "path": "ca.crt"}]},
    }


def test_the_launcher_gets_broker_and_redis_cas_only_when_it_publishes_steps():
    quiet = store_cas(pod(ch.render(ALL), "runway-launcher"))
    assert quiet == ({}, {}, {})
    values = ch.merge(ALL, {"launcher": {"publishSteps": True}})
    env, mounts, volumes = store_cas(pod(ch.render(values), "runway-launcher"))
    assert env == {"RUNWAY_BROKER_CA_FILE": FILES["broker"], "RUNWAY_REDIS_CA_FILE": FILES["redis"]}
    assert set(mounts) == {"/etc/runway/store-ca/broker", "/etc/runway/store-ca/redis"}
    assert set(volumes) == {"store-ca-broker", "store-ca-redis"}


def test_only_the_given_cas_are_rendered_and_the_manifests_stay_valid():
    one = {"storeTLS": {"postgresCA": {"secretName": "pg-ca"}}}
    env, mounts, volumes = store_cas(pod(ch.render(one), "runway-worker-dagster"))
    assert env == {"RUNWAY_POSTGRES_CA_FILE": FILES["postgres"]}
    assert list(volumes) == ["store-ca-postgres"]
    assert store_cas(pod(ch.render({}), "runway-worker-dagster")) == ({}, {}, {})
    ch.validate(ch.render(ch.merge(ALL, {"launcher": {"publishSteps": True}})))
    ch.lint(ALL)


def test_the_runway_binary_reads_the_env_names_the_chart_sets():
    # The option each env var feeds is the one the README and --help name.
    from subprocess import run
    from devcluster import RUNWAY_BIN
    out = run([RUNWAY_BIN, "worker", "--help"], capture_output=True, text=True).stdout
    for name in ("RUNWAY_BROKER_CA_FILE", "RUNWAY_REDIS_CA_FILE", "RUNWAY_POSTGRES_CA_FILE"):
        assert name in out, name
    out = run([RUNWAY_BIN, "serve", "--help"], capture_output=True, text=True).stdout
    assert "RUNWAY_BROKER_CA_FILE" in out and "RUNWAY_REDIS_CA_FILE" in out


@pytest.mark.parametrize("values, path", [
    ({"storeTLS": {"amqpCA": {"secretName": "x"}}}, "storeTLS"),
    ({"storeTLS": {"redisCA": {"secretName": "x", "file": "ca"}}}, "redisCA"),
    ({"storeTLS": {"redisCA": {"secretName": "x", "key": ""}}}, "key"),
])
def test_schema_refuses_unknown_store_tls_keys(values, path):
    assert path in ch.schema_error(values)
