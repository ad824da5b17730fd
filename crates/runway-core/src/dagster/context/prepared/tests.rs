//! The kept layers stay within their bounds.
use super::*;
use crate::dagster::launcher::LauncherClass;
use crate::dagster::version::Target;
use serde_json::json;
use std::collections::BTreeMap;

fn tags(text: String) -> Map {
    let mut tags = Map::new();
    tags.insert(USER_DEFINED_K8S_CONFIG_KEY.into(), Value::String(text));
    tags
}

#[test]
fn kept_layers_are_bounded_in_count_and_bytes() {
    let env = BTreeMap::<String, String>::new();
    let config = json!({"service_account_name": "sa", "instance_config_map": "cm"});
    let launcher = Launcher::load(LauncherClass::K8s, &config, &env).unwrap();
    let rules = Target::newest().rules;
    let label = |i: usize, pad: usize| {
        let value = format!("{i}-{}", "x".repeat(pad));
        json!({"job_metadata": {"annotations": {"a": value}}}).to_string()
    };
    for i in 0..300 {
        let got = launcher
            .prepared
            .tags::<ContainerContext>(&tags(label(i, 10)), &rules, &env)
            .unwrap();
        assert!(got.is_some());
    }
    let cache = launcher.prepared.lock();
    assert_eq!(cache.entries.len(), KEYED);
    drop(cache);
    // Large entries: the byte bound holds before the count does.
    for i in 0..100 {
        let text = label(i, 50 << 10);
        launcher
            .prepared
            .tags::<ContainerContext>(&tags(text), &rules, &env)
            .unwrap();
    }
    let cache = launcher.prepared.lock();
    assert!(cache.bytes <= KEYED_BYTES, "{} bytes kept", cache.bytes);
    assert_eq!(
        cache.bytes,
        cache.entries.iter().map(|e| e.charge).sum::<usize>()
    );
    assert!(cache.entries.len() < KEYED);
    drop(cache);
    // Too large to keep at all: converted, returned, not kept.
    let before = launcher.prepared.lock().bytes;
    let huge = launcher
        .prepared
        .tags::<ContainerContext>(&tags(label(7, 1 << 20)), &rules, &env)
        .unwrap()
        .unwrap();
    assert!(!huge
        .run_k8s_config
        .get(crate::k8s::config::Section::JobMetadata)
        .is_empty());
    assert_eq!(launcher.prepared.lock().bytes, before);
}
