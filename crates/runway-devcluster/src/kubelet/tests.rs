use serde_json::json;

use super::env::expand;
use super::*;

#[test]
fn globs() {
    assert!(glob_match("*", "anything:1"));
    assert!(glob_match(
        "docker.io/*:1.*",
        "docker.io/dagster/user-code:1.13"
    ));
    assert!(!glob_match("docker.io/*:1.*", "ghcr.io/x:1.2"));
    assert!(glob_match("exact", "exact"));
    assert!(!glob_match("exact", "exactly"));
}

#[test]
fn catalogue_last_match_wins() {
    let cat = vec![
        "*".to_owned(),
        "!*.invalid/*".to_owned(),
        "ok.invalid/x:1".to_owned(),
    ];
    assert!(image_exists(&cat, "busybox:1.36"));
    assert!(!image_exists(&cat, "registry.invalid/nope:1"));
    assert!(image_exists(&cat, "ok.invalid/x:1"));
    assert!(!image_exists(&[], "busybox"));
}

#[test]
fn quantities() {
    assert_eq!(parse_quantity(&json!("300m"), true), Some(300));
    assert_eq!(parse_quantity(&json!("2"), true), Some(2000));
    assert_eq!(parse_quantity(&json!(1), true), Some(1000));
    assert_eq!(parse_quantity(&json!("2048Mi"), false), Some(2048 << 20));
    assert_eq!(parse_quantity(&json!("1G"), false), Some(1_000_000_000));
    assert_eq!(parse_quantity(&json!("1e3"), false), Some(1000));
    assert_eq!(parse_quantity(&json!("bogus"), false), None);
}

#[test]
fn affinity_and_selector() {
    let node = NodeConfig::new("devmaster2");
    let aff = |op: &str, vals: &[&str]| {
        json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": op, "values": vals}]}]}}}}})
    };
    assert!(node_matches(
        &aff("In", &["devmaster1", "devmaster2"]),
        &node
    ));
    assert!(!node_matches(&aff("In", &["devmaster1"]), &node));
    assert!(node_matches(&aff("NotIn", &["devmaster1"]), &node));
    assert!(node_matches(&aff("Exists", &[]), &node));
    assert!(!node_matches(&aff("DoesNotExist", &[]), &node));
    assert!(node_matches(
        &json!({"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}),
        &node
    ));
    assert!(!node_matches(
        &json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
        &node
    ));
    assert!(node_matches(&json!({"spec": {}}), &node));
}

#[test]
fn env_expansion() {
    let env = vec![("A".to_owned(), "1".to_owned())];
    assert_eq!(expand("x-$(A)-$(B)", &env), "x-1-$(B)");
    assert_eq!(expand("$(A", &env), "$(A");
}
