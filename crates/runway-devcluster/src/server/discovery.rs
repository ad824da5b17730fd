//! Discovery: `/version`, `/api`, `/apis` and the resource lists of `v1`
//! and `batch/v1`, as kube-rs `Discovery` and kubectl read them.

use serde_json::{json, Value};

pub(super) fn version() -> Value {
    json!({
        "major": "1", "minor": "36", "gitVersion": "v1.36.0-runway-devcluster",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
        "platform": "linux/amd64", "emulationMajor": "1", "emulationMinor": "36",
        "minCompatibilityMajor": "1", "minCompatibilityMinor": "35"
    })
}

pub(super) fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
}

pub(super) fn api_groups() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
        "name": "batch",
        "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}
    }]})
}

fn resource(name: &str, kind: &str, namespaced: bool, verbs: &[&str], short: &[&str]) -> Value {
    let mut r = json!({"name": name, "singularName": if name.contains('/') { "" } else { name.trim_end_matches('s') },
                       "namespaced": namespaced, "kind": kind, "verbs": verbs});
    if !short.is_empty() {
        r["shortNames"] = json!(short);
    }
    r
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub(super) fn core_resources() -> Value {
    json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        resource("namespaces", "Namespace", false, &["create", "delete", "get", "list", "patch", "update", "watch"], &["ns"]),
        resource("namespaces/status", "Namespace", false, &["get", "patch", "update"], &[]),
        resource("pods", "Pod", true, ALL_VERBS, &["po"]),
        resource("pods/status", "Pod", true, &["get", "patch", "update"], &[]),
        resource("pods/log", "Pod", true, &["get"], &[]),
        resource("events", "Event", true, ALL_VERBS, &["ev"]),
        resource("configmaps", "ConfigMap", true, ALL_VERBS, &["cm"]),
        resource("secrets", "Secret", true, ALL_VERBS, &[]),
        resource("serviceaccounts", "ServiceAccount", true, ALL_VERBS, &["sa"]),
    ]})
}

pub(super) fn batch_resources() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "batch/v1", "resources": [
        resource("jobs", "Job", true, ALL_VERBS, &[]),
        resource("jobs/status", "Job", true, &["get", "patch", "update"], &[]),
    ]})
}
