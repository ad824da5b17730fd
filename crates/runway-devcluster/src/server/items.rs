//! Create, get, update, patch and delete: the verbs on a collection path
//! (list and watch aside) and on an item path. Writes handle unknown fields
//! as `fieldValidation` says, with a `Warning` header per dropped field.

use std::sync::Arc;

use hyper::Method;

use super::routing::{Sub, Target};
use super::{commit_then_fail, list, logs, parse_body, watch, ApiRequest, Shared};
use crate::api::{with_type_meta, DeleteOptions, PatchRequest, Propagation};
use crate::http::{add_warnings, json_bytes_response, json_response, Query, Resp};
use crate::patch::PatchType;
use crate::status::{ApiError, Cause, Resource};
use crate::validate::fields::{self, FieldValidation};
use crate::validate::Kind;

/// GET (list or watch), POST and DELETE (deletecollection) on a collection.
pub(super) async fn collection(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    kind: Kind,
    namespace: Option<&str>,
) -> Result<Resp, ApiError> {
    let q = &req.query;
    match req.method {
        Method::GET if q.flag("watch") => watch::watch(shared, kind, namespace, q),
        Method::GET => list::list(shared, kind, namespace, q),
        Method::POST => {
            let ns = if kind.namespaced() {
                namespace.ok_or_else(ApiError::method_not_allowed)?
            } else {
                ""
            };
            let directive = FieldValidation::parse(q.get("fieldValidation"), "CreateOptions")?;
            let mut obj = parse_body(&req.body, &req.content_type)?;
            let warnings =
                fields::check(kind, &mut obj, directive).map_err(|u| u.body_error(kind))?;
            let dry_run = q.get("dryRun") == Some("All");
            let created = shared.cluster.create(kind, ns, obj, dry_run)?;
            commit_then_fail(shared)?;
            let mut resp = json_bytes_response(201, created.typed(kind).into());
            add_warnings(&mut resp, &warnings);
            Ok(resp)
        }
        Method::DELETE => {
            let sel = list::Selectors::parse(kind, q)?;
            let opts = delete_options(q, &req.body, &req.content_type)?;
            list::delete_collection(shared, kind, namespace, &sel, &opts)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The verbs on an object, its status subresource and a pod's log.
pub(super) async fn item(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    t: Target<'_>,
) -> Result<Resp, ApiError> {
    let (c, q) = (&shared.cluster, &req.query);
    let dry_run = q.get("dryRun") == Some("All");
    let status_only = t.sub == Sub::Status;
    if t.sub == Sub::Log {
        if req.method != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        return logs::pod_log(shared, t.namespace, t.name, q).await;
    }
    let (code, obj, warnings) = match req.method {
        Method::GET => (200, c.get(t.kind, t.namespace, t.name)?, Vec::new()),
        Method::PUT => {
            let directive = FieldValidation::parse(q.get("fieldValidation"), "UpdateOptions")?;
            let mut new = parse_body(&req.body, &req.content_type)?;
            let warnings =
                fields::check(t.kind, &mut new, directive).map_err(|u| u.body_error(t.kind))?;
            let o = c.update(t.kind, t.namespace, t.name, new, status_only, dry_run)?;
            commit_then_fail(shared)?;
            (200, o, warnings)
        }
        Method::PATCH => {
            let ty = PatchType::from_content_type(&req.content_type)?;
            let patch = PatchRequest {
                body: &req.body,
                ty,
                status_only,
                dry_run,
                fields: patch_options(q, ty)?,
            };
            let patched = c.patch(t.kind, t.namespace, t.name, &patch)?;
            commit_then_fail(shared)?;
            let code = if patched.created { 201 } else { 200 };
            (code, patched.object, patched.warnings)
        }
        Method::DELETE if t.sub == Sub::None => return delete(shared, req, t).await,
        _ => return Err(ApiError::method_not_allowed()),
    };
    let mut resp = json_bytes_response(code, obj.typed(t.kind).into());
    add_warnings(&mut resp, &warnings);
    Ok(resp)
}

/// PatchOptions, checked as the real server checks them: server-side apply
/// needs a `fieldManager`, and only it may `force`. The field validation
/// directive is the result.
fn patch_options(q: &Query, ty: PatchType) -> Result<FieldValidation, ApiError> {
    let directive = FieldValidation::parse(q.get("fieldValidation"), "PatchOptions")?;
    let cause = if ty == PatchType::Apply {
        q.get("fieldManager")
            .is_none_or(str::is_empty)
            .then(|| Cause {
                reason: "FieldValueRequired",
                message: "Required value: is required for apply patch".into(),
                field: "fieldManager".into(),
            })
    } else {
        q.get("force").is_some().then(|| Cause {
            reason: "FieldValueForbidden",
            message: "Forbidden: may not be specified for non-apply patch".into(),
            field: "force".into(),
        })
    };
    match cause {
        None => Ok(directive),
        Some(cause) => Err(ApiError::invalid(
            "PatchOptions",
            Resource {
                plural: "patchoptions",
                group: "meta.k8s.io",
            },
            "",
            vec![cause],
        )),
    }
}

/// DELETE of an object: the pending object, the last state, or a Status,
/// with the Warning the deletion carries.
async fn delete(shared: &Arc<Shared>, req: &ApiRequest, t: Target<'_>) -> Result<Resp, ApiError> {
    let mut opts = delete_options(&req.query, &req.body, &req.content_type)?;
    opts.dry_run |= req.query.get("dryRun") == Some("All");
    let deleted = shared.cluster.delete(t.kind, t.namespace, t.name, &opts)?;
    commit_then_fail(shared)?;
    let body = if deleted.body["kind"] == "Status" {
        deleted.body
    } else {
        with_type_meta(t.kind, &deleted.body)
    };
    let mut resp = json_response(200, &body);
    if let Some(w) = deleted
        .warning
        .and_then(|w| hyper::header::HeaderValue::from_str(&w).ok())
    {
        resp.headers_mut().insert("Warning", w);
    }
    Ok(resp)
}

/// DeleteOptions from a JSON body and from query parameters (the query wins).
fn delete_options(q: &Query, body: &[u8], content_type: &str) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions::default();
    let parse_policy = |s: &str| match s {
        "Orphan" => Ok(Propagation::Orphan),
        "Background" => Ok(Propagation::Background),
        "Foreground" => Ok(Propagation::Foreground),
        other => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \
             \"Background\", \"Orphan\""
        ))),
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v = parse_body(body, content_type)?;
        if let Some(p) = v["propagationPolicy"].as_str() {
            opts.propagation = Some(parse_policy(p)?);
        }
        if v["orphanDependents"] == true {
            opts.propagation = Some(Propagation::Orphan);
        }
        opts.grace_period_seconds = v["gracePeriodSeconds"].as_i64();
        opts.precondition_uid = v["preconditions"]["uid"].as_str().map(str::to_owned);
        opts.precondition_rev = v["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
        opts.dry_run = v["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "All"));
    }
    if let Some(p) = q.get("propagationPolicy") {
        opts.propagation = Some(parse_policy(p)?);
    }
    if q.get("orphanDependents") == Some("true") {
        opts.propagation = Some(Propagation::Orphan);
    }
    if let Some(g) = q.int("gracePeriodSeconds")? {
        opts.grace_period_seconds = Some(g);
    }
    if q.get("dryRun") == Some("All") {
        opts.dry_run = true;
    }
    Ok(opts)
}
