//! Objects with their `kind` and `apiVersion`, as single-object responses
//! carry them (stored objects and list items have neither). Stored objects
//! write theirs from their stored JSON (`Stored::write_typed`); this is for
//! the copies a delete answers with.

use serde_json::{json, Map, Value};

use crate::validate::Kind;

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
