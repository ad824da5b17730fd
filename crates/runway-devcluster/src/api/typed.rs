//! Objects with their `kind` and `apiVersion`, as single-object responses
//! and watch events carry them (stored objects and list items have neither).

use serde_json::{json, Map, Value};

use crate::validate::Kind;

/// An object serialized with its `apiVersion` and `kind`, without copying
/// it. Keys come out sorted, as from [`with_type_meta`]'s map.
#[derive(Debug, Clone, Copy)]
pub struct Typed<'a>(pub Kind, pub &'a Value);

impl serde::Serialize for Typed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(obj) = self.1.as_object() else {
            return self.1.serialize(s);
        };
        let mut map = s.serialize_map(None)?;
        let mut head = [
            ("apiVersion", self.0.api_version()),
            ("kind", self.0.kind_name()),
        ]
        .into_iter()
        .peekable();
        for (k, v) in obj {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            while let Some((hk, hv)) = head.next_if(|(hk, _)| *hk < k.as_str()) {
                map.serialize_entry(hk, hv)?;
            }
            map.serialize_entry(k, v)?;
        }
        for (hk, hv) in head {
            map.serialize_entry(hk, hv)?;
        }
        map.end()
    }
}

/// A copy of a stored object with its `kind` and `apiVersion` added.
pub fn with_type_meta(kind: Kind, obj: &Value) -> Value {
    let mut out = Map::with_capacity(obj.as_object().map_or(0, Map::len) + 2);
    out.insert("kind".into(), json!(kind.kind_name()));
    out.insert("apiVersion".into(), json!(kind.api_version()));
    if let Some(o) = obj.as_object() {
        for (k, v) in o {
            if k != "apiVersion" && k != "kind" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}
