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

/// Every Event in `default`.
const EVENTS: ListQuery<'static> = ListQuery {
    kind: Kind::Event,
    namespace: Some("default"),
    at: None,
    after: None,
    limit: 0,
    labels: &[],
};

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
    let mut seen: Vec<(String, String, i64)> = c
        .list(&EVENTS, |_| true)
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

/// The one Event in `default` (as `record_event` created it).
fn only_event(c: &Cluster) -> Obj {
    let mut items = c.list(&EVENTS, |_| true).unwrap().items;
    assert_eq!(items.len(), 1);
    items.pop().unwrap()
}

fn event_cluster() -> (Arc<Cluster>, Obj) {
    let c = Cluster::new(StoreConfig::default(), Clock::virtual_at(0), 7);
    let pod = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u-1"}});
    c.record_event(Kind::Pod, &pod, "Normal", "Pulled", "pulled", "kubelet");
    let event = only_event(&c);
    (c, event)
}

#[test]
fn a_status_write_that_changes_nothing_stores_nothing() {
    let (c, event) = event_cluster();
    let rev = c.revision();
    let same = c
        .update_status_with(Kind::Event, "default", event.name(), |_| false)
        .unwrap();
    assert_eq!((same.rev(), c.revision()), (event.rev(), rev));
    let changed = c
        .update_status_with(Kind::Event, "default", event.name(), |e| {
            e["count"] = json!(5);
            true
        })
        .unwrap();
    assert_eq!(changed.rev(), rev + 1);
    assert_eq!(only_event(&c).value()["count"], 5);
}

#[test]
fn a_status_write_on_a_stale_base_changes_the_current_object() {
    let (c, event) = event_cluster();
    let stale = (event.rev(), event.value());
    c.update_status_with(Kind::Event, "default", event.name(), |e| {
        e["message"] = json!("changed meanwhile");
        true
    })
    .unwrap();
    let (rev, kept) = c
        .update_status_kept(Kind::Event, "default", event.name(), Some(stale), |e| {
            e["count"] = json!(9);
            true
        })
        .unwrap();
    let stored = only_event(&c);
    assert_eq!(rev, stored.rev());
    assert_eq!(kept, stored.value());
    assert_eq!(kept["message"], "changed meanwhile");
    assert_eq!(kept["count"], 9);
}

#[test]
fn a_status_write_raced_by_another_is_made_again_on_the_newer_object() {
    let (c, event) = event_cluster();
    let name = event.name().to_owned();
    let mut calls = 0;
    c.update_status_with(Kind::Event, "default", &name, |e| {
        calls += 1;
        if calls == 1 {
            // Another writer commits between this read and its commit.
            c.update_status_with(Kind::Event, "default", &name, |other| {
                other["message"] = json!("the other writer");
                true
            })
            .unwrap();
        }
        e["count"] = json!(e["count"].as_i64().unwrap() + 1);
        true
    })
    .unwrap();
    assert_eq!(calls, 2);
    let stored = only_event(&c).value();
    assert_eq!(stored["message"], "the other writer");
    assert_eq!(stored["count"], 2);
}
