use serde_json::{json, Value};

use super::*;
use crate::k8s::config::{Section, UserConfig};

fn cfg(v: Value) -> UserConfig {
    UserConfig::from_dict(v.as_object().unwrap(), "t").unwrap()
}

fn container(c: &UserConfig) -> Value {
    Value::Object(c.get(Section::ContainerConfig).clone())
}

#[test]
fn deep_merge_matches_the_verified_dagster_example() {
    let onto = cfg(json!({"container_config": {
        "env": [{"name": "A", "value": "1"}, {"name": "X", "value": "x"}],
        "args": ["a"], "resources": {"limits": {"cpu": "1"}}},
        "pod_spec_config": {"node_selector": {"a": "1"}, "tolerations": [{"key": "t1"}]}}));
    let from = cfg(json!({"container_config": {
        "env": [{"name": "X", "value": "x"}, {"name": "Y", "value": "y"}],
        "args": ["b"], "resources": {"limits": {"memory": "1Gi"}}},
        "pod_spec_config": {"node_selector": {"b": "2"}, "tolerations": [{"key": "t2"}]}}));
    let merged = merge_user_configs(&onto, &from).unwrap();
    assert_eq!(
        container(&merged),
        json!({"env": [{"name": "A", "value": "1"}, {"name": "X", "value": "x"},
                       {"name": "Y", "value": "y"}],
               "args": ["b"], "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}})
    );
    assert_eq!(
        Value::Object(merged.get(Section::PodSpecConfig).clone()),
        json!({"node_selector": {"a": "1", "b": "2"},
               "tolerations": [{"key": "t1"}, {"key": "t2"}]})
    );

    // A third, SHALLOW layer replaces one level below the section.
    let third = cfg(json!({"merge_behavior": "SHALLOW",
        "container_config": {"resources": {"limits": {"memory": "2Gi"}}},
        "pod_spec_config": {"tolerations": [{"key": "t3"}]}}));
    let merged = merge_user_configs(&merged, &third).unwrap();
    assert_eq!(merged.merge_behavior, MergeBehavior::Shallow);
    assert_eq!(
        container(&merged)["resources"],
        json!({"limits": {"memory": "2Gi"}})
    );
    assert_eq!(
        merged.get(Section::PodSpecConfig)["tolerations"],
        json!([{"key": "t3"}])
    );
}

#[test]
fn same_name_env_with_different_values_both_stay() {
    let onto = cfg(json!({"container_config": {"env": [{"name": "A", "value": "1"}]}}));
    let from = cfg(json!({"container_config": {"env": [{"name": "A", "value": "2"}]}}));
    let merged = merge_user_configs(&onto, &from).unwrap();
    assert_eq!(container(&merged)["env"].as_array().unwrap().len(), 2);
}

#[test]
fn dedupe_uses_python_equality() {
    let onto = cfg(json!({"container_config": {"command": ["x"]},
        "pod_spec_config": {"tolerations": [{"key": "k", "toleration_seconds": 1}]}}));
    let from =
        cfg(json!({"pod_spec_config": {"tolerations": [{"key": "k", "toleration_seconds": 1.0}]}}));
    let merged = merge_user_configs(&onto, &from).unwrap();
    assert_eq!(
        merged.get(Section::PodSpecConfig)["tolerations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(container(&merged)["command"], json!(["x"]));
}

#[test]
fn type_conflicts_name_the_field() {
    let onto = cfg(json!({"pod_spec_config": {"node_selector": {"a": "b"}}}));
    let mut from = UserConfig::default();
    from.set(
        Section::PodSpecConfig,
        json!({"node_selector": ["x"]}).as_object().unwrap().clone(),
    );
    let err = merge_user_configs(&onto, &from).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pod_spec_config.node_selector: cannot merge a list onto an object; both layers must use \
         the same type here"
    );
}
