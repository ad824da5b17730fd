//! Jobs: the defaults the real API server fills in (the generated selector
//! and the tracking labels among them), validation, and what an update may
//! not change.

use serde_json::{json, Map, Value};

use super::meta::{check_meta, check_non_negative, Causes};
use super::pod::{check_pod_spec, default_pod_spec};
use super::{default, ensure_object};

pub(super) fn default_job(root: &mut Map<String, Value>, uid: &str, name: &str) {
    let spec = ensure_object(root, "spec");
    default(spec, "backoffLimit", json!(6));
    default(spec, "completions", json!(1));
    default(spec, "parallelism", json!(1));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "manualSelector", json!(false));
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    let manual = spec.get("manualSelector") == Some(&json!(true));
    let template = ensure_object(spec, "template");
    let tmeta = ensure_object(template, "metadata");
    // The generated selector and the tracking labels (kube's generateSelector).
    if !manual {
        let tlabels = ensure_object(tmeta, "labels");
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", uid),
            ("batch.kubernetes.io/job-name", name),
            ("controller-uid", uid),
            ("job-name", name),
        ] {
            tlabels.insert(k.into(), json!(v));
        }
    }
    let template_labels = tmeta.get("labels").cloned().unwrap_or_else(|| json!({}));
    let tspec = ensure_object(template, "spec");
    default_pod_spec(tspec, true);
    if !manual {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    }
    // Defaulting copies the template's labels when the Job has none; in the
    // real server that copy shares the map the selector labels land in.
    let meta = ensure_object(root, "metadata");
    let empty = meta
        .get("labels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    if empty {
        meta.insert("labels".into(), template_labels);
    }
    root.insert("status".into(), json!({}));
}

pub(super) fn validate_job(c: &mut Causes, job: &Value) {
    let spec = &job["spec"];
    check_non_negative(c, "spec.backoffLimit", &spec["backoffLimit"], false);
    check_non_negative(c, "spec.parallelism", &spec["parallelism"], false);
    check_non_negative(c, "spec.completions", &spec["completions"], false);
    check_non_negative(
        c,
        "spec.activeDeadlineSeconds",
        &spec["activeDeadlineSeconds"],
        true,
    );
    check_non_negative(
        c,
        "spec.ttlSecondsAfterFinished",
        &spec["ttlSecondsAfterFinished"],
        false,
    );
    let template = &spec["template"];
    check_meta(c, "spec.template.metadata", &template["metadata"]);
    // The selector must select the template, or the Job could never see its pods.
    if let Some(ml) = spec["selector"]["matchLabels"].as_object() {
        let tl = &template["metadata"]["labels"];
        if ml.iter().any(|(k, v)| &tl[k] != v) {
            c.invalid(
                "spec.template.metadata.labels",
                tl,
                "`selector` does not match template `labels`",
            );
        }
    } else if spec["manualSelector"] == true {
        c.required("spec.selector", "");
    }
    let tspec = &template["spec"];
    check_pod_spec(c, "spec.template.spec", tspec);
    let policy = &tspec["restartPolicy"];
    if policy.is_null() {
        c.required("spec.template.spec.restartPolicy", "");
        c.not_supported(
            "spec.template.spec.restartPolicy",
            &json!(""),
            &["OnFailure", "Never"],
        );
    } else if !matches!(policy.as_str(), Some("OnFailure" | "Never")) {
        c.not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["OnFailure", "Never"],
        );
    }
}

/// What an update may not change in a Job; a changed spec bumps the generation.
pub(super) fn check_update(c: &mut Causes, root: &mut Map<String, Value>, old: &Value) {
    let spec = ensure_object(root, "spec");
    for immutable in [
        "selector",
        "completions",
        "completionMode",
        "podFailurePolicy",
    ] {
        let before = old["spec"].get(immutable);
        if spec.get(immutable).is_none() {
            if let Some(b) = before {
                spec.insert(immutable.into(), b.clone());
            }
        } else if spec.get(immutable) != before {
            c.invalid(
                format!("spec.{immutable}"),
                &spec[immutable],
                "field is immutable",
            );
        }
    }
    if spec.get("template") != old["spec"].get("template") {
        // Only a suspended Job that never started may change its template
        // scheduling directives; Dagster never does.
        c.invalid("spec.template", &json!("..."), "field is immutable");
    }
    if root.get("spec") != old.get("spec") {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        ensure_object(root, "metadata").insert("generation".into(), json!(generation));
    }
}
