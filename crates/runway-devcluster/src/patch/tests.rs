use serde_json::json;

use super::*;

fn patch(target: Value, body: Value, ty: PatchType) -> Result<Value, ApiError> {
    apply_patch(&target, body.to_string().as_bytes(), ty)
}

#[test]
fn content_types() {
    assert_eq!(
        PatchType::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(),
        PatchType::Merge
    );
    assert_eq!(
        PatchType::from_content_type("application/strategic-merge-patch+json").unwrap(),
        PatchType::StrategicMerge
    );
    assert_eq!(
        PatchType::from_content_type("text/plain").unwrap_err().code,
        415
    );
}

#[test]
fn merge_patch_is_rfc_7386() {
    let out = patch(
        json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": [1, 2]}}),
        json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"x": [3]}}),
        PatchType::Merge,
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"x": [3]}})
    );
    assert_eq!(
        patch(json!({}), json!([1]), PatchType::Merge)
            .unwrap_err()
            .code,
        400
    );
}

#[test]
fn json_patch_ops_and_failures() {
    let target = json!({"spec": {"suspend": false, "list": ["a"]}});
    let out = patch(
        target.clone(),
        json!([
            {"op": "test", "path": "/spec/suspend", "value": false},
            {"op": "replace", "path": "/spec/suspend", "value": true},
            {"op": "add", "path": "/spec/list/-", "value": "b"},
            {"op": "copy", "from": "/spec/list/0", "path": "/spec/first"},
            {"op": "remove", "path": "/spec/list/0"}
        ]),
        PatchType::Json,
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"spec": {"suspend": true, "list": ["b"], "first": "a"}})
    );
    let failed_test = patch(
        target.clone(),
        json!([{"op": "test", "path": "/spec/suspend", "value": true}]),
        PatchType::Json,
    );
    assert_eq!(failed_test.unwrap_err().code, 422);
    let missing = patch(
        target,
        json!([{"op": "remove", "path": "/nope"}]),
        PatchType::Json,
    );
    assert_eq!(missing.unwrap_err().code, 422);
}

#[test]
fn json_patch_errors_are_the_real_servers() {
    // An object body (the Python client's mistake) is Go's decoder error.
    let err = patch(json!({}), json!({"a": 1}), PatchType::Json).unwrap_err();
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
    );
    // Operations are decoded as they apply: an unknown op, a missing value or
    // a pointer without its leading '/' fail the request with 422.
    for op in [
        json!({"op": "frobnicate", "path": "/a"}),
        json!({"op": "add", "path": "/a"}),
        json!({"op": "add", "path": "a", "value": 1}),
        json!(null),
    ] {
        let err = patch(json!({}), json!([op]), PatchType::Json).unwrap_err();
        assert_eq!((err.code, err.reason), (422, "Invalid"), "{op}");
        assert!(
            err.message
                .starts_with("the server rejected our request due to an error in our request"),
            "{}",
            err.message
        );
    }
    // A failed operation leaves nothing half-applied: the target is untouched.
    let target = json!({"a": 1});
    let err = patch(
        target.clone(),
        json!([{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/nope"}]),
        PatchType::Json,
    );
    assert!(err.is_err());
    assert_eq!(target, json!({"a": 1}));
    // `null` is an empty patch, as Go decodes it.
    assert_eq!(
        patch(json!({"a": 1}), json!(null), PatchType::Json).unwrap(),
        json!({"a": 1})
    );
}

#[test]
fn strategic_merge_keys_containers_by_name_and_env_by_name() {
    let target = json!({"spec": {"containers": [
        {"name": "a", "image": "x:1", "env": [{"name": "K", "value": "1"}]},
        {"name": "b", "image": "y:1"}
    ]}});
    let out = patch(
        target,
        json!({"spec": {"containers": [
            {"name": "a", "image": "x:2", "env": [{"name": "L", "value": "2"}]},
            {"name": "b", "$patch": "delete"}
        ]}}),
        PatchType::StrategicMerge,
    )
    .unwrap();
    // Upstream orders patch-only elements before server-only ones
    // (mergeSortedSlice(serverOnly, patchItems)): the new variable comes first.
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "a", "image": "x:2",
                "env": [{"name": "L", "value": "2"}, {"name": "K", "value": "1"}]}])
    );
}

#[test]
fn strategic_merge_finalizers_are_a_set_and_other_lists_replace() {
    let out = patch(
        json!({"metadata": {"finalizers": ["a"]}, "spec": {"args": ["1", "2"]}}),
        json!({"metadata": {"finalizers": ["b", "a"]}, "spec": {"args": ["3"]}}),
        PatchType::StrategicMerge,
    )
    .unwrap();
    let mut f: Vec<String> = serde_json::from_value(out["metadata"]["finalizers"].clone()).unwrap();
    f.sort();
    assert_eq!(f, ["a", "b"]);
    assert_eq!(out["spec"]["args"], json!(["3"]));
}
