use serde_json::{json, Value};

use super::meta::{check_labels, is_dns1123_subdomain, Causes};
use super::pod::image_tag_is_latest;
use super::*;

fn create(kind: Kind, body: Value) -> Result<Value, ApiError> {
    let mut obj = body;
    prepare_create(
        kind,
        &mut obj,
        "default",
        "uid-1",
        "2026-01-01T00:00:00Z",
        "abcde",
    )?;
    Ok(obj)
}

fn job(name: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
}

#[test]
fn job_gets_selector_labels_and_defaults() {
    let j = create(Kind::Job, job("dagster-run-1")).unwrap();
    assert_eq!(j.get("kind"), None);
    assert_eq!(j["spec"]["backoffLimit"], 6);
    assert_eq!(
        j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        "uid-1"
    );
    let tl = &j["spec"]["template"]["metadata"]["labels"];
    assert_eq!(tl["job-name"], "dagster-run-1");
    assert_eq!(tl["controller-uid"], "uid-1");
    // no Job labels given: they default to the template's
    assert_eq!(j["metadata"]["labels"], *tl);
    let c = &j["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(j["metadata"]["namespace"], "default");
    assert_eq!(j["metadata"]["generation"], 1);
}

#[test]
fn subdomain_names_are_limited_in_total_not_per_part() {
    let long = "dagster-dagster-user-deployments-k8s-example-user-code-1-user-env";
    assert!(long.len() > 63);
    assert!(is_dns1123_subdomain(long));
    assert!(is_dns1123_subdomain("a.b-c.d"));
    assert!(!is_dns1123_subdomain(&"a".repeat(254)));
    assert!(!is_dns1123_subdomain("a..b"));
    assert!(!is_dns1123_subdomain("-a"));
    assert!(!is_dns1123_subdomain("A"));
}

#[test]
fn job_labels_given_are_kept() {
    let mut body = job("j");
    body["metadata"]["labels"] = json!({"app": "x"});
    let j = create(Kind::Job, body).unwrap();
    assert_eq!(j["metadata"]["labels"], json!({"app": "x"}));
}

#[test]
fn invalid_name_and_restart_policy_are_422_with_causes() {
    let mut body = job("Bad_Name");
    body["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    let err = create(Kind::Job, body).unwrap_err();
    assert_eq!(err.code, 422);
    let causes = err.details.clone().unwrap()["causes"].clone();
    let fields: Vec<&str> = causes
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["field"].as_str()).collect())
        .unwrap();
    assert!(fields.contains(&"metadata.name"), "{fields:?}");
    assert!(
        fields.contains(&"spec.template.spec.restartPolicy"),
        "{fields:?}"
    );
    assert!(
        err.message
            .starts_with("Job.batch \"Bad_Name\" is invalid: "),
        "{}",
        err.message
    );
}

#[test]
fn long_job_name_fails_on_the_job_name_label() {
    let name = "a".repeat(64);
    let err = create(Kind::Job, job(&name)).unwrap_err();
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("spec.template.metadata.labels"),
        "{}",
        err.message
    );
}

#[test]
fn label_rules() {
    let mut c = Causes::default();
    check_labels(
        &mut c,
        "metadata.labels",
        &json!({"ok/key": "v", "bad key": "v", "k": "-bad", "x/": "", "UPPER.example.com/a": "b"}),
    );
    let fields: Vec<String> = c.0.iter().map(|c| c.message.clone()).collect();
    assert_eq!(fields.len(), 4, "{fields:?}");
}

#[test]
fn generate_name_and_pod_defaults() {
    let p = create(
        Kind::Pod,
        json!({"metadata": {"generateName": "job-"},
               "spec": {"containers": [{"name": "c", "image": "img",
                        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}),
    )
    .unwrap();
    assert_eq!(p["metadata"]["name"], "job-abcde");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["status"]["qosClass"], "Guaranteed");
    assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
}

#[test]
fn wrong_kind_is_400() {
    let err = create(Kind::Job, json!({"kind": "Pod", "metadata": {"name": "x"}})).unwrap_err();
    assert_eq!(err.code, 400);
}

#[test]
fn update_keeps_server_fields_and_refuses_template_change() {
    let old = create(Kind::Job, job("j")).unwrap();
    let mut new = old.clone();
    new["metadata"]["uid"] = json!("other");
    new["metadata"]["labels"]["extra"] = json!("1");
    new["status"] = json!({"active": 5});
    assert!(prepare_update(Kind::Job, &old, &mut new, false).is_ok());
    assert_eq!(new["metadata"]["uid"], "uid-1");
    assert_eq!(new["status"], json!({}));

    let mut changed = old.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
    let err = prepare_update(Kind::Job, &old, &mut changed, false).unwrap_err();
    assert_eq!(err.code, 422);

    let mut status = json!({"status": {"active": 1}, "spec": {"backoffLimit": 99}});
    assert!(prepare_update(Kind::Job, &old, &mut status, true).is_ok());
    assert_eq!(status["status"]["active"], 1);
    assert_eq!(status["spec"]["backoffLimit"], 6);
}

#[test]
fn latest_tag_rule() {
    assert!(image_tag_is_latest("busybox"));
    assert!(image_tag_is_latest("reg:5000/busybox"));
    assert!(image_tag_is_latest("busybox:latest"));
    assert!(!image_tag_is_latest("reg:5000/busybox:1.2"));
    assert!(!image_tag_is_latest("busybox@sha256:abc"));
}
