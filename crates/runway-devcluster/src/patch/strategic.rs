//! The Kubernetes strategic merge patch, without a schema: maps merge, and
//! lists merge by a key chosen from the list's field name, honouring the
//! `$patch`, `$retainKeys`, `$deleteFromPrimitiveList` and
//! `$setElementOrder` directives.

use serde_json::{Map, Value};

use crate::status::ApiError;

mod lists;

use lists::merge_list;

/// Strategic merge patch directive keys.
const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// JSON equality with numbers compared by value (`1` equals `1.0`), as
/// merge-key matching and set lists need.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// How the elements of a list field merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// The patch list replaces the list (the default, as for JSON merge patch).
    Replace,
    /// A list of objects merged element by element, matched by this key.
    Keyed(&'static str),
    /// A list of scalars merged as a set (`finalizers`).
    Set,
}

/// The patch strategy of a list field, by its name alone (the real server
/// reads `patchStrategy`/`patchMergeKey` from the Go types). Field names that
/// mean different things in different kinds are resolved for the kinds the
/// dev cluster serves: `imagePullSecrets` merges by name (as in a PodSpec;
/// a ServiceAccount's would replace); `ports` merges by `containerPort`, or
/// by `port` when no element has a `containerPort`; `envFrom`, `tolerations`,
/// `args`, `command` and every other list are replaced.
fn list_strategy(field: &str) -> ListStrategy {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "secrets"
        | "resourceClaims"
        | "schedulingGates" => ListStrategy::Keyed("name"),
        "volumeMounts" => ListStrategy::Keyed("mountPath"),
        "volumeDevices" => ListStrategy::Keyed("devicePath"),
        "ports" => ListStrategy::Keyed("containerPort"),
        "conditions" => ListStrategy::Keyed("type"),
        "ownerReferences" => ListStrategy::Keyed("uid"),
        "hostAliases" | "podIPs" | "hostIPs" => ListStrategy::Keyed("ip"),
        "topologySpreadConstraints" => ListStrategy::Keyed("topologyKey"),
        "finalizers" => ListStrategy::Set,
        _ => ListStrategy::Replace,
    }
}

/// The strategy for a list given its elements: `ports` lists without any
/// `containerPort` (a Service's) merge by `port`.
fn list_strategy_for(field: &str, orig: &[Value], patch: &[Value]) -> ListStrategy {
    match list_strategy(field) {
        ListStrategy::Keyed("containerPort")
            if !orig
                .iter()
                .chain(patch)
                .any(|e| e.get("containerPort").is_some()) =>
        {
            ListStrategy::Keyed("port")
        }
        s => s,
    }
}

/// What merging a patch map did to the original map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Keep,
    /// `$patch: delete`: the field holding the map goes away.
    Delete,
}

fn child_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// A strategic merge of `patch` onto `target` (which should be an object;
/// anything else is treated as an empty object).
pub(super) fn strategic_merge(
    target: &Value,
    patch: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let mut out = match target {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    match smp_object(&mut out, patch, "")? {
        Outcome::Keep => Ok(Value::Object(out)),
        // `$patch: delete` at the top level empties the object, as upstream.
        Outcome::Delete => Ok(Value::Object(Map::new())),
    }
}

/// Merges a patch map into an original map, honouring a `$patch` directive
/// on the map itself.
fn smp_object(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<Outcome, ApiError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        match directive.as_str() {
            Some("delete") => return Ok(Outcome::Delete),
            Some("replace") => {
                let mut fresh = Map::new();
                smp_fields(&mut fresh, patch, path)?;
                *orig = fresh;
                return Ok(Outcome::Keep);
            }
            Some("merge") => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown patch type: {directive} in map at {:?}",
                    display_path(path)
                )))
            }
        }
    }
    smp_fields(orig, patch, path)?;
    Ok(Outcome::Keep)
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "<root>"
    } else {
        path
    }
}

/// Merges the fields of a patch map (directives on the map itself aside).
fn smp_fields(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<(), ApiError> {
    retain_keys(orig, patch, path)?;
    delete_from_primitive_lists(orig, patch, path)?;
    for (key, value) in patch {
        if key == DIRECTIVE
            || key == RETAIN_KEYS
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if value.is_null() {
            orig.remove(key);
            continue;
        }
        let order = element_order(patch, key, path)?;
        let field_path = child_path(path, key);
        match orig.get_mut(key) {
            Some(existing) => {
                if smp_value(existing, value, key, order, &field_path)? == Outcome::Delete {
                    orig.remove(key);
                }
            }
            None => {
                if let Some(v) = smp_fresh(value, key, order, &field_path)? {
                    orig.insert(key.clone(), v);
                }
            }
        }
    }
    reorder_only(orig, patch, path)
}

/// `$retainKeys`: the fields not named go.
fn retain_keys(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<(), ApiError> {
    let Some(retain) = patch.get(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || {
        ApiError::bad_request(format!(
            "invalid patch format of retainKeys at {:?}",
            display_path(path)
        ))
    };
    let Value::Array(keys) = retain else {
        return Err(bad());
    };
    let keys = keys
        .iter()
        .map(|k| k.as_str().ok_or_else(bad))
        .collect::<Result<Vec<&str>, ApiError>>()?;
    orig.retain(|k, _| keys.contains(&k.as_str()));
    Ok(())
}

/// `$deleteFromPrimitiveList/<field>`: values taken out of a scalar list.
fn delete_from_primitive_lists(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<(), ApiError> {
    for (key, value) in patch {
        let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) else {
            continue;
        };
        let Value::Array(delete) = value else {
            return Err(ApiError::bad_request(format!(
                "invalid patch format of primitive list at {:?}",
                child_path(path, field)
            )));
        };
        if let Some(Value::Array(current)) = orig.get_mut(field) {
            current.retain(|v| !delete.iter().any(|d| json_eq(v, d)));
        }
    }
    Ok(())
}

/// `$setElementOrder/f` without a patch for `f`: only reorder `f`.
fn reorder_only(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<(), ApiError> {
    for key in patch.keys() {
        let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else {
            continue;
        };
        if patch.contains_key(field) {
            continue;
        }
        let order = element_order(patch, field, path)?;
        if let Some(Value::Array(current)) = orig.get_mut(field) {
            let strategy = list_strategy_for(field, current, &[]);
            if strategy != ListStrategy::Replace {
                let merged = merge_list(current, &[], strategy, order, &child_path(path, field))?;
                *current = merged;
            }
        }
    }
    Ok(())
}

/// The `$setElementOrder/<field>` list of a patch map, if any.
fn element_order<'a>(
    patch: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<Option<&'a [Value]>, ApiError> {
    match patch.get(&format!("{SET_ELEMENT_ORDER}{field}")) {
        None => Ok(None),
        Some(Value::Array(order)) => Ok(Some(order)),
        Some(_) => Err(ApiError::bad_request(format!(
            "invalid patch format of setElementOrder list at {:?}",
            child_path(path, field)
        ))),
    }
}

/// Merges a (non-null) patch value into an existing field value.
fn smp_value(
    existing: &mut Value,
    patch: &Value,
    field: &str,
    order: Option<&[Value]>,
    path: &str,
) -> Result<Outcome, ApiError> {
    match (&mut *existing, patch) {
        (Value::Object(orig), Value::Object(p)) => smp_object(orig, p, path),
        (Value::Array(orig), Value::Array(p)) => {
            match list_strategy_for(field, orig, p) {
                ListStrategy::Replace => *existing = patch.clone(),
                strategy => {
                    let merged = merge_list(orig, p, strategy, order, path)?;
                    *orig = merged;
                }
            }
            Ok(Outcome::Keep)
        }
        _ => match smp_fresh(patch, field, order, path)? {
            Some(v) => {
                *existing = v;
                Ok(Outcome::Keep)
            }
            None => Ok(Outcome::Delete),
        },
    }
}

/// The value a patch value produces where there is nothing to merge into:
/// maps are merged into an empty map (dropping nulls and applying
/// directives), merging lists into an empty list. `None`: the field is not
/// to be set (`$patch: delete`).
fn smp_fresh(
    patch: &Value,
    field: &str,
    order: Option<&[Value]>,
    path: &str,
) -> Result<Option<Value>, ApiError> {
    match patch {
        Value::Object(p) => {
            let mut fresh = Map::new();
            match smp_object(&mut fresh, p, path)? {
                Outcome::Keep => Ok(Some(Value::Object(fresh))),
                Outcome::Delete => Ok(None),
            }
        }
        Value::Array(p) => match list_strategy_for(field, &[], p) {
            ListStrategy::Replace => Ok(Some(patch.clone())),
            strategy => Ok(Some(Value::Array(merge_list(
                &[],
                p,
                strategy,
                order,
                path,
            )?))),
        },
        Value::Null => Ok(None),
        other => Ok(Some(other.clone())),
    }
}
