//! Pods: the defaults the real API server fills in (also for a Job's pod
//! template), the QoS class, validation of a pod spec, and what an update may
//! not change.

use serde_json::{json, Map, Value};

use super::default;
use super::meta::{is_dns1123_label, is_dns1123_subdomain, Causes};
use super::meta::{DNS1123_LABEL_MSG, DNS1123_SUBDOMAIN_MSG};

pub(super) fn default_pod_spec(spec: &mut Map<String, Value>, in_template: bool) {
    if !in_template {
        default(spec, "restartPolicy", json!("Always"));
    }
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    if !in_template {
        let sa = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| spec.get("serviceAccount").and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_owned();
        spec.insert("serviceAccountName".into(), json!(sa));
        spec.insert("serviceAccount".into(), json!(sa));
        default(spec, "enableServiceLinks", json!(true));
        default(spec, "priority", json!(0));
        default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                default_container(c);
            }
        }
    }
}

fn default_container(c: &mut Map<String, Value>) {
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let policy = if image_tag_is_latest(image) {
        "Always"
    } else {
        "IfNotPresent"
    };
    default(c, "imagePullPolicy", json!(policy));
    if let Some(Value::Array(env)) = c.get_mut("env") {
        for e in env.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(Value::Object(from)) = e.get_mut("valueFrom") {
                if let Some(Value::Object(f)) = from.get_mut("fieldRef") {
                    default(f, "apiVersion", json!("v1"));
                }
            }
        }
    }
}

/// `IfNotPresent` unless the image has no tag or the tag `latest` (digests count as tags).
pub(super) fn image_tag_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

/// `status.qosClass` as the real API server derives it from resources.
pub(super) fn set_qos(root: &mut Map<String, Value>) {
    let containers = root
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut all_guaranteed = !containers.is_empty();
    for c in &containers {
        let limits = c["resources"]["limits"].as_object();
        let requests = c["resources"]["requests"].as_object();
        if limits.is_some_and(|l| !l.is_empty()) || requests.is_some_and(|r| !r.is_empty()) {
            any = true;
        }
        let guaranteed = ["cpu", "memory"].iter().all(|r| {
            let l = limits.and_then(|l| l.get(*r));
            let q = requests.and_then(|q| q.get(*r)).or(l);
            l.is_some() && l == q
        });
        all_guaranteed &= guaranteed;
    }
    let qos = if all_guaranteed {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    };
    if let Some(Value::Object(status)) = root.get_mut("status") {
        status.insert("qosClass".into(), json!(qos));
    }
}

/// A pod spec (`prefix` is `spec` or `spec.template.spec`): its containers,
/// service account and volumes.
pub(super) fn check_pod_spec(c: &mut Causes, prefix: &str, spec: &Value) {
    let containers = spec["containers"].as_array();
    if containers.is_none_or(Vec::is_empty) {
        c.required(format!("{prefix}.containers"), "");
    }
    let mut names = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(items) = spec[list].as_array() else {
            if !spec[list].is_null() {
                c.invalid(format!("{prefix}.{list}"), &spec[list], "must be a list");
            }
            continue;
        };
        for (i, ctr) in items.iter().enumerate() {
            check_container(c, &format!("{prefix}.{list}[{i}]"), ctr, &mut names);
        }
    }
    if let Some(sa) = spec["serviceAccountName"].as_str() {
        if !sa.is_empty() && !is_dns1123_subdomain(sa) {
            c.invalid(
                format!("{prefix}.serviceAccountName"),
                &json!(sa),
                DNS1123_SUBDOMAIN_MSG,
            );
        }
    }
    if let Some(vols) = spec["volumes"].as_array() {
        let mut seen = Vec::new();
        for (i, v) in vols.iter().enumerate() {
            match v["name"].as_str() {
                None | Some("") => c.required(format!("{prefix}.volumes[{i}].name"), ""),
                Some(n) if seen.contains(&n) => {
                    c.duplicate(format!("{prefix}.volumes[{i}].name"), &v["name"]);
                }
                Some(n) => seen.push(n),
            }
        }
    }
}

/// One container at `at`; `names` are those of the pod's earlier containers.
fn check_container<'a>(c: &mut Causes, at: &str, ctr: &'a Value, names: &mut Vec<&'a str>) {
    match ctr["name"].as_str() {
        None | Some("") => c.required(format!("{at}.name"), ""),
        Some(n) if !is_dns1123_label(n) => {
            c.invalid(format!("{at}.name"), &ctr["name"], DNS1123_LABEL_MSG);
        }
        Some(n) if names.contains(&n) => c.duplicate(format!("{at}.name"), &ctr["name"]),
        Some(n) => names.push(n),
    }
    if ctr["image"].as_str().is_none_or(|s| s.trim().is_empty()) {
        c.required(format!("{at}.image"), "");
    }
    for field in ["command", "args"] {
        let v = &ctr[field];
        if !v.is_null() && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            c.invalid(format!("{at}.{field}"), v, "must be a list of strings");
        }
    }
    for (j, e) in ctr["env"].as_array().into_iter().flatten().enumerate() {
        if e["name"].as_str().is_none_or(str::is_empty) {
            c.required(format!("{at}.env[{j}].name"), "");
        }
        if e.get("value").is_some() && e.get("valueFrom").is_some() {
            c.invalid(
                format!("{at}.env[{j}].valueFrom"),
                &json!(""),
                "may not be specified when `value` is not empty",
            );
        }
    }
    let policy = &ctr["imagePullPolicy"];
    if !policy.is_null() && !matches!(policy.as_str(), Some("Always" | "IfNotPresent" | "Never")) {
        c.not_supported(
            format!("{at}.imagePullPolicy"),
            policy,
            &["Always", "IfNotPresent", "Never"],
        );
    }
}

/// A pod's spec may change only in its images, activeDeadlineSeconds and
/// tolerations.
pub(super) fn check_update(c: &mut Causes, root: &Map<String, Value>, old: &Value) {
    let mut a = root.get("spec").cloned().unwrap_or(Value::Null);
    let mut b = old["spec"].clone();
    for spec in [&mut a, &mut b] {
        if let Some(Value::Array(cs)) = spec.get_mut("containers") {
            for ctr in cs.iter_mut().filter_map(Value::as_object_mut) {
                ctr.remove("image");
            }
        }
        if let Some(m) = spec.as_object_mut() {
            m.remove("activeDeadlineSeconds");
            m.remove("tolerations");
        }
    }
    if a != b {
        c.forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`, \
             `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, \
             `spec.tolerations` (only additions to existing tolerations), \
             `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was \
             previously negative)",
        );
    }
}
