//! A stored object as the store keeps it: its wire JSON, serialized once at
//! commit and kept LZ4-compressed, plus the few fields the store's indexes,
//! the watch filters and the controllers read on every change. A
//! `serde_json::Value` tree spends a B-tree node (about 600 bytes) on every
//! map, however small, and a pod has dozens; its JSON is 2.3 KB and 1.3 KB
//! compressed (a Job 1.7 and 1.0 KB, an Event 0.6 and 0.45 KB), and a watch
//! event or response decompresses it instead of serializing a tree.
//! Anything else parses it when it needs it ([`Stored::value`]). The
//! revision is kept beside the bytes and written into them on the way out
//! (`version.rs`), so a version is built before the store assigns it one.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::meta::Meta;
pub use super::meta::Owner;
use super::version::{self, Slot, Version};
use crate::validate::Kind;

/// What a pod's `status.phase` says, as the kubelet and controller read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No phase, or one of the others (Pending, Running, Unknown).
    Other,
    Succeeded,
    Failed,
}

/// An immutable stored object (shared by the current map, the change log
/// and the watch fan-out).
pub struct Stored {
    /// The object's JSON (sorted keys, no `kind`/`apiVersion`, no
    /// `metadata.resourceVersion`), as an LZ4 block with its length prepended.
    json: Box<[u8]>,
    /// Where `metadata.resourceVersion` goes back in, and how it reads.
    slot: Option<Slot>,
    version: Version,
    /// Shared with the previous version while unchanged: most writes
    /// change status, not names, labels or owners.
    meta: Arc<Meta>,
    /// `metadata.finalizers` (per version: the Job controller removes its
    /// finalizer from each pod, and the names stay shared).
    finalizers: Box<[Box<str>]>,
    rev: u64,
    deleting: bool,
    /// `spec.nodeName` is set (pods).
    bound: bool,
    phase: Phase,
    /// The pod's Ready condition is True (the Job controller counts ready
    /// pods on every pass).
    ready: bool,
}

impl Stored {
    /// Serializes `obj` and reads its indexed fields.
    pub fn new(obj: &Value) -> Stored {
        Stored::next(obj, None)
    }

    /// [`Stored::new`] for a new version of `prev`, sharing its indexed
    /// fields when they did not change.
    pub fn next(obj: &Value, prev: Option<&Stored>) -> Stored {
        let (plain, slot, version, rev) = version::split(obj);
        // Copied out at its exact size: the compressor's buffer is sized for
        // the worst case, and shrinking it in place (`into_boxed_slice`) let
        // the allocator keep the larger block, about 600 bytes more per
        // stored object than the data.
        let json = Box::<[u8]>::from(&lz4_flex::block::compress_prepend_size(&plain)[..]);
        let meta = &obj["metadata"];
        let shared = prev
            .filter(|p| p.meta.same_as(meta))
            .map(|p| p.meta.clone());
        Stored {
            json,
            slot,
            version,
            meta: shared.unwrap_or_else(|| Arc::new(Meta::read(meta))),
            finalizers: meta["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(Into::into))
                .collect(),
            rev,
            deleting: meta.get("deletionTimestamp").is_some(),
            bound: obj["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty()),
            phase: match obj["status"]["phase"].as_str() {
                Some("Succeeded") => Phase::Succeeded,
                Some("Failed") => Phase::Failed,
                _ => Phase::Other,
            },
            ready: obj["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            }),
        }
    }

    /// This version, stamped with revision `rev` (the store's commit).
    pub fn at(mut self, rev: u64) -> Stored {
        self.rev = rev;
        self.version = Version::Rev;
        self
    }

    /// The same object under a new revision: a delete's last version.
    pub fn restamped(&self, rev: u64) -> Stored {
        Stored {
            json: self.json.clone(),
            slot: self.slot,
            version: Version::Rev,
            meta: self.meta.clone(),
            finalizers: self.finalizers.clone(),
            rev,
            deleting: self.deleting,
            bound: self.bound,
            phase: self.phase,
            ready: self.ready,
        }
    }

    /// The object as a JSON tree (parsed from the stored bytes).
    pub fn value(&self) -> Value {
        // The bytes came from a Value: they parse.
        serde_json::from_slice(&self.json()).unwrap_or(Value::Null)
    }

    /// Only the fields `T` declares, skipping the rest unparsed.
    pub fn view<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.json()).ok()
    }

    /// The stored JSON (no `kind`/`apiVersion`), as list items carry it.
    pub fn json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(&mut out);
        out
    }

    /// Appends the stored JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let (len, block) = self.block();
        let start = out.len();
        out.resize(start + len, 0);
        // The block was compressed from exactly `len` bytes here; should it
        // ever not decode, the object reads as `{}` rather than garbage.
        let ok = lz4_flex::block::decompress_into(block, &mut out[start..]).is_ok_and(|n| n == len);
        if !ok {
            out.truncate(start);
            out.extend_from_slice(b"{}");
        } else if let Some(slot) = self.slot {
            version::restore(out, start, slot, &self.version, self.rev);
        }
    }

    /// The uncompressed length and the LZ4 block.
    fn block(&self) -> (usize, &[u8]) {
        match self.json.split_first_chunk::<4>() {
            Some((len, block)) => (u32::from_le_bytes(*len) as usize, block),
            None => (0, &[]),
        }
    }

    /// The JSON with `apiVersion` and `kind` first, as single-object
    /// responses and watch events carry it.
    pub fn write_typed(&self, kind: Kind, out: &mut Vec<u8>) {
        out.reserve(self.block().0 + 96);
        out.extend_from_slice(b"{\"apiVersion\":\"");
        out.extend_from_slice(kind.api_version().as_bytes());
        out.extend_from_slice(b"\",\"kind\":\"");
        out.extend_from_slice(kind.kind_name().as_bytes());
        out.push(b'"');
        // The object's own `{` becomes the comma after the type meta, or
        // goes when the object is `{}`.
        let at = out.len();
        self.write_json(out);
        if out.get(at + 1) == Some(&b'}') {
            out.remove(at);
        } else if let Some(open) = out.get_mut(at) {
            *open = b',';
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

    /// (namespace, name): how the controllers key the objects they track.
    pub fn key(&self) -> (String, String) {
        (self.namespace().to_owned(), self.name().to_owned())
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
        self.finalizers.iter().any(|f| &**f == name)
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

    /// `status.conditions` has Ready with status True.
    pub fn ready(&self) -> bool {
        self.ready
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
            .field("bytes", &self.block().0)
            .field("stored_bytes", &self.json.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Stored {
    fn eq(&self, other: &Stored) -> bool {
        self.json == other.json
            && self.slot == other.slot
            && self.version == other.version
            && self.rev == other.rev
    }
}
