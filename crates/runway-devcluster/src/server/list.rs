//! Lists: selectors, `limit` and `continue` (every page served at the
//! first page's revision), lists at a resourceVersion, and deletecollection.

use serde_json::{json, Value};

use super::Shared;
use bytes::Bytes;

use crate::api::DeleteOptions;
use crate::http::{json_bytes_response, Query, Resp};
use crate::selector::{FieldKind, FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Key, ListQuery, Stored};
use crate::validate::Kind;

fn field_kind(kind: Kind) -> FieldKind {
    match kind {
        Kind::Job => FieldKind::Job,
        Kind::Pod => FieldKind::Pod,
        Kind::Event => FieldKind::Event,
        Kind::Namespace => FieldKind::Namespace,
        Kind::ConfigMap => FieldKind::ConfigMap,
        Kind::Secret => FieldKind::Secret,
        Kind::ServiceAccount => FieldKind::ServiceAccount,
    }
}

pub(super) struct Selectors {
    pub(super) label: LabelSelector,
    field: FieldSelector,
}

impl Selectors {
    pub(super) fn parse(kind: Kind, q: &Query) -> Result<Selectors, ApiError> {
        Ok(Selectors {
            label: LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?,
            field: FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), field_kind(kind))?,
        })
    }

    pub(super) fn matches(&self, obj: &Stored) -> bool {
        self.label.matches_with(|key| obj.label(key))
            && (self.field.is_empty() || self.field.matches(&obj.value()))
    }
}

fn list_kind_name(kind: Kind) -> String {
    format!("{}List", kind.kind_name())
}

/// The opaque continue token: the revision of the first page and the last key.
fn encode_continue(rev: u64, key: &Key) -> String {
    use base64::Engine as _;
    let raw = json!({"rv": rev, "ns": key.namespace, "name": key.name}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(kind: Kind, token: &str) -> Result<(u64, Key), ApiError> {
    use base64::Engine as _;
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v["rv"].as_u64().ok_or_else(bad)?;
    let key = Key::new(
        kind,
        v["ns"].as_str().unwrap_or(""),
        v["name"].as_str().ok_or_else(bad)?,
    );
    Ok((rev, key))
}

/// GET on a collection without `watch`.
pub(super) fn list(
    shared: &Shared,
    kind: Kind,
    namespace: Option<&str>,
    q: &Query,
) -> Result<Resp, ApiError> {
    let sel = Selectors::parse(kind, q)?;
    let limit = usize::try_from(q.int("limit")?.unwrap_or(0).max(0)).unwrap_or(0);
    let (at, after) = start_point(shared, kind, q)?;
    let page = shared.cluster.list(
        &ListQuery {
            kind,
            namespace,
            at,
            after: after.as_ref(),
            limit,
            labels: &sel.label.equalities(),
        },
        |o| sel.matches(o),
    )?;
    let mut meta = json!({"resourceVersion": page.rev.to_string()});
    if let Some(next) = &page.next {
        meta["continue"] = json!(encode_continue(page.rev, next));
        meta["remainingItemCount"] = json!(page.remaining);
    }
    let items = page.items.iter().map(|o| &**o);
    Ok(json_bytes_response(200, list_body(kind, &meta, items)))
}

/// A list's JSON around items already serialized.
fn list_body<'a>(kind: Kind, meta: &Value, items: impl Iterator<Item = &'a Stored>) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"apiVersion\":\"");
    out.extend_from_slice(kind.api_version().as_bytes());
    out.extend_from_slice(b"\",\"items\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item.write_json(&mut out);
    }
    out.extend_from_slice(b"],\"kind\":\"");
    out.extend_from_slice(list_kind_name(kind).as_bytes());
    out.extend_from_slice(b"\",\"metadata\":");
    // A Value always serializes.
    let _ = serde_json::to_writer(&mut out, meta);
    out.push(b'}');
    Bytes::from(out)
}

/// The revision to serve the list at (`None`: the current one) and the key
/// to continue after, from `continue` or `resourceVersion(Match)`.
fn start_point(
    shared: &Shared,
    kind: Kind,
    q: &Query,
) -> Result<(Option<u64>, Option<Key>), ApiError> {
    if let Some(token) = q.get("continue").filter(|c| !c.is_empty()) {
        let (rev, key) = decode_continue(kind, token)?;
        if rev < shared.cluster.lock().compacted_revision() {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list \
                 result. You can start a new list without the continue parameter, or use \
                 the continue token in this response to retrieve the remainder of the \
                 results.",
            ));
        }
        return Ok((Some(rev), Some(key)));
    }
    let rv = q
        .get("resourceVersion")
        .filter(|r| !r.is_empty() && *r != "0");
    let exact = q.get("resourceVersionMatch") == Some("Exact");
    match rv {
        Some(r) => {
            let n: u64 = r
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {r:?}")))?;
            let current = shared.cluster.revision();
            if n > current {
                return Err(ApiError::too_large_resource_version(n, current));
            }
            Ok((exact.then_some(n), None))
        }
        None if exact => Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )),
        None => Ok((None, None)),
    }
}

/// DELETE on a collection: every selected object, as a list of what went.
pub(super) fn delete_collection(
    shared: &Shared,
    kind: Kind,
    namespace: Option<&str>,
    sel: &Selectors,
    opts: &DeleteOptions,
) -> Result<Resp, ApiError> {
    let page = shared.cluster.list(
        &ListQuery {
            kind,
            namespace,
            at: None,
            after: None,
            limit: 0,
            labels: &sel.label.equalities(),
        },
        |o| sel.matches(o),
    )?;
    let mut items = Vec::new();
    for obj in page.items {
        match shared
            .cluster
            .delete(kind, obj.namespace(), obj.name(), opts)
        {
            Ok(_) => items.push(obj),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rev = shared.cluster.revision();
    let meta = json!({"resourceVersion": rev.to_string()});
    let items = items.iter().map(|o| &**o);
    Ok(json_bytes_response(200, list_body(kind, &meta, items)))
}
