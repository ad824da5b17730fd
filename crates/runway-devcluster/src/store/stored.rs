//! A stored object as the store keeps it: its wire JSON, serialized once at
//! commit, plus the few fields the store's indexes, the watch filters and
//! the controllers read on every change. A `serde_json::Value` tree of a
//! pod is about 10 KB (a B-tree node per map, however small); its JSON is
//! about 2 KB, and every response and watch event sends that JSON as is.
//! Anything else parses the JSON when it needs it ([`Stored::value`]).

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::validate::Kind;

/// What a pod's `status.phase` says, as the kubelet and controller read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No phase, or one of the others (Pending, Running, Unknown).
    Other,
    Succeeded,
    Failed,
}

/// One owner reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub kind: Box<str>,
    pub name: Box<str>,
    pub uid: Box<str>,
    pub controller: bool,
}

/// An immutable stored object (shared by the current map, the change log
/// and the watch fan-out).
pub struct Stored {
    /// The object's JSON: sorted keys, no `kind`/`apiVersion`.
    json: Box<[u8]>,
    /// Shared with the previous version while unchanged: most writes
    /// change status, not names, labels or owners.
    meta: Arc<Meta>,
    rev: u64,
    deleting: bool,
    /// `spec.nodeName` is set (pods).
    bound: bool,
    phase: Phase,
}

/// A label's key and value (`None`: not a string).
type Label = (Box<str>, Option<Box<str>>);

/// The indexed `metadata` fields.
#[derive(Debug, PartialEq, Eq)]
struct Meta {
    namespace: Box<str>,
    name: Box<str>,
    uid: Box<str>,
    /// `metadata.labels`; a value that is not a string is `None` (present,
    /// equal to nothing).
    labels: Box<[Label]>,
    owners: Box<[Owner]>,
    finalizers: Box<[Box<str>]>,
}

impl Meta {
    fn read(meta: &Value) -> Meta {
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
            finalizers: meta["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(Into::into))
                .collect(),
        }
    }

    /// Whether `meta` (an object's `metadata`) reads as these fields,
    /// without building them.
    fn same_as(&self, meta: &Value) -> bool {
        fn text(v: &Value) -> &str {
            v.as_str().unwrap_or("")
        }
        let labels = meta["labels"].as_object();
        let owners = meta["ownerReferences"].as_array();
        let finalizers = meta["finalizers"].as_array();
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
            && finalizers.map_or(0, |f| f.iter().filter(|x| x.is_string()).count())
                == self.finalizers.len()
            && finalizers
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .zip(self.finalizers.iter())
                .all(|(a, b)| a == &**b)
    }
}

impl Stored {
    /// Serializes `obj` and reads its indexed fields.
    pub fn new(obj: &Value) -> Stored {
        Stored::next(obj, None)
    }

    /// [`Stored::new`] for a new version of `prev`, sharing its indexed
    /// fields when they did not change.
    pub fn next(obj: &Value, prev: Option<&Stored>) -> Stored {
        // A Value always serializes (its keys are strings).
        let json = serde_json::to_vec(obj)
            .unwrap_or_default()
            .into_boxed_slice();
        let meta = &obj["metadata"];
        let shared = prev
            .filter(|p| p.meta.same_as(meta))
            .map(|p| p.meta.clone());
        Stored {
            json,
            meta: shared.unwrap_or_else(|| Arc::new(Meta::read(meta))),
            rev: meta["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            deleting: meta.get("deletionTimestamp").is_some(),
            bound: obj["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty()),
            phase: match obj["status"]["phase"].as_str() {
                Some("Succeeded") => Phase::Succeeded,
                Some("Failed") => Phase::Failed,
                _ => Phase::Other,
            },
        }
    }

    /// The object as a JSON tree (parsed from the stored bytes).
    pub fn value(&self) -> Value {
        // The bytes came from a Value: they parse.
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// Only the fields `T` declares, skipping the rest unparsed.
    pub fn view<'de, T: Deserialize<'de>>(&'de self) -> Option<T> {
        serde_json::from_slice(&self.json).ok()
    }

    /// The stored JSON (no `kind`/`apiVersion`), as list items carry it.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The JSON with `apiVersion` and `kind` first, as single-object
    /// responses and watch events carry it.
    pub fn write_typed(&self, kind: Kind, out: &mut Vec<u8>) {
        out.reserve(self.json.len() + 64);
        out.extend_from_slice(b"{\"apiVersion\":\"");
        out.extend_from_slice(kind.api_version().as_bytes());
        out.extend_from_slice(b"\",\"kind\":\"");
        out.extend_from_slice(kind.kind_name().as_bytes());
        out.push(b'"');
        match self.json.get(1..) {
            // `{}`: nothing to add after the type meta.
            Some(b"}") => out.push(b'}'),
            Some(rest) => {
                out.push(b',');
                out.extend_from_slice(rest);
            }
            None => out.push(b'}'),
        }
    }

    pub fn typed(&self, kind: Kind) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_typed(kind, &mut out);
        out
    }

    pub fn namespace(&self) -> &str {
        &self.meta.namespace
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    pub fn uid(&self) -> &str {
        &self.meta.uid
    }

    /// `metadata.resourceVersion`.
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// The value of one label: `None` when absent, `Some(None)` when it is
    /// not a string.
    pub fn label(&self, key: &str) -> Option<Option<&str>> {
        self.meta
            .labels
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| v.as_deref())
    }

    /// String-valued labels.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.meta
            .labels
            .iter()
            .filter_map(|(k, v)| Some((&**k, v.as_deref()?)))
    }

    pub fn owners(&self) -> &[Owner] {
        &self.meta.owners
    }

    pub fn has_finalizer(&self, name: &str) -> bool {
        self.meta.finalizers.iter().any(|f| &**f == name)
    }

    pub fn has_finalizers(&self) -> bool {
        !self.meta.finalizers.is_empty()
    }

    /// `metadata.deletionTimestamp` is set.
    pub fn deleting(&self) -> bool {
        self.deleting
    }

    /// `spec.nodeName` is set.
    pub fn bound(&self) -> bool {
        self.bound
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the indexed label and owner fields differ.
    pub fn same_index(&self, other: &Stored) -> bool {
        Arc::ptr_eq(&self.meta, &other.meta)
            || (self.meta.labels == other.meta.labels && self.meta.owners == other.meta.owners)
    }
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("namespace", &self.meta.namespace)
            .field("name", &self.meta.name)
            .field("rev", &self.rev)
            .field("bytes", &self.json.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Stored {
    fn eq(&self, other: &Stored) -> bool {
        self.json == other.json
    }
}
