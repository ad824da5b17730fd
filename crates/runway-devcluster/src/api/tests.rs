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
fn typed_serializes_exactly_like_with_type_meta() {
    let objects = [
        json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {}}),
        json!({"data": {"k": "v"}, "metadata": {"name": "b"}, "type": "Opaque"}),
        json!({"apiVersion": "stale", "kind": "Stale", "metadata": {}}),
        json!({"involvedObject": {"kind": "Pod"}, "message": "m", "reason": "r"}),
    ];
    for kind in [Kind::Job, Kind::Pod, Kind::Secret, Kind::Event] {
        for o in &objects {
            assert_eq!(
                serde_json::to_string(&Typed(kind, o)).unwrap(),
                serde_json::to_string(&with_type_meta(kind, o)).unwrap()
            );
        }
    }
}
