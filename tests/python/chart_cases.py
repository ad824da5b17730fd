"""What the chart tests share: the runway binary they run, the chart's example values,
the option combinations each rendered once, and small readers of rendered objects."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chart_helm as ch  # noqa: E402

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
