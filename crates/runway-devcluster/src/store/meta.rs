//! The indexed `metadata` fields of a stored object, shared by its
//! versions while they do not change (most writes change status only).

use serde_json::Value;

/// One owner reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub kind: Box<str>,
    pub name: Box<str>,
    pub uid: Box<str>,
    pub controller: bool,
}

/// A label's key and value (`None`: not a string).
type Label = (Box<str>, Option<Box<str>>);

/// The indexed `metadata` fields.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) namespace: Box<str>,
    pub(super) name: Box<str>,
    pub(super) uid: Box<str>,
    /// `metadata.labels`; a value that is not a string is `None` (present,
    /// equal to nothing).
    pub(super) labels: Box<[Label]>,
    pub(super) owners: Box<[Owner]>,
}

impl Meta {
    pub(super) fn read(meta: &Value) -> Meta {
        let text = |v: &Value| -> Box<str> { v.as_str().unwrap_or("").into() };
        Meta {
            namespace: text(&meta["namespace"]),
            name: text(&meta["name"]),
            uid: text(&meta["uid"]),
            labels: meta["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str().into(), v.as_str().map(Into::into)))
                .collect(),
            owners: meta["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| Owner {
                    kind: text(&r["kind"]),
                    name: text(&r["name"]),
                    uid: text(&r["uid"]),
                    controller: r["controller"] == true,
                })
                .collect(),
        }
    }

    /// Whether `meta` (an object's `metadata`) reads as these fields,
    /// without building them.
    pub(super) fn same_as(&self, meta: &Value) -> bool {
        fn text(v: &Value) -> &str {
            v.as_str().unwrap_or("")
        }
        let labels = meta["labels"].as_object();
        let owners = meta["ownerReferences"].as_array();
        text(&meta["namespace"]) == &*self.namespace
            && text(&meta["name"]) == &*self.name
            && text(&meta["uid"]) == &*self.uid
            && labels.map_or(0, |l| l.len()) == self.labels.len()
            && labels
                .into_iter()
                .flatten()
                .zip(self.labels.iter())
                .all(|((k, v), (sk, sv))| k.as_str() == &**sk && v.as_str() == sv.as_deref())
            && owners.map_or(0, Vec::len) == self.owners.len()
            && owners
                .into_iter()
                .flatten()
                .zip(self.owners.iter())
                .all(|(r, o)| {
                    text(&r["kind"]) == &*o.kind
                        && text(&r["name"]) == &*o.name
                        && text(&r["uid"]) == &*o.uid
                        && (r["controller"] == true) == o.controller
                })
    }
}
