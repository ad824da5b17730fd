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
        labels: &[],
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
    assert_eq!(object_rev(&ok.object.value()), Some(b.rev + 1));
    assert_eq!(ok.object.rev(), b.rev + 1);
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
    assert_eq!(rest.items[0].value()["metadata"]["name"], "d");

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

/// One change the index must follow.
#[derive(Debug, Clone)]
enum Op {
    /// Create or replace (kind, namespace, name) with labels and owner uids.
    Put(u8, u8, u8, Vec<(u8, u8)>, Vec<u8>),
    Remove(u8, u8, u8),
}

fn labelled(ns: u8, name: u8, labels: &[(u8, u8)], owners: &[u8]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (format!("k{k}"), json!(format!("v{v}"))))
        .collect();
    let owners: Vec<Value> = owners
        .iter()
        .map(|u| json!({"kind": "Job", "name": "j", "uid": format!("u{u}")}))
        .collect();
    json!({"metadata": {"namespace": format!("ns{ns}"), "name": format!("o{name}"),
                        "labels": labels, "ownerReferences": owners}})
}

fn kind_of(k: u8) -> Kind {
    if k.is_multiple_of(2) {
        Kind::Pod
    } else {
        Kind::Job
    }
}

fn names(items: &[Obj]) -> Vec<String> {
    items
        .iter()
        .map(|o| o.value())
        .map(|o| format!("{}/{}", o["metadata"]["namespace"], o["metadata"]["name"]))
        .collect()
}

/// Every page of a list, following `next` at the first page's revision.
fn all_pages(s: &Store, q: ListQuery<'_>, keep: impl Fn(&Stored) -> bool) -> Vec<Obj> {
    let mut items = Vec::new();
    let mut after: Option<Key> = None;
    let mut at = q.at;
    loop {
        let page = s
            .list(
                &ListQuery {
                    after: after.as_ref(),
                    at,
                    ..q
                },
                &keep,
            )
            .unwrap();
        items.extend(page.items);
        at = Some(page.rev);
        match page.next {
            Some(next) => after = Some(next),
            None => return items,
        }
    }
}

fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let labels = proptest::collection::vec((0u8..3, 0u8..3), 0..4);
    let owners = proptest::collection::vec(0u8..3, 0..3);
    prop_oneof![
        3 => (0u8..2, 0u8..3, 0u8..8, labels, owners)
            .prop_map(|(k, ns, n, l, o)| Op::Put(k, ns, n, l, o)),
        1 => (0u8..2, 0u8..3, 0u8..8).prop_map(|(k, ns, n)| Op::Remove(k, ns, n)),
    ]
}

proptest::proptest! {
    /// The label and owner indexes answer exactly what a scan of every
    /// object answers, after any mix of creates, relabels, re-owners and
    /// removes, for every namespace scope, term set and page size.
    #[test]
    fn indexed_lists_equal_scans(
        ops in proptest::collection::vec(op_strategy(), 1..80),
        terms in proptest::collection::vec((0u8..3, 0u8..3), 1..3),
        limit in 0usize..4,
    ) {
        let mut s = Store::new(StoreConfig::default());
        for op in &ops {
            match op {
                Op::Put(k, ns, n, labels, owners) => {
                    let o = labelled(*ns, *n, labels, owners);
                    let kind = kind_of(*k);
                    if s.get(kind, &format!("ns{ns}"), &format!("o{n}")).is_some() {
                        s.update(kind, o, None).unwrap();
                    } else {
                        s.create(kind, o).unwrap();
                    }
                }
                Op::Remove(k, ns, n) => {
                    let _ = s.remove(kind_of(*k), &format!("ns{ns}"), &format!("o{n}"));
                }
            }
        }
        let owned: Vec<(String, String)> =
            terms.iter().map(|(k, v)| (format!("k{k}"), format!("v{v}"))).collect();
        let terms: Vec<(&str, &str)> =
            owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // Read from the object's JSON, not the indexed fields under test.
        let matches = |o: &Stored| {
            let o = o.value();
            terms.iter().all(|(k, v)| o["metadata"]["labels"][*k].as_str() == Some(*v))
        };
        for kind in [Kind::Pod, Kind::Job] {
            for ns in [None, Some("ns0"), Some("ns1"), Some("ns2")] {
                let q = ListQuery { kind, namespace: ns, limit, ..all(kind) };
                let indexed = all_pages(&s, ListQuery { labels: &terms, ..q }, |_| true);
                let scanned = all_pages(&s, q, matches);
                proptest::prop_assert_eq!(names(&indexed), names(&scanned));
            }
            for ns in ["ns0", "ns1", "ns2"] {
                for uid in ["u0", "u1", "u2"] {
                    let by_index = s.owned_by(kind, ns, uid);
                    let by_scan = all_pages(
                        &s,
                        ListQuery { namespace: Some(ns), ..all(kind) },
                        |o| {
                            o.value()["metadata"]["ownerReferences"]
                                .as_array()
                                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
                        },
                    );
                    proptest::prop_assert_eq!(names(&by_index), names(&by_scan));
                }
            }
        }
    }
}

#[test]
fn label_terms_filter_snapshots_too() {
    let mut s = Store::new(StoreConfig::default());
    s.create(Kind::Pod, labelled(0, 1, &[(0, 0)], &[])).unwrap();
    s.create(Kind::Pod, labelled(0, 2, &[(0, 1)], &[])).unwrap();
    let before = s.revision();
    // Relabelled after the snapshot's revision: the old labels still count there.
    s.update(Kind::Pod, labelled(0, 2, &[(0, 0)], &[]), None)
        .unwrap();
    let terms = [("k0", "v0")];
    let now = s
        .list(
            &ListQuery {
                labels: &terms,
                ..all(Kind::Pod)
            },
            |_| true,
        )
        .unwrap();
    assert_eq!(names(&now.items), ["\"ns0\"/\"o1\"", "\"ns0\"/\"o2\""]);
    let then = s
        .list(
            &ListQuery {
                labels: &terms,
                at: Some(before),
                ..all(Kind::Pod)
            },
            |_| true,
        )
        .unwrap();
    assert_eq!(names(&then.items), ["\"ns0\"/\"o1\""]);
    let none = s
        .list(
            &ListQuery {
                labels: &[("k0", "nope")],
                ..all(Kind::Pod)
            },
            |_| true,
        )
        .unwrap();
    assert!(none.items.is_empty());
}

#[test]
fn stored_objects_answer_with_type_meta_and_their_indexed_fields() {
    let v = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                    "labels": {"a": "1", "odd": 2}, "finalizers": ["f"],
                    "ownerReferences": [{"kind": "Job", "name": "j", "uid": "ju", "controller": true}]},
                   "spec": {"nodeName": "n"}, "status": {"phase": "Failed"}});
    let s = Stored::new(&v);
    let mut typed: Value = serde_json::from_slice(&s.typed(Kind::Pod)).unwrap();
    assert_eq!(
        (typed["kind"].take(), typed["apiVersion"].take()),
        (json!("Pod"), json!("v1"))
    );
    typed.as_object_mut().unwrap().retain(|_, x| !x.is_null());
    assert_eq!(typed, v);
    assert_eq!(s.value(), v);
    assert_eq!(
        (s.namespace(), s.name(), s.uid(), s.rev()),
        ("ns", "p", "u", 7)
    );
    assert_eq!(
        (s.label("a"), s.label("odd"), s.label("b")),
        (Some(Some("1")), Some(None), None)
    );
    assert!(s.bound() && !s.deleting() && s.phase() == Phase::Failed && s.has_finalizer("f"));
    assert_eq!(&*s.owners()[0].uid, "ju");
    let empty = Stored::new(&json!({}));
    assert_eq!(
        empty.typed(Kind::Job),
        br#"{"apiVersion":"batch/v1","kind":"Job"}"#.to_vec()
    );

    // A new version with the same names, labels and owners shares them; a
    // changed label does not.
    let mut next = v.clone();
    next["status"]["phase"] = json!("Succeeded");
    let n = Stored::next(&next, Some(&s));
    assert!(n.same_index(&s) && n.phase() == Phase::Succeeded);
    assert!(!s.ready() && !n.ready());
    let mut ready = next.clone();
    ready["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True"},
                                           {"type": "Ready", "status": "True"}]);
    assert!(Stored::next(&ready, Some(&n)).ready());
    ready["status"]["conditions"][1]["status"] = json!("False");
    assert!(!Stored::next(&ready, Some(&n)).ready());
    next["metadata"]["labels"]["a"] = json!("2");
    let changed = Stored::next(&next, Some(&n));
    assert!(!changed.same_index(&n));
    assert_eq!(changed.label("a"), Some(Some("2")));
}
