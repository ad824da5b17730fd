"""chart/: the rendered objects checked for what the chart promises: least-privilege RBAC,
probes and ports, availability, restricted security contexts, labels and selectors, config
checksums, one worker Deployment per queue and an HPA per autoscaled queue."""
from __future__ import annotations

import hashlib
import os
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chart_helm as ch  # noqa: E402
from chart_cases import COMBOS, STANDARD_LABELS, deployments, objs, pod_annotations  # noqa: E402


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
