//! An object's JSON without `metadata.resourceVersion`, and the place it goes
//! back in. The store keeps the revision beside the bytes, so a new version is
//! serialized and compressed before the store's lock is taken (the revision
//! is only known under it: serializing there was most of the time the lock
//! was held, and the kubelet, the controller and the server's handlers queued
//! on it), and a delete restamps the last version without parsing it.

use serde_json::{Map, Value};

const KEY: &str = "resourceVersion";

/// Where `"resourceVersion":…` goes in the JSON: a byte offset, and whether
/// a comma comes before it (a key sorts before it) or after it (it is the
/// first key of several).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    at: u32,
    lead: bool,
    trail: bool,
}

/// How `metadata.resourceVersion` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Version {
    Absent,
    /// The store's own form: the revision as a decimal string.
    Rev,
    /// Anything else, as its JSON (what a client sent, in a dry run).
    Raw(Box<str>),
}

/// The object's JSON with sorted keys (as `serde_json::to_vec` writes it)
/// minus `metadata.resourceVersion`; where it goes back in (none without a
/// `metadata` object); how it read and the revision it names.
pub(super) fn split(obj: &Value) -> (Vec<u8>, Option<Slot>, Version, u64) {
    let mut out = Vec::with_capacity(2048);
    let meta = obj.get("metadata").and_then(Value::as_object);
    let (Value::Object(top), Some(meta)) = (obj, meta) else {
        // A Value always serializes (its keys are strings).
        let _ = serde_json::to_writer(&mut out, obj);
        return (out, None, Version::Absent, 0);
    };
    let mut slot = None;
    out.push(b'{');
    for (i, (k, v)) in top.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_key(&mut out, k);
        if k == "metadata" {
            slot = Some(write_meta(&mut out, meta));
        } else {
            let _ = serde_json::to_writer(&mut out, v);
        }
    }
    out.push(b'}');
    let (version, rev) = read_version(meta.get(KEY));
    (out, slot, version, rev)
}

fn write_key(out: &mut Vec<u8>, k: &str) {
    let _ = serde_json::to_writer(&mut *out, k);
    out.push(b':');
}

fn write_meta(out: &mut Vec<u8>, meta: &Map<String, Value>) -> Slot {
    out.push(b'{');
    let mut written = 0;
    let mut slot = None;
    for (k, v) in meta {
        if k == KEY {
            continue;
        }
        if slot.is_none() && k.as_str() > KEY {
            slot = Some(Slot {
                at: offset(out),
                lead: written > 0,
                trail: written == 0,
            });
        }
        if written > 0 {
            out.push(b',');
        }
        write_key(out, k);
        let _ = serde_json::to_writer(&mut *out, v);
        written += 1;
    }
    let slot = slot.unwrap_or(Slot {
        at: offset(out),
        lead: written > 0,
        trail: false,
    });
    out.push(b'}');
    slot
}

fn offset(out: &[u8]) -> u32 {
    // Request bodies are capped far below 4 GiB.
    u32::try_from(out.len()).unwrap_or(u32::MAX)
}

fn read_version(v: Option<&Value>) -> (Version, u64) {
    match v {
        None => (Version::Absent, 0),
        Some(Value::String(s)) => match s.parse::<u64>() {
            Ok(rev) if rev.to_string() == *s => (Version::Rev, rev),
            parsed => (Version::Raw(raw(v)), parsed.unwrap_or(0)),
        },
        Some(_) => (Version::Raw(raw(v)), 0),
    }
}

fn raw(v: Option<&Value>) -> Box<str> {
    serde_json::to_string(&v).unwrap_or_default().into()
}

/// Puts `"resourceVersion":…` back at `slot` of the JSON that starts at
/// `start` of `out`.
pub(super) fn restore(out: &mut Vec<u8>, start: usize, slot: Slot, version: &Version, rev: u64) {
    let mut field = Vec::with_capacity(48);
    if slot.lead {
        field.push(b',');
    }
    field.extend_from_slice(b"\"resourceVersion\":");
    match version {
        Version::Absent => return,
        Version::Rev => {
            field.push(b'"');
            field.extend_from_slice(rev.to_string().as_bytes());
            field.push(b'"');
        }
        Version::Raw(text) => field.extend_from_slice(text.as_bytes()),
    }
    if slot.trail {
        field.push(b',');
    }
    let at = (start + slot.at as usize).min(out.len());
    out.splice(at..at, field);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// The split JSON with the version put back, as the store writes it out.
    fn joined(obj: &Value, rev: Option<u64>) -> Vec<u8> {
        let (mut out, slot, mut version, mut read) = split(obj);
        if let Some(rev) = rev {
            (version, read) = (Version::Rev, rev);
        }
        if let Some(slot) = slot {
            restore(&mut out, 0, slot, &version, read);
        }
        out
    }

    /// Keys that sort before, after and around `resourceVersion`.
    const KEYS: &[&str] = &[
        "annotations",
        "name",
        "resourceVersio",
        "resourceVersion0",
        "resourceversion",
        "uid",
        "\u{e9}",
        "",
    ];

    fn meta() -> impl Strategy<Value = Map<String, Value>> {
        let value = prop_oneof![
            Just(json!("v")),
            Just(json!({"resourceVersion": "9"})),
            Just(json!(["a\"b", 1])),
        ];
        let version = prop_oneof![
            Just(None),
            (0u64..1_000_000).prop_map(|r| Some(json!(r.to_string()))),
            Just(Some(json!("007"))),
            Just(Some(json!(""))),
            Just(Some(json!(12))),
        ];
        (
            prop::collection::btree_map(0..KEYS.len(), value, 0..6),
            version,
        )
            .prop_map(|(keys, rv)| {
                let mut m: Map<String, Value> = keys
                    .into_iter()
                    .map(|(k, v)| (KEYS[k].to_owned(), v))
                    .collect();
                if let Some(rv) = rv {
                    m.insert(KEY.into(), rv);
                }
                m
            })
    }

    proptest! {
        /// Split and restored, any object reads byte for byte as serde_json
        /// writes it, whatever keys surround `resourceVersion`.
        #[test]
        fn split_and_restored_is_serde_json(meta in meta(), before in any::<bool>(), after in any::<bool>()) {
            let mut obj = json!({"metadata": meta});
            if before { obj["apiVersion"] = json!("v1"); }
            if after { obj["spec"] = json!({"resourceVersion": "1"}); }
            prop_assert_eq!(joined(&obj, None), serde_json::to_vec(&obj).unwrap());
        }

        /// A revision given at commit reads as if it had been written into
        /// the object.
        #[test]
        fn a_commit_revision_reads_as_stamped(meta in meta(), rev in 0u64..u64::MAX) {
            let mut obj = json!({"metadata": meta, "status": {}});
            let got = joined(&obj, Some(rev));
            obj["metadata"][KEY] = json!(rev.to_string());
            prop_assert_eq!(got, serde_json::to_vec(&obj).unwrap());
        }
    }

    #[test]
    fn an_object_without_metadata_is_written_whole() {
        for obj in [json!({}), json!({"metadata": 5}), json!([1]), json!("x")] {
            let (out, slot, version, rev) = split(&obj);
            assert_eq!(out, serde_json::to_vec(&obj).unwrap());
            assert_eq!((slot, version, rev), (None, Version::Absent, 0));
        }
    }

    #[test]
    fn only_the_store_form_is_read_as_a_revision() {
        let read = |rv: Value| {
            let (_, _, version, rev) = split(&json!({"metadata": {KEY: rv}}));
            (version, rev)
        };
        assert_eq!(read(json!("42")), (Version::Rev, 42));
        assert_eq!(read(json!("042")), (Version::Raw("\"042\"".into()), 42));
        assert_eq!(read(json!("x")), (Version::Raw("\"x\"".into()), 0));
        assert_eq!(read(json!(7)), (Version::Raw("7".into()), 0));
    }
}
