"""chart/: connections and credentials (Secrets as env, existing Secrets referenced, inline
TLS and token), network policies, the seed example's settings, the Dagster values files
against the stock launchers' config, and the NOTES."""
from __future__ import annotations

import inspect
import os
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chart_helm as ch  # noqa: E402
from chart_cases import DEVMASTERS, SEED, objs  # noqa: E402


def test_connections_come_from_secrets_as_env():
    o = objs("seed")
    secret = ch.one(o, "Secret", "runway-connections")
    assert ch.secret_data(secret) == {
        "broker-url": "amqp://dagsterrabbit:dagsterpass@dagster-rabbitmq:5672//",
        "result-backend": "redis://:dagsterpass@dagster-redis-master:6379/0",
    }
    env = ch.env_map(ch.container(ch.one(o, "Deployment", "runway-worker-dagster")))
    assert env == {
        "RUNWAY_BROKER_URL": {"secretKeyRef": {"name": "runway-connections", "key": "broker-url"}},
        "RUNWAY_RESULT_BACKEND": {"secretKeyRef": {"name": "runway-connections", "key": "result-backend"}},
        "DAGSTER_PG_PASSWORD": {"secretKeyRef": {"name": "dagster-postgresql-secret", "key": "postgresql-password"}},
    }
    # No URL or password in any ConfigMap.
    for cm in ch.find(o, "ConfigMap"):
        assert "dagsterpass" not in yaml.safe_dump(cm)
    # Without publishSteps the launcher gets no broker.
    assert "env" not in ch.container(ch.one(o, "Deployment", "runway-launcher"))
    # Defaults: the Dagster chart's RabbitMQ and Redis of release "dagster"; a
    # Dagster release elsewhere is named by namespace; passwords are escaped.
    assert ch.secret_data(ch.one(objs("defaults"), "Secret", "runway-connections")) == {
        "broker-url": "amqp://test:test@dagster-rabbitmq:5672//",
        "result-backend": "redis://dagster-redis-master:6379/0",
    }
    other = ch.render({"dagster": {"releaseName": "prod", "namespace": "data"},
                       "celery": {"broker": {"password": "p@ss word/", "vhost": "dagster"},
                                  "resultBackend": {"password": "r:x", "db": 2}}})
    assert ch.secret_data(ch.one(other, "Secret", "runway-connections")) == {
        "broker-url": "amqp://test:p%40ss%20word%2F@prod-rabbitmq.data.svc:5672/dagster",
        "result-backend": "redis://:r%3Ax@prod-redis-master.data.svc:6379/2",
    }
    assert ch.env_map(ch.container(ch.one(other, "Deployment", "runway-worker-dagster")))[
        "DAGSTER_PG_PASSWORD"] == {"secretKeyRef": {"name": "prod-postgresql-secret", "key": "postgresql-password"}}
    rpc = ch.secret_data(ch.one(objs("inline-tls-token"), "Secret", "runway-connections"))
    assert rpc["result-backend"] == "rpc://"
    assert rpc["postgres-url"] == "postgresql://u:p@db:5432/dagster"


def test_existing_secrets_are_referenced_not_rendered():
    o = objs("security-options")
    assert not ch.find(o, "Secret"), [s["metadata"]["name"] for s in ch.find(o, "Secret")]
    launcher = ch.one(o, "Deployment", "runway-launcher")
    lc = ch.container(launcher)
    assert ch.env_map(lc) == {
        "RUNWAY_BROKER_URL": {"secretKeyRef": {"name": "celery-urls", "key": "broker"}},
        "RUNWAY_RESULT_BACKEND": {"secretKeyRef": {"name": "celery-urls", "key": "backend"}},
    }
    assert ch.env_map(ch.container(ch.one(o, "Deployment", "runway-worker-dagster"))) == {
        "RUNWAY_BROKER_URL": {"secretKeyRef": {"name": "celery-urls", "key": "broker"}},
        "RUNWAY_RESULT_BACKEND": {"secretKeyRef": {"name": "celery-urls", "key": "backend"}},
        "DAGSTER_PG_PASSWORD": {"secretKeyRef": {"name": "pg", "key": "password"}},
        "RUNWAY_POSTGRES_URL": {"secretKeyRef": {"name": "pg", "key": "url"}},
    }
    vols = {v["name"]: v for v in launcher["spec"]["template"]["spec"]["volumes"]}
    assert vols["tls"]["secret"]["secretName"] == "runway-tls-cm"
    assert vols["token"]["secret"]["secretName"] == "runway-token"
    assert vols["token"]["secret"]["items"] == [{"key": "bearer", "path": "token"}]
    cfg = yaml.safe_load(ch.one(o, "ConfigMap", "runway-config")["data"]["launcher.yaml"])
    assert cfg["tls-cert"] == "/etc/runway/tls/tls.crt" and cfg["tls-key"] == "/etc/runway/tls/tls.key"
    assert cfg["tls-client-ca"] == "/etc/runway/tls/ca.crt"
    assert cfg["token-file"] == "/etc/runway/token/token"
    assert cfg["kube-qps"] == 50 and cfg["health-mode"] == "dagster-compat"
    mounts = {m["name"]: m["mountPath"] for m in lc["volumeMounts"]}
    assert mounts["tls"] == "/etc/runway/tls" and mounts["token"] == "/etc/runway/token"
    spec = launcher["spec"]["template"]["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert lc["image"] == "localhost/runway@sha256:" + "a" * 64
    sa = ch.one(o, "ServiceAccount", "runway")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:aws:iam::1:role/runway"


def test_inline_tls_and_token_secrets():
    o = objs("inline-tls-token")
    tls = ch.one(o, "Secret", "runway-tls")
    assert tls["type"] == "kubernetes.io/tls"
    assert ch.secret_data(tls) == {"tls.crt": "CERT", "tls.key": "KEY", "ca.crt": "CA"}
    assert ch.secret_data(ch.one(o, "Secret", "runway-token")) == {"token": "s3cret"}
    svc = ch.one(o, "Service", "runway-launcher")
    assert "appProtocol" not in svc["spec"]["ports"][0]  # h2c only without TLS
    assert ch.one(objs("defaults"), "Service", "runway-launcher")["spec"]["ports"][0][
        "appProtocol"] == "kubernetes.io/h2c"


def test_network_policies():
    o = objs("security-options")
    pols = {p["metadata"]["name"]: p for p in ch.find(o, "NetworkPolicy")}
    assert sorted(pols) == ["runway-launcher", "runway-worker"]
    lp = pols["runway-launcher"]["spec"]
    assert lp["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "launcher"
    assert lp["policyTypes"] == ["Ingress", "Egress"]
    assert lp["ingress"][0] == {"ports": [{"port": "grpc", "protocol": "TCP"}],
                                "from": [{"podSelector": {"matchLabels": {"component": "dagster-daemon"}}}]}
    assert lp["ingress"][1] == {"ports": [{"port": "http", "protocol": "TCP"}],
                                "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]}
    assert lp["egress"][1] == {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
                               "ports": [{"port": 443, "protocol": "TCP"}]}
    wp = pols["runway-worker"]["spec"]
    assert [r["ports"][0]["port"] for r in wp["ingress"]] == ["http"]
    # Defaults when enabled: gRPC from this namespace's pods only, ingress only.
    (p, _) = ch.find(ch.render({"networkPolicy": {"enabled": True}}), "NetworkPolicy")
    assert p["spec"]["policyTypes"] == ["Ingress"]
    assert p["spec"]["ingress"][0]["from"] == [{"podSelector": {}}]
    assert not ch.find(objs("defaults"), "NetworkPolicy")


def test_seed_example_reproduces_the_seed_settings():
    o = objs("seed")
    hostnames = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": DEVMASTERS}]}]}}}
    for name, resources in (("runway-launcher", ("100m", "128Mi")), ("runway-worker-dagster", ("300m", "2048Mi"))):
        d = ch.one(o, "Deployment", name)
        spec = d["spec"]["template"]["spec"]
        assert spec["affinity"]["nodeAffinity"] == hostnames["nodeAffinity"]
        assert "podAntiAffinity" in spec["affinity"]  # the chart's spread, kept beside the seed's
        assert spec["tolerations"] == [{"operator": "Exists"}]
        assert spec["imagePullSecrets"] == [{"name": "dagster-image-pull-secrets"}]
        cpu, mem = resources
        assert ch.container(d)["resources"] == {"limits": {"cpu": cpu, "memory": mem},
                                                "requests": {"cpu": cpu, "memory": mem}}
    assert ch.one(o, "Deployment", "runway-worker-dagster")["spec"]["replicas"] == 2
    cfg = yaml.safe_load(ch.one(o, "ConfigMap", "runway-config")["data"]["worker-dagster.yaml"])
    assert cfg["task-events"] is True and cfg["queues"] == ["dagster"]
    assert cfg["dagster-version"] == "1.1.9"


def _launcher_config(path: str) -> dict:
    return ch.example(path)["runLauncher"]["config"]["customRunLauncher"]


@pytest.mark.parametrize("path,module,cls", [
    ("dagster-values.yaml", "dagster_celery_k8s", "CeleryK8sRunLauncher"),
    ("dagster-values-k8s.yaml", "dagster_k8s", "K8sRunLauncher"),
])
def test_dagster_values_are_the_stock_launcher_config_plus_runway(path, module, cls):
    """Every non-Runway key is valid for the stock class in the pinned Dagster
    (its config schema and its __init__), so the subclass keeps their meaning."""
    from dagster._config import process_config
    stock_cls = getattr(__import__(module), cls)
    values = ch.example(path)
    assert values["runLauncher"]["type"] == "CustomRunLauncher"
    launcher = _launcher_config(path)
    assert launcher["module"] == "dagster_runway"
    assert launcher["class"] == "Runway" + cls
    config = launcher["config"]
    runway_keys = {k for k in config if k.startswith("runway_")}
    assert runway_keys == {"runway_endpoint"}
    stock = {k: v for k, v in config.items() if k not in runway_keys}
    result = process_config(stock_cls.config_type(), stock)
    assert result.success, [e.message for e in result.errors]
    accepted = set(inspect.signature(stock_cls.__init__).parameters)
    assert set(result.value) <= accepted, set(result.value) - accepted

    # The endpoint is the launcher Service the seed example renders, in the
    # namespace Jobs go to, and the broker and backend are the URLs the
    # Runway workers get.
    o = ch.render(SEED, namespace=config["job_namespace"])
    svc = ch.one(o, "Service", "runway-launcher")
    grpc = [p["port"] for p in svc["spec"]["ports"] if p["name"] == "grpc"][0]
    assert config["runway_endpoint"] == f"runway-launcher.{config['job_namespace']}.svc:{grpc}"
    assert [r["metadata"]["namespace"] for r in ch.find(o, "Role")] == [config["job_namespace"]]
    if "broker" in config:
        urls = ch.secret_data(ch.one(o, "Secret", "runway-connections"))
        assert (config["broker"], config["backend"]) == (urls["broker-url"], urls["result-backend"])
        # Labels the seed gives the celery launcher: on the Jobs (Dagster side) and the workers.
        worker = ch.one(o, "Deployment", "runway-worker-dagster")
        assert config["labels"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()
    else:
        spec = config["run_k8s_config"]["job_spec_config"]
        assert spec == {"ttlSecondsAfterFinished": 7200}
        assert config["run_k8s_config"]["pod_spec_config"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
            "matchExpressions"][0]["values"] == DEVMASTERS


def test_notes_name_the_endpoint():
    notes = ch.render_files(SEED)["runway/templates/NOTES.txt"]
    assert "runway_endpoint: runway-launcher.dagster-system.svc:50051" in notes
    assert "dagster: runway-worker-dagster" in notes
