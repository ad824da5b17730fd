use serde_json::json;

use super::*;
use crate::clock::Clock;
use crate::store::StoreConfig;

#[test]
fn uids_are_version_4_and_follow_the_seed() {
    let uids = |seed| {
        let c = Cluster::new(StoreConfig::default(), Clock::virtual_at(0), seed);
        (0..3).map(|_| c.new_uid()).collect::<Vec<_>>()
    };
    let a = uids(42);
    assert_eq!(a, uids(42));
    assert_ne!(a, uids(44));
    for uid in &a {
        let parsed = uuid::Uuid::parse_str(uid).unwrap();
        assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(parsed.hyphenated().to_string(), *uid);
    }
}

#[test]
fn repeated_events_are_counted_on_one_event_object() {
    let c = Cluster::new(StoreConfig::default(), Clock::virtual_at(0), 7);
    let pod = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u-1"}});
    let other = json!({"metadata": {"name": "q", "namespace": "default", "uid": "u-2"}});
    for _ in 0..3 {
        c.record_event(Kind::Pod, &pod, "Normal", "Pulled", "pulled", "kubelet");
    }
    c.record_event(
        Kind::Pod,
        &pod,
        "Normal",
        "Pulled",
        "pulled again",
        "kubelet",
    );
    c.record_event(Kind::Pod, &other, "Normal", "Pulled", "pulled", "kubelet");
    let q = ListQuery {
        kind: Kind::Event,
        namespace: Some("default"),
        at: None,
        after: None,
        limit: 0,
        labels: &[],
    };
    let mut seen: Vec<(String, String, i64)> = c
        .list(&q, |_| true)
        .unwrap()
        .items
        .iter()
        .map(|e| e.value())
        .map(|e| {
            (
                e["involvedObject"]["uid"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
                e["count"].as_i64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("u-1".into(), "pulled".into(), 3),
            ("u-1".into(), "pulled again".into(), 1),
            ("u-2".into(), "pulled".into(), 1),
        ]
    );
}
