//! `K8sContainerContext._merge_k8s_config`: DEEP and SHALLOW merging of raw config.

use serde_json::Value;

use super::path::At;
use super::user::{Section, UserConfig};
use super::{Error, Map};

/// How a more specific layer combines with the one below it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MergeBehavior {
    /// Dicts merge recursively; lists append and drop structural duplicates
    /// (except `command` and `args`, which replace); scalars replace.
    #[default]
    Deep,
    /// Within each section, top-level keys replace wholesale.
    Shallow,
}

/// Keys whose lists replace rather than append even in a DEEP merge.
const ALWAYS_SHALLOW_LIST_FIELDS: [&str; 2] = ["command", "args"];

/// Merges `from` onto `onto`. The behaviour is `from`'s (the more specific
/// layer decides), and the result carries it on.
pub fn merge_user_configs(onto: &UserConfig, from: &UserConfig) -> Result<UserConfig, Error> {
    merge_user_configs_into(onto.clone(), from)
}

/// [`merge_user_configs`] onto a config the caller owns: nothing of `onto`
/// is copied, only what `from` adds.
pub fn merge_user_configs_into(
    mut onto: UserConfig,
    from: &UserConfig,
) -> Result<UserConfig, Error> {
    onto.merge_behavior = from.merge_behavior;
    for section in Section::ALL {
        let source = from.get(section);
        if source.is_empty() {
            continue;
        }
        let target = onto.get_mut(section);
        match from.merge_behavior {
            MergeBehavior::Deep => deep_merge(target, source, &At::Root(section.name()))?,
            MergeBehavior::Shallow => {
                for (k, v) in source {
                    target.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Ok(onto)
}

fn deep_merge(onto: &mut Map, from: &Map, at: &At<'_>) -> Result<(), Error> {
    for (key, from_value) in from {
        let Some(onto_value) = onto.get_mut(key) else {
            onto.insert(key.clone(), from_value.clone());
            continue;
        };
        match from_value {
            Value::Array(items) if !ALWAYS_SHALLOW_LIST_FIELDS.contains(&key.as_str()) => {
                let Value::Array(existing) = onto_value else {
                    return Err(conflict(&At::Key(at, key), onto_value, from_value));
                };
                existing.extend(items.iter().cloned());
                dedupe(existing);
            }
            Value::Object(inner) => {
                let Value::Object(existing) = onto_value else {
                    return Err(conflict(&At::Key(at, key), onto_value, from_value));
                };
                deep_merge(existing, inner, &At::Key(at, key))?;
            }
            _ => *onto_value = from_value.clone(),
        }
    }
    Ok(())
}

/// `_dedupe_list`: first occurrence wins. Dagster compares entries by the
/// Python hash of their content, so numbers and booleans compare by numeric
/// value (`1`, `1.0` and `true` are one entry), at any depth.
pub(crate) fn dedupe(items: &mut Vec<Value>) {
    let mut kept: Vec<Value> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        if !kept.iter().any(|k| py_eq(k, &item)) {
            kept.push(item);
        }
    }
    *items = kept;
}

fn py_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        (Value::Number(_) | Value::Bool(_), Value::Number(_) | Value::Bool(_)) => {
            numeric(a) == numeric(b)
        }
        _ => a == b,
    }
}

fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn conflict(at: &At<'_>, onto: &Value, from: &Value) -> Error {
    Error::MergeConflict {
        path: at.render(),
        onto: json_kind(onto),
        from: json_kind(from),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
