//! The verb and resource of a request, the labels of the per-call metrics.

use http::Request;
use kube::client::Body;

/// The verb and resource of a request, for metrics.
pub(super) fn classify(req: &Request<Body>) -> (&'static str, String) {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or_default();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/namespaces/ns/pods[/name[/log]] or /apis/batch/v1/namespaces/ns/jobs[/name]
    let after_ns = segments
        .iter()
        .position(|s| *s == "namespaces")
        .map(|i| &segments[(i + 2).min(segments.len())..])
        .unwrap_or(&segments[segments.len().saturating_sub(1)..]);
    let resource = match after_ns {
        [kind, _, sub, ..] => format!("{kind}/{sub}"),
        [kind, ..] => (*kind).to_owned(),
        [] => "namespaces".to_owned(),
    };
    let named = after_ns.len() >= 2;
    let verb = match *req.method() {
        http::Method::GET
            if query
                .split('&')
                .any(|kv| kv == "watch=true" || kv == "watch=1") =>
        {
            "watch"
        }
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if named => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}
