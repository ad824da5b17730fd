use serde_json::{json, Value};

use super::*;

fn job() -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "labels": {"any": "x"}},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36"}]}}}})
}

#[test]
fn strict_refuses_unknown_fields_with_the_decoders_message() {
    let mut body = job();
    body["spec"]["bogusField"] = json!(1);
    body["spec"]["template"]["spec"]["containers"][0]["bogus"] = json!("x");
    let unknown = check(Kind::Job, &mut body, FieldValidation::Strict).unwrap_err();
    assert_eq!(
        unknown.paths(),
        ["spec.bogusField", "spec.template.spec.containers[0].bogus"]
    );
    let err = unknown.body_error(Kind::Job);
    assert_eq!((err.code, err.reason), (400, "BadRequest"));
    assert_eq!(
        err.message,
        "Job in version \"v1\" cannot be handled as a Job: strict decoding error: \
         unknown field \"spec.bogusField\", unknown field \
         \"spec.template.spec.containers[0].bogus\""
    );
    let err = unknown.apply_error(Kind::Job, "ns", "j");
    assert_eq!(
        err.message,
        "failed to create typed patch object (ns/j; batch/v1, Kind=Job): errors:\n  \
         .spec.bogusField: field not declared in schema\n  \
         .spec.template.spec.containers[name=\"main\"].bogus: field not declared in schema"
    );
}

#[test]
fn warn_and_ignore_drop_unknown_fields() {
    let mut body = job();
    body["metadata"]["bogus"] = json!(true);
    let warnings = check(Kind::Job, &mut body, FieldValidation::Warn).unwrap();
    assert_eq!(warnings, ["unknown field \"metadata.bogus\""]);
    assert_eq!(body["metadata"].get("bogus"), None);
    assert_eq!(body["metadata"]["labels"], json!({"any": "x"}));

    let mut body = job();
    body["status"] = json!({"bogus": 1, "active": 1});
    assert!(check(Kind::Job, &mut body, FieldValidation::Ignore)
        .unwrap()
        .is_empty());
    assert_eq!(body["status"], json!({"active": 1}));
}

#[test]
fn core_kinds_and_free_form_fields() {
    let mut pod = json!({"metadata": {"name": "p", "managedFields": [{"fieldsV1": {"f:x": {}}}]},
                         "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1"}}}]}});
    assert!(take_unknown(Kind::Pod, &mut pod).is_empty());
    let mut secret = json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}, "type": "Opaque",
                            "data": {"x": "eA=="}, "extra": 1});
    assert_eq!(take_unknown(Kind::Secret, &mut secret).paths(), ["extra"]);
}

#[test]
fn the_seed_job_has_no_unknown_fields() {
    let text = include_str!("../../../../../tests/fixtures/jobs/seed_k8s_run.json");
    let mut job: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        take_unknown(Kind::Job, &mut job).paths(),
        Vec::<String>::new()
    );
}

#[test]
fn directives_parse_as_the_real_server_names_them() {
    assert_eq!(
        FieldValidation::parse(None, "CreateOptions").unwrap(),
        FieldValidation::Warn
    );
    assert_eq!(
        FieldValidation::parse(Some("Strict"), "PatchOptions").unwrap(),
        FieldValidation::Strict
    );
    let err = FieldValidation::parse(Some("strict"), "CreateOptions").unwrap_err();
    assert_eq!(err.code, 422);
    assert!(
        err.message.starts_with(
            "CreateOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value"
        ),
        "{}",
        err.message
    );
}
