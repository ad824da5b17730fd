//! The PATCH content types of the Kubernetes API, applied to wire JSON.
//!
//! * `application/merge-patch+json`: RFC 7386 JSON merge patch, and
//!   `application/json-patch+json`: RFC 6902 JSON patch, both through the
//!   `json-patch` crate, with the real server's errors around them.
//! * `application/strategic-merge-patch+json`: the Kubernetes strategic merge
//!   patch, without a schema: the merge key of a list is chosen by the list's
//!   field name alone (see `strategic::list_strategy`), which covers the kinds the dev
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
pub(crate) fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
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

mod strategic;

use strategic::strategic_merge;

#[cfg(test)]
mod tests;
