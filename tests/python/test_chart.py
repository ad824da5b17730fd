"""chart/: rendered by the real Helm engine (helm-python-sdk), linted strict,
every manifest validated with kubernetes-validate --strict for Kubernetes 1.36,
the objects checked for what the chart promises, bad values rejected by the
schema with their path in the message, and the rendered launcher and worker
containers started as real processes against the dev cluster.

The two tests at the end need the runway binary (RUNWAY_BIN); the worker one
needs `runway worker` (issue 6) and fails, not skips, without it.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import re
import socket
import subprocess
import sys
import uuid

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chart_helm as ch  # noqa: E402
import chart_pod  # noqa: E402
from devcluster import dev_cluster as start_dev_cluster  # noqa: E402

RUNWAY_BIN = os.environ.get("RUNWAY_BIN", os.path.join(ch.ROOT, "target", "debug", "runway"))
if not os.path.isabs(RUNWAY_BIN):
    RUNWAY_BIN = os.path.join(ch.ROOT, RUNWAY_BIN)

SEED = ch.example("seed-values.yaml")
DAGSTER_VALUES = ch.example("dagster-values.yaml")
DAGSTER_VALUES_K8S = ch.example("dagster-values-k8s.yaml")
DEVMASTERS = ["devmaster1", "devmaster2", "devmaster3"]

# Option combinations, each rendered once.
COMBOS = {
    "defaults": {},
    "seed": SEED,
    "queues-hpa-namespaces": {
        "jobNamespaces": ["dagster-system", "team-a", "team-b"],
        "commonLabels": {"team": "data"},
        "commonAnnotations": {"owner": "platform"},
        "worker": {
            "workerQueues": [
                {"name": "dagster", "replicaCount": 2},
                {"name": "extraQueue", "replicaCount": 1, "concurrency": 8, "prefetch": 16,
                 "dagsterVersion": "1.1.9",
                 "labels": {"tier": "gpu"},
                 "resources": {"requests": {"cpu": "2", "memory": "4Gi"}},
                 "nodeSelector": {"pool": "gpu"},
                 "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}},
            ],
        },
    },
    "security-options": {
        "launcher": {
            "publishSteps": True,
            "podAntiAffinity": "hard",
            "tls": {"enabled": True, "existingSecret": "runway-tls-cm", "requireClientCert": True},
            "auth": {"existingSecret": "runway-token", "existingSecretKey": "bearer"},
            "settings": {"kube-qps": 50, "health-mode": "dagster-compat"},
        },
        "celery": {
            "broker": {"existingSecret": "celery-urls", "existingSecretKey": "broker"},
            "resultBackend": {"existingSecret": "celery-urls", "existingSecretKey": "backend"},
        },
        "dagster": {"postgresqlPassword": {"existingSecret": "pg", "key": "password"}},
        "worker": {"postgresUrl": {"existingSecret": "pg", "existingSecretKey": "url"},
                   "podAntiAffinity": "", "pdb": {"enabled": False}},
        "networkPolicy": {
            "enabled": True,
            "grpcFrom": [{"podSelector": {"matchLabels": {"component": "dagster-daemon"}}}],
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            "egress": {"enabled": True, "rules": [{"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
                                                    "ports": [{"port": 443, "protocol": "TCP"}]}]},
        },
        "serviceMonitor": {"enabled": True, "namespace": "monitoring", "labels": {"release": "prom"}},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/runway"}},
        "imagePullSecrets": [{"name": "regcred"}],
        "image": {"digest": "sha256:" + "a" * 64},
    },
    "inline-tls-token": {
        "launcher": {"tls": {"enabled": True, "cert": "CERT", "key": "KEY", "clientCA": "CA",
                             "requireClientCert": True},
                     "auth": {"token": "s3cret"}},
        "celery": {"resultBackend": {"type": "rpc"}},
        "worker": {"postgresUrl": {"url": "postgresql://u:p@db:5432/dagster"}},
    },
    "launcher-only": {"worker": {"enabled": False}},
    "worker-only": {"launcher": {"enabled": False}},
}

STANDARD_LABELS = {
    "app.kubernetes.io/name": "runway",
    "app.kubernetes.io/instance": ch.RELEASE,
    "app.kubernetes.io/managed-by": "Helm",
    "app.kubernetes.io/part-of": "runway",
}


def objs(combo: str) -> list[dict]:
    return ch.render(COMBOS[combo])


def deployments(o: list[dict], component: str) -> list[dict]:
    return [d for d in ch.find(o, "Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == component]


def pod_annotations(d: dict) -> dict:
    return d["spec"]["template"]["metadata"]["annotations"]


# --- Helm: lint, and Kubernetes 1.36 schemas -------------------------------------------------

@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_lint_strict_passes(combo):
    report = ch.lint(COMBOS[combo])
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_every_manifest_is_valid_kubernetes_1_36(combo):
    o = objs(combo)
    assert o, "nothing rendered"
    skipped = ch.validate(o)
    # ServiceMonitor is a CRD kubernetes-validate has no schema for: the only
    # skip, and only where the combination enables it.
    want_skipped = ["ServiceMonitor"] if COMBOS[combo].get("serviceMonitor", {}).get("enabled") else []
    assert skipped == want_skipped


def test_validation_catches_what_it_should():
    """The validator is not a rubber stamp: a wrong field fails it."""
    deploy = ch.one(objs("defaults"), "Deployment", "runway-launcher")
    deploy["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(AssertionError, match="is not valid Kubernetes 1.36.0"):
        ch.validate([deploy])


def test_servicemonitor_by_hand():
    """The CRD kubernetes-validate cannot check (monitoring.coreos.com/v1)."""
    o = objs("security-options")
    (sm,) = ch.find(o, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["namespace"] == "monitoring"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert set(sm["spec"]) == {"namespaceSelector", "selector", "endpoints"}
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [ch.NAMESPACE]}
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s",
                                        "scrapeTimeout": "10s"}]
    # It selects exactly the launcher and worker metrics Services, by the port they share.
    sel = sm["spec"]["selector"]
    services = [s for s in ch.find(o, "Service")
                if all(s["metadata"]["labels"].get(k) == v for k, v in sel["matchLabels"].items())
                and s["metadata"]["labels"]["app.kubernetes.io/component"] in sel["matchExpressions"][0]["values"]]
    assert sorted(s["metadata"]["name"] for s in services) == ["runway-launcher", "runway-worker"]
    for s in services:
        assert "http" in [p["name"] for p in s["spec"]["ports"]]


# --- What the chart promises -------------------------------------------------------------------

ROLE_RULES = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
]


def test_rbac_is_namespaced_least_privilege_one_role_per_job_namespace():
    o = objs("queues-hpa-namespaces")
    assert not ch.find(o, "ClusterRole") and not ch.find(o, "ClusterRoleBinding")
    roles = ch.find(o, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["dagster-system", "team-a", "team-b"]
    for role in roles:
        assert role["rules"] == ROLE_RULES
    bindings = ch.find(o, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["dagster-system", "team-a", "team-b"]
    for b in bindings:
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "runway"}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "runway", "namespace": ch.NAMESPACE}]
    # Both components run as that ServiceAccount, and watch exactly those namespaces.
    cm = ch.one(o, "ConfigMap", "runway-config")
    for key, text in cm["data"].items():
        assert yaml.safe_load(text)["namespace"] == ["dagster-system", "team-a", "team-b"], key
    for d in ch.find(o, "Deployment"):
        assert d["spec"]["template"]["spec"]["serviceAccountName"] == "runway"
    # Defaults: the release namespace only.
    d = objs("defaults")
    assert [r["metadata"]["namespace"] for r in ch.find(d, "Role")] == [ch.NAMESPACE]
    assert ch.one(d, "ServiceAccount", "runway")["automountServiceAccountToken"] is False
    assert not ch.find(ch.render({"rbac": {"create": False}}), "Role")


def test_probes_ports_and_resources():
    o = objs("defaults")
    launcher = ch.container(ch.one(o, "Deployment", "runway-launcher"))
    worker = ch.container(ch.one(o, "Deployment", "runway-worker-dagster"))
    for c, http in ((launcher, 9090), (worker, 9091)):
        assert c["livenessProbe"]["httpGet"] == {"path": "/live", "port": "http"}
        assert c["startupProbe"]["httpGet"] == {"path": "/live", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
        assert {"name": "http", "containerPort": http, "protocol": "TCP"} in c["ports"]
        assert set(c["resources"]) == {"requests", "limits"}
        assert set(c["resources"]["requests"]) == set(c["resources"]["limits"]) == {"cpu", "memory"}
    assert {"name": "grpc", "containerPort": 50051, "protocol": "TCP"} in launcher["ports"]
    svc = ch.one(o, "Service", "runway-launcher")
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("grpc", 50051, "grpc"), ("http", 9090, "http")]


def test_launcher_availability_replicas_pdb_anti_affinity():
    o = objs("defaults")
    d = ch.one(o, "Deployment", "runway-launcher")
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    selector = d["spec"]["selector"]["matchLabels"]
    (term,) = d["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {"labelSelector": {"matchLabels": selector},
                                       "topologyKey": "kubernetes.io/hostname"}
    pdb = ch.one(o, "PodDisruptionBudget", "runway-launcher")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    # hard: required; a user's own podAntiAffinity is kept as given.
    hard = ch.one(objs("security-options"), "Deployment", "runway-launcher")["spec"]["template"]["spec"]
    assert hard["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0][
        "labelSelector"] == {"matchLabels": selector}
    own = {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"x": "y"}}, "topologyKey": "zone"}]}
    spec = ch.one(ch.render({"launcher": {"affinity": {"podAntiAffinity": own}}}),
                  "Deployment", "runway-launcher")["spec"]["template"]["spec"]
    assert spec["affinity"] == {"podAntiAffinity": own}
    spec = ch.one(ch.render({"launcher": {"podAntiAffinity": ""}}), "Deployment",
                  "runway-launcher")["spec"]["template"]["spec"]
    assert "affinity" not in spec
    pdb = ch.one(ch.render({"launcher": {"pdb": {"maxUnavailable": "50%"}}}), "PodDisruptionBudget",
                 "runway-launcher")
    assert pdb["spec"]["maxUnavailable"] == "50%" and "minAvailable" not in pdb["spec"]


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_security_contexts_are_restricted(combo):
    ds = ch.find(objs(combo), "Deployment")
    assert ds
    for d in ds:
        spec = d["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        c = ch.container(d)
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        # A read-only root needs a writable /tmp.
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_labels_on_every_object_and_selectors_match_pods(combo):
    values = COMBOS[combo]
    common = values.get("commonLabels", {})
    for o in objs(combo):
        labels = o["metadata"]["labels"]
        for k, v in {**STANDARD_LABELS, **common}.items():
            assert labels.get(k) == v, (o["kind"], o["metadata"]["name"], k)
        assert labels["helm.sh/chart"] == "runway-0.1.0"
        for k, v in values.get("commonAnnotations", {}).items():
            assert o["metadata"]["annotations"][k] == v
        if o["kind"] in ("Deployment",):
            pod = o["spec"]["template"]["metadata"]["labels"]
            sel = o["spec"]["selector"]["matchLabels"]
            assert sel.items() <= pod.items()
            for k, v in common.items():
                assert pod[k] == v
    # Selectors (Service, PDB, HPA target, NetworkPolicy) each pick exactly their pods.
    o = objs(combo)
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in ch.find(o, "Deployment")}

    def picks(selector):
        return sorted(n for n, lab in pods.items() if selector.items() <= lab.items())

    for d in ch.find(o, "Deployment"):
        assert picks(d["spec"]["selector"]["matchLabels"]) == [d["metadata"]["name"]]
    for pdb in ch.find(o, "PodDisruptionBudget"):
        assert picks(pdb["spec"]["selector"]["matchLabels"]) == [pdb["metadata"]["name"]]
    for svc in ch.find(o, "Service"):
        want = sorted(n for n in pods if n == svc["metadata"]["name"] or n.startswith(svc["metadata"]["name"] + "-"))
        assert picks(svc["spec"]["selector"]) == want and want


def test_seed_labels_placement_and_user_labels_cannot_break_selectors():
    o = objs("seed")
    launcher = ch.one(o, "Deployment", "runway-launcher")
    worker = ch.one(o, "Deployment", "runway-worker-dagster")
    for d, component in ((launcher, "k8s-run-launcher"), (worker, "celery-k8s-run-launcher")):
        for labels in (d["metadata"]["labels"], d["spec"]["template"]["metadata"]["labels"]):
            assert labels["app.aipaas.io/app"] == "dagster"
            assert labels["app.aipaas.io/component"] == component
            assert labels["app.aipaas.io/np.middleware"] == "allowed"
    # A user label with a selector's key does not replace the chart's value.
    d = ch.one(ch.render({"launcher": {"labels": {"app.kubernetes.io/component": "mine"}},
                          "commonLabels": {"app.kubernetes.io/instance": "other"}}),
               "Deployment", "runway-launcher")
    assert d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "launcher"
    assert d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] == ch.RELEASE


def test_checksum_annotation_follows_the_config():
    base = ch.render({})
    qps = ch.render({"launcher": {"settings": {"kube-qps": 50}}})
    conc = ch.render({"worker": {"concurrency": 8}})
    token = ch.render({"launcher": {"auth": {"token": "t"}}})
    token2 = ch.render({"launcher": {"auth": {"token": "u"}}})

    def sums(o):
        return {d["metadata"]["name"]: pod_annotations(d) for d in ch.find(o, "Deployment")}

    b, q, c = sums(base), sums(qps), sums(conc)
    # The checksum is the sha256 of the very file the pod mounts.
    cm = ch.one(base, "ConfigMap", "runway-config")["data"]
    assert b["runway-launcher"]["checksum/config"] == hashlib.sha256(cm["launcher.yaml"].encode()).hexdigest()
    assert b["runway-worker-dagster"]["checksum/config"] == hashlib.sha256(
        cm["worker-dagster.yaml"].encode()).hexdigest()
    # A launcher setting rolls the launcher only; a worker setting the workers only.
    assert q["runway-launcher"]["checksum/config"] != b["runway-launcher"]["checksum/config"]
    assert q["runway-worker-dagster"] == b["runway-worker-dagster"]
    assert c["runway-worker-dagster"]["checksum/config"] != b["runway-worker-dagster"]["checksum/config"]
    assert c["runway-launcher"] == b["runway-launcher"]
    assert yaml.safe_load(ch.one(qps, "ConfigMap", "runway-config")["data"]["launcher.yaml"])["kube-qps"] == 50
    # A chart-managed Secret's change rolls the pods too.
    t, t2 = sums(token), sums(token2)
    assert t["runway-launcher"]["checksum/secrets"] != t2["runway-launcher"]["checksum/secrets"]
    assert t["runway-launcher"]["checksum/secrets"] != b["runway-launcher"]["checksum/secrets"]
    broker = sums(ch.render({"celery": {"broker": {"password": "other"}}}))
    assert broker["runway-worker-dagster"]["checksum/secrets"] != b["runway-worker-dagster"]["checksum/secrets"]


def test_one_worker_deployment_per_queue_with_overrides():
    o = objs("queues-hpa-namespaces")
    workers = {d["metadata"]["name"]: d for d in deployments(o, "worker")}
    assert sorted(workers) == ["runway-worker-dagster", "runway-worker-extraqueue"]
    cm = ch.one(o, "ConfigMap", "runway-config")["data"]
    assert sorted(cm) == ["launcher.yaml", "worker-dagster.yaml", "worker-extraqueue.yaml"]
    dagster, extra = workers["runway-worker-dagster"], workers["runway-worker-extraqueue"]
    assert dagster["spec"]["replicas"] == 2
    # The autoscaled queue leaves replicas to its HPA.
    assert "replicas" not in extra["spec"]
    for d, q, concurrency in ((dagster, "dagster", 64), (extra, "extraQueue", 8)):
        c = ch.container(d)
        key = c["args"][-1].rsplit("/", 1)[1]
        assert c["args"] == ["worker", "--config", f"/etc/runway/config/{key}"]
        cfg = yaml.safe_load(cm[key])
        assert cfg["queues"] == [q] and cfg["concurrency"] == concurrency
        assert d["spec"]["template"]["metadata"]["labels"]["runway/queue"] == q
        vol = [v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"][0]
        assert vol["configMap"]["items"] == [{"key": key, "path": key}]
    assert yaml.safe_load(cm["worker-extraqueue.yaml"])["prefetch"] == 16
    assert "prefetch" not in yaml.safe_load(cm["worker-dagster.yaml"])
    # The queue fed by a Dagster 1.1.9 executor builds 1.1.9's step Jobs.
    assert yaml.safe_load(cm["worker-extraqueue.yaml"])["dagster-version"] == "1.1.9"
    assert "dagster-version" not in yaml.safe_load(cm["worker-dagster.yaml"])
    # Overrides replace (resources, nodeSelector) or merge (labels) per queue.
    assert ch.container(extra)["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}}
    assert ch.container(dagster)["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert extra["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert "nodeSelector" not in dagster["spec"]["template"]["spec"]
    assert extra["spec"]["template"]["metadata"]["labels"]["tier"] == "gpu"
    assert "tier" not in dagster["spec"]["template"]["metadata"]["labels"]
    assert {p["metadata"]["name"] for p in ch.find(o, "PodDisruptionBudget")} == {
        "runway-launcher", "runway-worker-dagster", "runway-worker-extraqueue"}
    # The headless metrics Service covers every worker pod.
    svc = ch.one(o, "Service", "runway-worker")
    assert svc["spec"]["clusterIP"] == "None"
    assert "runway/queue" not in svc["spec"]["selector"]


def test_hpa_per_autoscaled_queue():
    o = objs("queues-hpa-namespaces")
    (hpa,) = ch.find(o, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["name"] == "runway-worker-extraqueue"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "runway-worker-extraqueue"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    # Pool-wide autoscaling with custom metrics and behavior.
    custom = [{"type": "External", "external": {
        "metric": {"name": "rabbitmq_queue_messages", "selector": {"matchLabels": {"queue": "dagster"}}},
        "target": {"type": "AverageValue", "averageValue": "10"}}}]
    o = ch.render({"worker": {"autoscaling": {"enabled": True, "metrics": custom,
                                              "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}}}}})
    ch.validate(o)
    (hpa,) = ch.find(o, "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"] == custom
    assert hpa["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 600}}
    assert not ch.find(objs("defaults"), "HorizontalPodAutoscaler")


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


# --- Bad values: the schema and the templates say what is wrong ------------------------------

def test_schema_is_draft7_and_closed():
    """values.schema.json is a valid draft-07 schema, and every object in it
    that lists properties rejects others (the few open ones are named here)."""
    import json
    import jsonschema
    with open(os.path.join(ch.CHART, "values.schema.json")) as f:
        schema = json.load(f)
    jsonschema.Draft7Validator.check_schema(schema)
    open_objects = []

    def walk(node, path):
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(path)
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for n, v in enumerate(node):
                walk(v, f"{path}/{n}")

    walk(schema, "")
    # autoscaling/v2 MetricSpecs are passed through whole: their shape is Kubernetes'.
    assert open_objects == ["/definitions/autoscaling/properties/metrics/items"]
    # The defaults satisfy it (Helm validates the coalesced values on every render).
    jsonschema.Draft7Validator(schema).validate(ch._chart().values)


@pytest.mark.parametrize("values,message", [
    ({"launcher": {"replicas": "two"}}, "at '/launcher/replicas': got string, want integer"),
    ({"launcher": {"replica": 2}}, "at '/launcher': additional properties 'replica' not allowed"),
    ({"launcher": {"settings": {"kube-qpz": 5}}},
     "at '/launcher/settings': additional properties 'kube-qpz' not allowed"),
    # A setting the chart manages cannot be set twice.
    ({"launcher": {"settings": {"listen": "0.0.0.0:1"}}},
     "at '/launcher/settings': additional properties 'listen' not allowed"),
    ({"worker": {"settings": {"queues": "a"}}}, "at '/worker/settings': additional properties 'queues' not allowed"),
    ({"launcher": {"settings": {"health-mode": "strict"}}},
     "at '/launcher/settings/health-mode': value must be one of 'diagnose', 'dagster-compat'"),
    ({"launcher": {"settings": {"kube-qps": -1}}}, "at '/launcher/settings/kube-qps': minimum: got -1, want 0"),
    # The seed's own mistake (dagster-compat erratum 9): resources need limits/requests.
    # (Helm lists several unknown keys in either order.)
    ({"worker": {"resources": {"cpu": "300m", "memory": "2048Mi"}}},
     ("at '/worker/resources': additional properties ", "'cpu'", "'memory'", " not allowed")),
    ({"worker": {"workerQueues": [{"name": "a,b"}]}}, "at '/worker/workerQueues/0/name': 'a,b' does not match pattern"),
    ({"worker": {"workerQueues": [{"replicaCount": 1}]}},
     "at '/worker/workerQueues/0': missing property 'name'"),
    ({"worker": {"workerQueues": [{"name": "q", "replicas": 1}]}},
     "at '/worker/workerQueues/0': additional properties 'replicas' not allowed"),
    ({"worker": {"concurrency": 0}}, "at '/worker/concurrency': minimum: got 0, want 1"),
    ({"logFormat": "xml"}, "at '/logFormat': value must be one of 'json', 'text'"),
    ({"launcher": {"podAntiAffinity": "always"}}, "at '/launcher/podAntiAffinity': value must be one of 'soft', 'hard', ''"),
    ({"jobNamespaces": ["Team_A"]}, "at '/jobNamespaces/0': 'Team_A' does not match pattern"),
    ({"jobNamespaces": ["a", "a"]}, "at '/jobNamespaces': items at 0 and 1 are equal"),
    ({"celery": {"resultBackend": {"type": "mongodb"}}},
     "at '/celery/resultBackend/type': value must be one of 'redis', 'rpc'"),
    ({"celery": {"broker": {"url": "redis://x"}}}, "at '/celery/broker/url': 'redis://x' does not match pattern"),
    ({"launcher": {"tolerations": [{"operator": "Exist"}]}},
     "at '/launcher/tolerations/0/operator': value must be one of 'Exists', 'Equal'"),
    ({"launcher": {"labels": {"app": 1}}}, "at '/launcher/labels/app': got number, want string"),
    ({"launcher": {"securityContext": {"runAsRoot": True}}},
     "at '/launcher/securityContext': additional properties 'runAsRoot' not allowed"),
    ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"),
    ({"serviceMonitor": {"interval": "30"}}, "at '/serviceMonitor/interval': '30' does not match pattern"),
    ({"unknownTop": 1}, "at '': additional properties 'unknownTop' not allowed"),
])
def test_schema_rejects_bad_values_with_the_path(values, message):
    err = ch.schema_error(values)
    assert "values don't meet the specifications of the schema" in err
    for part in (message if isinstance(message, tuple) else (message,)):
        assert part in err, err


@pytest.mark.parametrize("values,message", [
    ({"worker": {"workerQueues": [{"name": "extra_queue"}, {"name": "extra.queue"}]}},
     'queues "extra_queue" and "extra.queue" would both be deployed as "worker-extra-queue"; rename one'),
    ({"worker": {"workerQueues": [{"name": "___"}]}}, 'queue "___" has no letter or digit'),
    ({"worker": {"workerQueues": [{"name": "q", "autoscaling": {"enabled": True, "minReplicas": 5,
                                                                  "maxReplicas": 2}}]}},
     "worker.workerQueues[q].autoscaling: maxReplicas (2) is below minReplicas (5)"),
    ({"worker": {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": None}}},
     "give targetCPUUtilizationPercentage, targetMemoryUtilizationPercentage or metrics"),
    ({"launcher": {"tls": {"enabled": True}}}, "launcher.tls.cert: give the PEM certificate, or launcher.tls.existingSecret"),
    ({"serviceAccount": {"create": False}}, "serviceAccount.name: give the existing ServiceAccount"),
])
def test_templates_reject_inconsistent_values(values, message):
    assert message in ch.render_error(values)


# --- The rendered containers run: real binaries, dev cluster, loopback services ---------------

LOOPBACK_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
LOOPBACK_BACKEND = "redis://127.0.0.1:6379/0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed() -> tuple[str, str]:
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "runway-launcher")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("runway-launcher")]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


@pytest.fixture(scope="module")
def dev_cluster():
    """`runway dev-cluster` on a free loopback port, with the seed's namespace."""
    assert os.path.exists(RUNWAY_BIN), f"{RUNWAY_BIN} not built (cargo build -p runway --features dev-cluster)"
    with start_dev_cluster() as path:
        from kubernetes import client, config
        api = config.new_client_from_config(config_file=path)
        for ns in (ch.NAMESPACE,):
            client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        api.close()
        yield path


@pytest.fixture(scope="module")
def rendered_for_run():
    """The seed example as deployed, plus TLS, a token and step publishing on
    the launcher. Set through the chart's own values, not rewritten after
    rendering: ports the OS picked free (this machine is shared), and a queue
    of the test's own, so the worker cannot take another test's tasks from
    the loopback RabbitMQ (the queue is deleted afterwards)."""
    cert, key = _self_signed()
    ports = {"grpc": _free_port(), "http": _free_port(), "worker": _free_port()}
    queue = f"runway-chart-test-{uuid.uuid4().hex[:8]}"
    values = ch.merge(SEED, {
        "launcher": {"grpcPort": ports["grpc"], "httpPort": ports["http"], "publishSteps": True,
                     "tls": {"enabled": True, "cert": cert, "key": key},
                     "auth": {"token": "chart-test-token"}},
        "worker": {"httpPort": ports["worker"], "workerQueues": [{"name": queue, "replicaCount": 2}]},
    })
    o = ch.render(values)
    ch.validate(o)
    yield o, ports, queue
    import amqp
    with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest") as conn:
        ch_ = conn.channel()
        ch_.queue_delete(queue)
        ch_.exchange_delete(queue)


def _replacements(kubeconfig: str) -> chart_pod.Replacements:
    conn = "runway-connections"
    return chart_pod.Replacements(
        binary=RUNWAY_BIN,
        kubeconfig=kubeconfig,
        secret_values={
            # The seed's dagster-rabbitmq / dagster-redis-master only resolve in the cluster.
            (conn, "broker-url"): LOOPBACK_BROKER,
            (conn, "result-backend"): LOOPBACK_BACKEND,
            # The Dagster release's Secret, not rendered by this chart.
            ("dagster-postgresql-secret", "postgresql-password"): "postgres",
        },
    )


def _run_until_ready(o, deploy_name, port, kubeconfig):
    pod = chart_pod.local_pod(o, ch.one(o, "Deployment", deploy_name), _replacements(kubeconfig))
    try:
        pod.start()
        status, body = pod.wait_http(port, "/ready", timeout=45)
        assert status == 200, f"/ready answered {status} {body!r}:\n{pod.output()}"
        assert pod.wait_http(port, "/live", timeout=5)[0] == 200
        status, metrics = pod.wait_http(port, "/metrics", timeout=5)
        assert status == 200 and metrics.strip(), metrics[-200:]
        code = pod.stop()
        out = pod.output()
        assert code == 0, f"exited {code} on SIGTERM:\n{out}"
        return pod, out
    finally:
        pod.stop()
        pod.cleanup()


def _flags(subcommand: str) -> set[str]:
    out = subprocess.run([RUNWAY_BIN, subcommand, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"`runway {subcommand} --help` failed:\n{out.stderr[-2000:]}"
    return set(re.findall(r"^\s+(?:-\w, )?--([a-z][a-z0-9-]*)", out.stdout, re.M)) - {"help", "config"}


@pytest.mark.parametrize("subcommand,settings", [("serve", "serveSettings"), ("worker", "workerSettings")])
def test_config_keys_and_settings_are_real_flags(subcommand, settings):
    """Every key the chart writes into a --config file, and every key the
    schema lets `settings` hold, is a flag of the binary. The worker case
    needs `runway worker` (issue 6)."""
    flags = _flags(subcommand)
    import json
    with open(os.path.join(ch.CHART, "values.schema.json")) as f:
        allowed = set(json.load(f)["definitions"][settings]["properties"])
    assert allowed <= flags, allowed - flags
    prefix = "launcher" if subcommand == "serve" else "worker-"
    written = set()
    for combo in COMBOS:
        for cm in ch.find(objs(combo), "ConfigMap"):
            for key, text in cm["data"].items():
                if key.startswith(prefix):
                    written |= set(yaml.safe_load(text))
    assert written and written <= flags, written - flags
    # A key the chart manages cannot also be given through settings.
    managed = set()
    for cm in ch.find(ch.render({"launcher": {"tls": {"enabled": True, "existingSecret": "t",
                                                      "requireClientCert": True},
                                              "auth": {"token": "t"}},
                                 "otlpEndpoint": "http://otel:4317",
                                 "worker": {"prefetch": 8}}), "ConfigMap"):
        for key, text in cm["data"].items():
            if key.startswith(prefix):
                managed |= set(yaml.safe_load(text))
    assert managed and not managed & allowed, managed & allowed


def test_rendered_launcher_runs_and_becomes_ready(dev_cluster, rendered_for_run):
    """The launcher Deployment's exact command, args, env and mounted files
    (ConfigMap, TLS and token Secrets), as `runway serve` with the real binary."""
    o, ports, _ = rendered_for_run
    c = ch.container(ch.one(o, "Deployment", "runway-launcher"))
    assert c["args"] == ["serve", "--config", "/etc/runway/config/launcher.yaml"]
    assert {"RUNWAY_BROKER_URL", "RUNWAY_RESULT_BACKEND"} <= set(ch.env_map(c))
    _run_until_ready(o, "runway-launcher", ports["http"], dev_cluster)


def test_rendered_worker_runs_and_becomes_ready(dev_cluster, rendered_for_run):
    """NEEDS `runway worker` (issue 6). Fails, never skips, while the binary
    has no worker subcommand: run it again once the worker lands.

    The worker Deployment's exact command, args, env and config file, as
    `runway worker` against loopback RabbitMQ and Redis and the dev cluster."""
    help_ = subprocess.run([RUNWAY_BIN, "worker", "--help"], capture_output=True, text=True, timeout=30)
    assert help_.returncode == 0, (
        "`runway worker --help` failed: this binary has no `runway worker` yet (issue 6), so the "
        f"chart's worker Deployment cannot be run:\n{help_.stderr[-2000:]}")
    o, ports, queue = rendered_for_run
    name = f"runway-worker-{queue}"
    c = ch.container(ch.one(o, "Deployment", name))
    assert c["args"] == ["worker", "--config", f"/etc/runway/config/worker-{queue}.yaml"]
    assert {"RUNWAY_BROKER_URL", "RUNWAY_RESULT_BACKEND", "DAGSTER_PG_PASSWORD"} <= set(ch.env_map(c))
    cfg = yaml.safe_load(ch.one(o, "ConfigMap", "runway-config")["data"][f"worker-{queue}.yaml"])
    assert cfg["dagster-version"] == "1.1.9"
    _, out = _run_until_ready(o, name, ports["worker"], dev_cluster)
    assert queue in out, out
