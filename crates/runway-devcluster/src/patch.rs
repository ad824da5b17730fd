//! The PATCH content types of the Kubernetes API, applied to wire JSON.
//!
//! * `application/merge-patch+json`: RFC 7386 JSON merge patch, and
//!   `application/json-patch+json`: RFC 6902 JSON patch, both through the
//!   `json-patch` crate, with the real server's errors around them.
//! * `application/strategic-merge-patch+json`: the Kubernetes strategic merge
//!   patch, without a schema: the merge key of a list is chosen by the list's
//!   field name alone (see [`list_strategy`]), which covers the kinds the dev
//!   cluster serves (Jobs, Pods, ConfigMaps, Secrets, Events, ServiceAccounts,
//!   Namespaces).
//! * `application/apply-patch+yaml`: server-side apply, approximated as a
//!   strategic merge of the applied configuration (see [`apply_patch`]).
//!
//! Pure: no I/O. Checks that belong to the caller (the name in the body
//! matches the URL, immutable fields, validation) are not made here.

use serde_json::{json, Map, Value};

use super::status::ApiError;

/// The JSON patch operation limit of the real API server.
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Strategic merge patch directive keys.
const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// How a PATCH body is to be interpreted, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value. Parameters after `;`
    /// (`; charset=utf-8`) are ignored; anything else is 415.
    pub fn from_content_type(ct: &str) -> Result<PatchType, ApiError> {
        let media = ct.split(';').next().unwrap_or("").trim();
        let ty = if media.eq_ignore_ascii_case("application/merge-patch+json") {
            PatchType::Merge
        } else if media.eq_ignore_ascii_case("application/json-patch+json") {
            PatchType::Json
        } else if media.eq_ignore_ascii_case("application/strategic-merge-patch+json") {
            PatchType::StrategicMerge
        } else if media.eq_ignore_ascii_case("application/apply-patch+yaml") {
            PatchType::Apply
        } else {
            return Err(ApiError::unsupported_media_type(
                ct,
                "application/json-patch+json, application/merge-patch+json, \
                 application/strategic-merge-patch+json, application/apply-patch+yaml",
            ));
        };
        Ok(ty)
    }

    /// The media type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Applies a PATCH body of type `ty` to `target` and returns the patched
/// object. `target` is not modified.
///
/// Errors:
/// * a body that does not decode, or is not the JSON type its patch type
///   needs (an object; an array for JSON patch): 400 BadRequest;
/// * a JSON patch operation that does not apply (missing path, failed `test`,
///   unknown op): 422 Invalid, as the real server answers;
/// * a JSON patch of more than 10000 operations: 413;
/// * a malformed strategic merge directive (a keyed list element without its
///   merge key, an unknown `$patch` value): 400. The real server answers most
///   of these with a 500 (the error escapes unconverted); a client error is
///   more useful here.
///
/// Server-side apply (`Apply`) is approximated: the applied configuration is
/// strategic-merged onto the target. There is no field ownership
/// (`managedFields`) tracking and no conflict detection, so `force` is moot,
/// and fields a manager applied before but omits now are not removed. A
/// `null` in the applied configuration deletes the field, as in a strategic
/// merge patch.
pub fn apply_patch(target: &Value, patch_body: &[u8], ty: PatchType) -> Result<Value, ApiError> {
    match ty {
        PatchType::Merge => merge_patch(target, patch_body),
        PatchType::Json => json_patch(target, patch_body),
        PatchType::StrategicMerge => {
            let patch: Value = serde_json::from_slice(patch_body)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let patch = match patch {
                Value::Object(m) => m,
                // `null` decodes to an empty patch map in Go: no change.
                Value::Null => Map::new(),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                        go_type(&other)
                    )))
                }
            };
            strategic_merge(target, &patch)
        }
        PatchType::Apply => {
            let applied = decode_apply(patch_body)?;
            strategic_merge(target, &applied)
        }
    }
}

/// The Go JSON type name of a value, as `encoding/json` errors spell it.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

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

// ---------------------------------------------------------------------------
// RFC 7386 JSON merge patch and RFC 6902 JSON patch, through `json-patch`

/// Applies a merge patch body: an object merged in, `null` deleting a key.
fn merge_patch(target: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON Patch: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request(format!(
            "Invalid JSON Patch: a merge patch must be a JSON object, got {}",
            go_type(&patch)
        )));
    }
    let mut out = target.clone();
    json_patch::merge(&mut out, &patch);
    Ok(out)
}

/// Applies a JSON patch body.
///
/// Status codes follow the real API server: a body that does not decode as
/// an array of operations is 400 with Go's decoder message (the Python client
/// sends a dict body as json-patch by mistake; the real server answers
/// `json: cannot unmarshal object into Go value of type jsonpatch.Patch`).
/// An operation that does not apply (a missing path, an index out of range, a
/// failed `test`, an unknown `op`) is 422 Invalid: the real server decodes
/// each operation only when it applies it, uses the generic 422 message "the
/// server rejected our request due to an error in our request" and drops the
/// cause; here the cause, naming the operation's index, op and path, is
/// appended to it.
fn json_patch(target: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let ops = match patch {
        Value::Array(ops) => ops,
        // Go decodes `null` to an empty patch.
        Value::Null => return Ok(target.clone()),
        other => {
            return Err(ApiError::bad_request(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
                go_type(&other)
            )))
        }
    };
    if let Some(bad) = ops.iter().find(|op| !(op.is_object() || op.is_null())) {
        return Err(ApiError::bad_request(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
            go_type(bad)
        )));
    }
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError {
            code: 413,
            reason: "RequestEntityTooLarge",
            message: format!(
                "Request entity too large: The allowed maximum operations in a JSON patch is \
                 {MAX_JSON_PATCH_OPERATIONS}, got {}",
                ops.len()
            ),
            details: None,
            retry_after: None,
        });
    }
    let mut doc = target.clone();
    for (i, op) in ops.into_iter().enumerate() {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        apply_op(&mut doc, op).map_err(|cause| {
            unprocessable(format!(
                "json patch operation {i} ({name} {path:?}) does not apply: {cause}"
            ))
        })?;
    }
    Ok(doc)
}

/// The real server's 422 for a JSON patch that does not apply.
fn unprocessable(cause: String) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("the server rejected our request due to an error in our request: {cause}"),
        details: Some(json!({})),
        retry_after: None,
    }
}

/// One JSON patch operation, decoded as it is applied; the error is the cause.
fn apply_op(doc: &mut Value, op: Value) -> Result<(), String> {
    let op: json_patch::PatchOperation = serde_json::from_value(op).map_err(|e| e.to_string())?;
    // A failed patch discards the whole document, so the undo log `patch`
    // keeps for a partial failure would be wasted work.
    json_patch::patch_unsafe(doc, std::slice::from_ref(&op)).map_err(|e| e.kind.to_string())
}

// ---------------------------------------------------------------------------
// Strategic merge patch

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
fn strategic_merge(target: &Value, patch: &Map<String, Value>) -> Result<Value, ApiError> {
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
    if let Some(retain) = patch.get(RETAIN_KEYS) {
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
    }

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

    // `$setElementOrder/f` without a patch for `f`: only reorder `f`.
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

/// One element of a merged list, with what ordering needs.
struct Item {
    value: Value,
    /// Position in the original list (none for an element the patch added).
    orig: Option<usize>,
}

/// Merges a patch list into an original list with a merging strategy, then
/// orders the result as upstream does: elements named by the patch (or by
/// `$setElementOrder`) in that order, the others in their original order,
/// interleaved by original position where both are known.
fn merge_list(
    orig: &[Value],
    patch: &[Value],
    strategy: ListStrategy,
    order: Option<&[Value]>,
    path: &str,
) -> Result<Vec<Value>, ApiError> {
    let (items, patch_rest): (Vec<Item>, Vec<&Value>) = match strategy {
        ListStrategy::Keyed(key) => match merge_keyed(orig, patch, key, path)? {
            Keyed::Replaced(list) => return Ok(list),
            Keyed::Merged(items, rest) => (items, rest),
        },
        ListStrategy::Set | ListStrategy::Replace => {
            let mut items: Vec<Item> = Vec::with_capacity(orig.len() + patch.len());
            for (i, v) in orig.iter().enumerate() {
                if !items.iter().any(|it| json_eq(&it.value, v)) {
                    items.push(Item {
                        value: v.clone(),
                        orig: Some(i),
                    });
                }
            }
            for v in patch {
                if !items.iter().any(|it| json_eq(&it.value, v)) {
                    items.push(Item {
                        value: v.clone(),
                        orig: None,
                    });
                }
            }
            (items, patch.iter().collect())
        }
    };

    // Where an element falls in the wanted order, if it is named there.
    let key = match strategy {
        ListStrategy::Keyed(key) => Some(key),
        _ => None,
    };
    let same = |a: &Value, b: &Value| match key {
        Some(key) => match (a.get(key), b.get(key)) {
            (Some(x), Some(y)) => json_eq(x, y),
            _ => false,
        },
        None => json_eq(a, b),
    };
    let order_of = |v: &Value| -> Option<usize> {
        match order {
            Some(order) => order.iter().position(|o| same(o, v)),
            None => patch_rest.iter().position(|o| same(o, v)),
        }
    };

    let mut named: Vec<(usize, Item)> = Vec::new();
    let mut server_only: Vec<Item> = Vec::new();
    for item in items {
        match order_of(&item.value) {
            Some(pos) => named.push((pos, item)),
            None => server_only.push(item),
        }
    }
    named.sort_by_key(|(pos, _)| *pos);

    // Upstream `mergeSortedSlice(serverOnly, patchItems, original)`.
    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = named.into_iter().map(|(_, item)| item).peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!((l.orig, r.orig), (Some(li), Some(ri)) if li < ri),
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some(item) = next {
            out.push(item.value);
        }
    }
    Ok(out)
}

enum Keyed<'a> {
    /// A `{"$patch": "replace"}` element: the list is the patch's elements.
    Replaced(Vec<Value>),
    /// The merged elements and the patch's non-directive elements.
    Merged(Vec<Item>, Vec<&'a Value>),
}

/// Merges a list of objects by a merge key.
fn merge_keyed<'a>(
    orig: &[Value],
    patch: &'a [Value],
    key: &str,
    path: &str,
) -> Result<Keyed<'a>, ApiError> {
    let mut items: Vec<Item> = orig
        .iter()
        .enumerate()
        .map(|(i, v)| Item {
            value: v.clone(),
            orig: Some(i),
        })
        .collect();
    let key_of = |v: &'a Value| -> Result<&'a Value, ApiError> {
        v.get(key).ok_or_else(|| {
            ApiError::bad_request(format!(
                "map: {v} does not contain declared merge key: {key} (at {path:?})"
            ))
        })
    };
    let matches = |item: &Item, want: &Value| item.value.get(key).is_some_and(|k| json_eq(k, want));

    let mut rest: Vec<&Value> = Vec::with_capacity(patch.len());
    let mut replace = false;
    for element in patch {
        let Value::Object(map) = element else {
            return Err(ApiError::bad_request(format!(
                "list {path:?} merges by {key:?}, but a patch element is a {}: {element}",
                go_type(element)
            )));
        };
        match map.get(DIRECTIVE) {
            None => rest.push(element),
            Some(directive) => match directive.as_str() {
                Some("delete") => {
                    let want = key_of(element)?;
                    items.retain(|item| !matches(item, want));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(ApiError::bad_request(format!(
                        "merging lists cannot yet be specified in the patch (at {path:?})"
                    )))
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "unknown patch type: {directive} in list element {element} (at {path:?})"
                    )))
                }
            },
        }
    }
    if replace {
        let mut list = Vec::with_capacity(rest.len());
        for element in rest {
            if let Some(v) = smp_fresh(element, "", None, path)? {
                list.push(v);
            }
        }
        return Ok(Keyed::Replaced(list));
    }

    for element in &rest {
        let want = key_of(element)?;
        let Value::Object(p) = element else {
            continue;
        };
        match items.iter_mut().find(|item| matches(item, want)) {
            Some(item) => {
                if let Value::Object(existing) = &mut item.value {
                    // A `$patch` directive was taken out above, so the element stays.
                    smp_object(existing, p, path)?;
                }
            }
            None => {
                let mut fresh = Map::new();
                smp_object(&mut fresh, p, path)?;
                items.push(Item {
                    value: Value::Object(fresh),
                    orig: None,
                });
            }
        }
    }
    Ok(Keyed::Merged(items, rest))
}

// ---------------------------------------------------------------------------
// Server-side apply

/// Decodes an apply body: JSON, else YAML; it must be an object.
fn decode_apply(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v,
        Err(_) => crate::yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
    };
    match value {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::bad_request(format!(
            "error decoding YAML: the applied configuration must be an object, got {}",
            go_type(&other)
        ))),
    }
}

#[cfg(test)]
mod tests;
