use serde_json::{json, Value};

use super::*;
use crate::k8s::config::schema::ids;

fn obj(v: Value) -> Map {
    v.as_object().cloned().unwrap()
}

#[test]
fn camel_keys_become_snake_only_inside_models() {
    let raw = obj(json!({
        "envFrom": [{"configMapRef": {"name": "cm"}}],
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "securityContext": {"runAsUser": 1000},
        "volume_mounts": [{"mountPath": "/x", "name": "v"}]
    }));
    let out = snake_case_dict(ids::CONTAINER, &raw, "c").unwrap();
    assert_eq!(
        Value::Object(out),
        json!({
            "env_from": [{"config_map_ref": {"name": "cm"}}],
            "resources": {"limits": {"nvidia.com/gpu": 1}},
            "security_context": {"run_as_user": 1000},
            "volume_mounts": [{"mount_path": "/x", "name": "v"}]
        })
    );
}

#[test]
fn opaque_maps_keep_their_keys() {
    let raw = obj(json!({"labels": {"fooBar": "x"}, "annotations": {"a.b/cD": "y"}}));
    let out = snake_case_dict(ids::OBJECT_META, &raw, "m").unwrap();
    assert_eq!(out["labels"], json!({"fooBar": "x"}));
    assert_eq!(out["annotations"], json!({"a.b/cD": "y"}));
}

#[test]
fn both_forms_and_unknown_keys_are_refused_with_the_path() {
    let both = obj(json!({"imagePullPolicy": "A", "image_pull_policy": "B"}));
    let err = snake_case_dict(ids::CONTAINER, &both, "tags.x").unwrap_err();
    assert!(matches!(err, Error::BothForms { .. }), "{err}");

    let unknown = obj(json!({"resources": {"cpu": "1"}}));
    let err = snake_case_dict(
        ids::CONTAINER,
        &unknown,
        "launcher.run_k8s_config.container_config",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("launcher.run_k8s_config.container_config.resources.cpu: unknown key"),
        "{msg}"
    );
    assert!(msg.contains("limits, requests"), "{msg}");
}

#[test]
fn null_lists_and_models_are_refused() {
    let err = snake_case_dict(ids::CONTAINER, &obj(json!({"env": null})), "c").unwrap_err();
    assert_eq!(
        err.to_string(),
        "c.env: expected a list (list[V1EnvVar]), got null"
    );
    let err = snake_case_dict(ids::POD_SPEC, &obj(json!({"affinity": "x"})), "p").unwrap_err();
    assert!(err
        .to_string()
        .starts_with("p.affinity: expected an object"));
}

#[test]
fn wire_output_coerces_like_the_python_client() {
    let job = obj(json!({
        "metadata": {"name": "j", "labels": {"n": 5, "f": 0.5, "b": true, "z": null}},
        "spec": {"backoff_limit": "3", "ttl_seconds_after_finished": 7.9,
                 "template": {"spec": {"containers": [{"name": "c", "image": null}]}}}
    }));
    let wire = model_to_wire(ids::JOB, &job, "job").unwrap();
    assert_eq!(
        wire,
        json!({
            "metadata": {"name": "j", "labels": {"n": "5", "f": "0.5", "b": "True", "z": null}},
            "spec": {"backoffLimit": 3, "ttlSecondsAfterFinished": 7,
                     "template": {"spec": {"containers": [{"name": "c"}]}}}
        })
    );
}

#[test]
fn required_fields_are_checked() {
    let job = obj(json!({"spec": {"template": {"spec": {"containers": [{"image": "i"}]}}}}));
    let err = model_to_wire(ids::JOB, &job, "job").unwrap_err();
    assert_eq!(
        err.to_string(),
        "job.spec.template.spec.containers[0]: V1Container requires field \"name\""
    );
}

#[test]
fn string_booleans_and_server_fields_are_refused() {
    let spec = obj(json!({"containers": [], "automount_service_account_token": "false"}));
    assert!(model_to_wire(ids::POD_SPEC, &spec, "p").is_err());
    let meta = obj(json!({"creation_timestamp": "2020-01-01T00:00:00Z"}));
    let err = model_to_wire(ids::OBJECT_META, &meta, "m").unwrap_err();
    assert!(matches!(err, Error::ServerSet { .. }));
}
