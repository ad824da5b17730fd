use serde_json::json;

use super::*;

fn obj(ns: &str, name: &str) -> Value {
    json!({"metadata": {"namespace": ns, "name": name}})
}

fn all(kind: Kind) -> ListQuery<'static> {
    ListQuery {
        kind,
        namespace: None,
        at: None,
        after: None,
        limit: 0,
    }
}

#[test]
fn one_revision_across_kinds_and_conflicts() {
    let mut s = Store::new(StoreConfig {
        history: 10,
        first_revision: 1_000_000_000_000,
    });
    let a = s.create(Kind::Job, obj("ns", "a")).unwrap();
    let b = s.create(Kind::Pod, obj("ns", "a")).unwrap();
    assert_eq!(a.rev, 1_000_000_000_000);
    assert_eq!(b.rev, a.rev + 1);
    assert_eq!(s.create(Kind::Job, obj("ns", "a")).unwrap_err().code, 409);
    let stale = s
        .update(Kind::Job, obj("ns", "a"), Some(a.rev - 1))
        .unwrap_err();
    assert_eq!((stale.code, stale.reason), (409, "Conflict"));
    let ok = s.update(Kind::Job, obj("ns", "a"), Some(a.rev)).unwrap();
    assert_eq!(object_rev(&ok.object), Some(b.rev + 1));
    assert_eq!(s.remove(Kind::Job, "ns", "missing").unwrap_err().code, 404);
}

#[test]
fn pagination_snapshots_and_compaction() {
    let mut s = Store::new(StoreConfig {
        history: 3,
        first_revision: 1,
    });
    for n in ["a", "b", "c", "d"] {
        s.create(Kind::ConfigMap, obj("ns", n)).unwrap();
    }
    let rev_after_four = s.revision();
    let page = s
        .list(
            &ListQuery {
                limit: 3,
                ..all(Kind::ConfigMap)
            },
            |_| true,
        )
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.remaining, 1);
    let next = page.next.unwrap();
    let rest = s
        .list(
            &ListQuery {
                after: Some(&next),
                at: Some(page.rev),
                ..all(Kind::ConfigMap)
            },
            |_| true,
        )
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0]["metadata"]["name"], "d");

    s.remove(Kind::ConfigMap, "ns", "a").unwrap();
    // The snapshot before the delete still has four objects.
    let old = s.list(
        &ListQuery {
            at: Some(rev_after_four),
            ..all(Kind::ConfigMap)
        },
        |_| true,
    );
    assert_eq!(old.unwrap().items.len(), 4);
    assert_eq!(s.events_after(rev_after_four).unwrap().len(), 1);
    // History keeps 3 changes: revision 1 has been compacted away.
    assert_eq!(s.events_after(0).unwrap_err().code, 410);
    s.compact();
    assert_eq!(s.events_after(rev_after_four).unwrap_err().code, 410);
    assert!(s.events_after(s.revision()).unwrap().is_empty());
    let future = s.list(
        &ListQuery {
            at: Some(s.revision() + 5),
            ..all(Kind::ConfigMap)
        },
        |_| true,
    );
    assert_eq!(future.unwrap_err().code, 504);
}
