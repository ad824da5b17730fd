"""chart/: rendered by the real Helm engine (helm-python-sdk) and linted strict, every
manifest validated with kubernetes-validate --strict for Kubernetes 1.36, and bad values
rejected by the schema (or the templates) with their path in the message.

Shared values and helpers: chart_cases.py; the rendered objects' contents:
test_chart_render.py and test_chart_config.py; the containers run: test_chart_pods.py.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chart_helm as ch  # noqa: E402
from chart_cases import COMBOS, objs  # noqa: E402


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
