//! The HTTP front of the dev cluster: routing, discovery, list/watch, CRUD,
//! pod logs, authentication and fault injection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;

use super::api::{with_type_meta, Cluster, DeleteOptions, Propagation, Typed};
use super::clock::rfc3339;
use super::faults::{FaultSettings, Faults};
use super::http::{error_response, json_response, stream_response, text_response, Query, Resp};
use super::logs::LogStore;
use super::patch::PatchType;
use super::selector::{FieldKind, FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{EventType, Key, ListQuery};
use super::validate::Kind;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer token required on every request when set (401 otherwise).
    pub token: Option<String>,
    /// Period of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// How long a watch without `timeoutSeconds` stays open.
    pub default_watch_timeout: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            token: None,
            bookmark_interval: Duration::from_secs(60),
            default_watch_timeout: Duration::from_secs(1800),
            max_body_bytes: 3 * 1024 * 1024,
        }
    }
}

/// What the request handlers share.
#[derive(Debug)]
pub struct Shared {
    pub cluster: Arc<Cluster>,
    pub logs: Arc<LogStore>,
    pub faults: Arc<Faults>,
    pub config: ServerConfig,
}

/// Accepts connections until `shutdown` resolves; with `tls`, every
/// connection is a TLS one.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    // A failed handshake is the client's problem; the server goes on.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve_connection(stream, shared).await;
                    }
                }
                None => serve_connection(stream, shared).await,
            }
        });
    }
}

async fn serve_connection<S>(io: S, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

/// Where a request goes.
#[derive(Debug)]
enum Route {
    Version,
    Health,
    ApiVersions,
    ApiGroups,
    CoreResources,
    BatchResources,
    OpenApi,
    Faults,
    Collection {
        kind: Kind,
        namespace: Option<String>,
    },
    Item {
        kind: Kind,
        namespace: String,
        name: String,
        sub: Sub,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    None,
    Status,
    Log,
}

fn core_kind(plural: &str) -> Option<Kind> {
    Some(match plural {
        "pods" => Kind::Pod,
        "events" => Kind::Event,
        "configmaps" => Kind::ConfigMap,
        "secrets" => Kind::Secret,
        "serviceaccounts" => Kind::ServiceAccount,
        "namespaces" => Kind::Namespace,
        _ => return None,
    })
}

fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let item = |kind: Kind, ns: &str, name: &str, sub: Option<&str>| -> Option<Route> {
        let sub = match sub {
            None => Sub::None,
            Some("status") => Sub::Status,
            Some("log") if kind == Kind::Pod => Sub::Log,
            Some(_) => return None,
        };
        Some(Route::Item {
            kind,
            namespace: ns.to_owned(),
            name: name.to_owned(),
            sub,
        })
    };
    match segs.as_slice() {
        ["version"] => Some(Route::Version),
        ["healthz" | "readyz" | "livez"] => Some(Route::Health),
        ["api"] => Some(Route::ApiVersions),
        ["apis"] => Some(Route::ApiGroups),
        ["api", "v1"] => Some(Route::CoreResources),
        ["apis", "batch"] => Some(Route::ApiGroups),
        ["apis", "batch", "v1"] => Some(Route::BatchResources),
        ["openapi", "v2"] | ["openapi", "v3", ..] => Some(Route::OpenApi),
        ["runway", "v1", "faults"] => Some(Route::Faults),
        ["api", "v1", "namespaces"] => Some(Route::Collection {
            kind: Kind::Namespace,
            namespace: None,
        }),
        ["api", "v1", "namespaces", name] => item(Kind::Namespace, "", name, None),
        ["api", "v1", "namespaces", name, "status"] => {
            item(Kind::Namespace, "", name, Some("status"))
        }
        ["api", "v1", plural] => core_kind(plural).map(|kind| Route::Collection {
            kind,
            namespace: None,
        }),
        ["api", "v1", "namespaces", ns, plural] => {
            core_kind(plural).map(|kind| Route::Collection {
                kind,
                namespace: Some((*ns).to_owned()),
            })
        }
        ["api", "v1", "namespaces", ns, plural, name] => {
            core_kind(plural).and_then(|k| item(k, ns, name, None))
        }
        ["api", "v1", "namespaces", ns, plural, name, sub] => {
            core_kind(plural).and_then(|k| item(k, ns, name, Some(sub)))
        }
        ["apis", "batch", "v1", "jobs"] => Some(Route::Collection {
            kind: Kind::Job,
            namespace: None,
        }),
        ["apis", "batch", "v1", "namespaces", ns, "jobs"] => Some(Route::Collection {
            kind: Kind::Job,
            namespace: Some((*ns).to_owned()),
        }),
        ["apis", "batch", "v1", "namespaces", ns, "jobs", name] => item(Kind::Job, ns, name, None),
        ["apis", "batch", "v1", "namespaces", ns, "jobs", name, sub] => {
            item(Kind::Job, ns, name, Some(sub))
        }
        _ => None,
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    match handle_inner(&shared, req).await {
        Ok(resp) => resp,
        Err(err) => error_response(&err),
    }
}

async fn handle_inner(shared: &Arc<Shared>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    if let Some(token) = &shared.config.token {
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return Err(ApiError::unauthorized());
        }
    }
    let path = req.uri().path().to_owned();
    let query = Query::parse(req.uri().query());
    let route = route(&path).ok_or_else(ApiError::no_route)?;
    let is_api = matches!(route, Route::Collection { .. } | Route::Item { .. });
    if is_api {
        inject_faults(shared).await?;
    }
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let body = read_body(req, shared.config.max_body_bytes).await?;
    let resp = match route {
        Route::Version => json_response(200, &version()),
        Route::Health => text_response(200, "ok"),
        Route::ApiVersions => json_response(200, &api_versions()),
        Route::ApiGroups => json_response(200, &api_groups()),
        Route::CoreResources => json_response(200, &core_resources()),
        Route::BatchResources => json_response(200, &batch_resources()),
        Route::OpenApi => return Err(ApiError::no_route()),
        Route::Faults => faults_endpoint(shared, &method, &body)?,
        Route::Collection { kind, namespace } => {
            collection(
                shared,
                &method,
                kind,
                namespace.as_deref(),
                &query,
                &body,
                &content_type,
            )
            .await?
        }
        Route::Item {
            kind,
            namespace,
            name,
            sub,
        } => {
            let target = Target {
                kind,
                namespace: &namespace,
                name: &name,
                sub,
            };
            item(shared, &method, target, &query, &body, &content_type).await?
        }
    };
    Ok(resp)
}

async fn inject_faults(shared: &Shared) -> Result<(), ApiError> {
    let f = &shared.faults;
    let latency = f.latency_ms.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let r = dice(&shared.cluster);
    let p429 = f.rate_429_ppm.load(Ordering::Relaxed);
    let p500 = f.rate_500_ppm.load(Ordering::Relaxed);
    if r < p429 {
        return Err(ApiError::too_many_requests(
            f.retry_after_seconds.load(Ordering::Relaxed),
        ));
    }
    if r < p429.saturating_add(p500) {
        return Err(ApiError::internal("injected fault: internal error"));
    }
    Ok(())
}

/// A uniform number in 0..1_000_000.
fn dice(cluster: &Cluster) -> u32 {
    let uid = cluster.new_uid();
    let hex: String = uid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    u32::from_str_radix(&hex, 16).unwrap_or(0) % 1_000_000
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let collected = http_body_util::Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    Ok(collected.to_bytes())
}

/// Decodes a create, update or delete body by its Content-Type. kube-apiserver
/// also takes protobuf; the dev cluster serves JSON only, and says so with the
/// 415 a real server gives for a media type it does not know, rather than a 400
/// that reads as if the object itself were malformed.
fn parse_body(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let is = |m: &str| media.eq_ignore_ascii_case(m);
    if media.is_empty() || is("application/json") || is("*/*") {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the body of the request is not valid JSON: {e}"))
        })
    } else if is("application/yaml") {
        crate::yaml::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the body of the request is not valid YAML: {e}"))
        })
    } else {
        Err(ApiError::unsupported_media_type(
            content_type,
            "application/json, application/yaml (this dev cluster does not decode \
             application/vnd.kubernetes.protobuf; send JSON, e.g. kubectl create -f FILE)",
        ))
    }
}

fn faults_endpoint(shared: &Shared, method: &Method, body: &[u8]) -> Result<Resp, ApiError> {
    if *method == Method::POST || *method == Method::PUT {
        let settings: FaultSettings = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("fault settings: {e}")))?;
        if shared.faults.apply(&settings) {
            shared.cluster.compact();
        }
    } else if *method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let current = serde_json::to_value(shared.faults.current()).unwrap_or(Value::Null);
    Ok(json_response(200, &current))
}

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

struct Selectors {
    label: LabelSelector,
    field: FieldSelector,
}

impl Selectors {
    fn parse(kind: Kind, q: &Query) -> Result<Selectors, ApiError> {
        Ok(Selectors {
            label: LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?,
            field: FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), field_kind(kind))?,
        })
    }

    fn matches(&self, obj: &Value) -> bool {
        self.label.matches(obj["metadata"]["labels"].as_object()) && self.field.matches(obj)
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

async fn collection(
    shared: &Arc<Shared>,
    method: &Method,
    kind: Kind,
    namespace: Option<&str>,
    q: &Query,
    body: &[u8],
    content_type: &str,
) -> Result<Resp, ApiError> {
    let dry_run = q.get("dryRun") == Some("All");
    match *method {
        Method::GET if q.flag("watch") => watch(shared, kind, namespace, q),
        Method::GET => list(shared, kind, namespace, q),
        Method::POST => {
            let ns = if kind.namespaced() {
                namespace.ok_or_else(ApiError::method_not_allowed)?
            } else {
                ""
            };
            let obj = parse_body(body, content_type)?;
            let created = shared.cluster.create(kind, ns, obj, dry_run)?;
            commit_then_fail(shared)?;
            Ok(json_response(201, &with_type_meta(kind, &created)))
        }
        Method::DELETE => {
            let sel = Selectors::parse(kind, q)?;
            let opts = delete_options(q, body, content_type)?;
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
                let (ns, name) = super::api::ns_name(&obj);
                match shared.cluster.delete(kind, &ns, &name, &opts) {
                    Ok(_) => items.push((*obj).clone()),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let rev = shared.cluster.revision();
            Ok(json_response(
                200,
                &json!({"kind": list_kind_name(kind), "apiVersion": kind.api_version(),
                        "metadata": {"resourceVersion": rev.to_string()}, "items": items}),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn commit_then_fail(shared: &Shared) -> Result<(), ApiError> {
    let p = shared.faults.commit_then_fail_ppm.load(Ordering::Relaxed);
    if p > 0 && dice(&shared.cluster) < p {
        return Err(ApiError::internal(
            "injected fault: the write was stored but the response failed",
        ));
    }
    Ok(())
}

fn list(shared: &Shared, kind: Kind, namespace: Option<&str>, q: &Query) -> Result<Resp, ApiError> {
    let sel = Selectors::parse(kind, q)?;
    let limit = usize::try_from(q.int("limit")?.unwrap_or(0).max(0)).unwrap_or(0);
    let (at, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (rev, key) = decode_continue(kind, token)?;
            if rev < shared.cluster.lock().compacted_revision() {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list \
                     result. You can start a new list without the continue parameter, or use \
                     the continue token in this response to retrieve the remainder of the \
                     results.",
                ));
            }
            (Some(rev), Some(key))
        }
        None => {
            let rv = q
                .get("resourceVersion")
                .filter(|r| !r.is_empty() && *r != "0");
            let exact = q.get("resourceVersionMatch") == Some("Exact");
            match rv {
                Some(r) => {
                    let n: u64 = r.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid resourceVersion {r:?}"))
                    })?;
                    let current = shared.cluster.revision();
                    if n > current {
                        return Err(ApiError::timeout(format!(
                            "Too large resource version: {n}, current: {current}"
                        )));
                    }
                    (exact.then_some(n), None)
                }
                None if exact => {
                    return Err(ApiError::bad_request(
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    ))
                }
                None => (None, None),
            }
        }
    };
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
    let items: Vec<&Value> = page.items.iter().map(|o| o.as_ref()).collect();
    Ok(json_response(
        200,
        &json!({"kind": list_kind_name(kind), "apiVersion": kind.api_version(),
                "metadata": meta, "items": items}),
    ))
}

/// One watch event line. Serialized straight from the stored object: the
/// clones `json!` and a type-meta copy made were most of a watch's cost.
fn event_line(ty: &str, object: &(impl serde::Serialize + ?Sized)) -> Bytes {
    #[derive(serde::Serialize)]
    struct Line<'a, T: ?Sized> {
        #[serde(rename = "type")]
        ty: &'a str,
        object: &'a T,
    }
    let mut line = serde_json::to_vec(&Line { ty, object }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark(kind: Kind, rev: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": kind.kind_name(), "apiVersion": kind.api_version(), "metadata": meta}),
    )
}

fn watch(
    shared: &Arc<Shared>,
    kind: Kind,
    namespace: Option<&str>,
    q: &Query,
) -> Result<Resp, ApiError> {
    let sel = Selectors::parse(kind, q)?;
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.flag("sendInitialEvents");
    if send_initial && (q.get("resourceVersionMatch") != Some("NotOlderThan") || !bookmarks) {
        return Err(ApiError::invalid(
            "ListOptions",
            super::status::Resource {
                plural: "listoptions",
                group: "meta.k8s.io",
            },
            "",
            vec![super::status::Cause {
                reason: "FieldValueForbidden",
                message: "sendInitialEvents requires setting resourceVersionMatch to \
                          NotOlderThan and allowWatchBookmarks to true"
                    .into(),
                field: "sendInitialEvents".into(),
            }],
        ));
    }
    let timeout = match q.int("timeoutSeconds")? {
        Some(s) if s > 0 => Duration::from_secs(s.unsigned_abs()),
        _ => shared.config.default_watch_timeout,
    };
    let rv = q.get("resourceVersion").filter(|r| !r.is_empty());
    let from_rev = match rv {
        None | Some("0") => None,
        Some(r) => Some(
            r.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {r:?}")))?,
        ),
    };
    let namespace = namespace.map(str::to_owned);
    let in_ns = move |obj: &Value, ns: &Option<String>| {
        ns.as_ref()
            .is_none_or(|n| obj["metadata"]["namespace"].as_str() == Some(n))
    };

    // Read the starting state and subscribe under one lock so the stream has
    // neither gaps nor duplicates.
    let (mut rx, initial, mut last_rev) = {
        let store = shared.cluster.lock();
        let rx = shared.cluster.subscribe();
        let rev = store.revision();
        let initial: Result<Vec<(&'static str, Value)>, ApiError> = match from_rev {
            Some(n) if !send_initial => store.events_after(n).map(|events| {
                events
                    .iter()
                    .filter(|e| e.kind as u8 == kind as u8)
                    .filter_map(|e| {
                        transition(e.ty, e.prev.as_deref(), &e.object, &|o| {
                            in_ns(o, &namespace) && sel.matches(o)
                        })
                        .map(|ty| (ty, with_type_meta(kind, &e.object)))
                    })
                    .collect()
            }),
            _ => store
                .list(
                    &ListQuery {
                        kind,
                        namespace: namespace.as_deref(),
                        at: None,
                        after: None,
                        limit: 0,
                        labels: &sel.label.equalities(),
                    },
                    |o| sel.matches(o),
                )
                .map(|page| {
                    page.items
                        .iter()
                        .map(|o| ("ADDED", with_type_meta(kind, o)))
                        .collect()
                }),
        };
        (rx, initial, rev)
    };

    let (resp, tx) = stream_response("application/json", 256);
    let initial = match initial {
        Ok(events) => events,
        Err(err) => {
            // An expired version is a 200 with one ERROR event, as the real
            // server's watch does; kube-rs and the Python client relist on it.
            let line = event_line("ERROR", &err.to_status());
            tokio::spawn(async move {
                let _ = tx.send(line).await;
            });
            return Ok(resp);
        }
    };
    let mut epoch = shared.faults.watch_epoch();
    let bookmark_every = shared.config.bookmark_interval;
    let shared2 = shared.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        for (ty, obj) in initial {
            if tx.send(event_line(ty, &obj)).await.is_err() {
                return;
            }
        }
        if send_initial && tx.send(bookmark(kind, last_rev, true)).await.is_err() {
            return;
        }
        let mut ticker = tokio::time::interval(bookmark_every);
        ticker.tick().await;
        let _ = epoch.borrow_and_update();
        loop {
            tokio::select! {
                () = &mut deadline => return,
                _ = epoch.changed() => return,
                () = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let rev = last_rev.max(shared2.cluster.revision());
                    if tx.send(bookmark(kind, rev, false)).await.is_err() {
                        return;
                    }
                }
                ev = rx.recv() => match ev {
                    Ok(e) => {
                        if e.rev <= last_rev {
                            continue;
                        }
                        last_rev = e.rev;
                        if e.kind as u8 != kind as u8 {
                            continue;
                        }
                        let ty = transition(e.ty, e.prev.as_deref(), &e.object, &|o| {
                            in_ns(o, &namespace) && sel.matches(o)
                        });
                        if let Some(ty) = ty {
                            if tx.send(event_line(ty, &Typed(kind, &e.object))).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Too slow: end the stream; the client resumes from its
                    // last revision (or relists on 410).
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                }
            }
        }
    });
    Ok(resp)
}

/// The watch event type a change produces for a filtered watcher: objects
/// that start matching are ADDED, those that stop matching are DELETED.
fn transition(
    ty: EventType,
    prev: Option<&Value>,
    obj: &Value,
    matches: &dyn Fn(&Value) -> bool,
) -> Option<&'static str> {
    let now = matches(obj);
    let before = prev.is_some_and(matches);
    match ty {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => (before || now).then_some("DELETED"),
        EventType::Modified => match (before, now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

struct Target<'a> {
    kind: Kind,
    namespace: &'a str,
    name: &'a str,
    sub: Sub,
}

async fn item(
    shared: &Arc<Shared>,
    method: &Method,
    t: Target<'_>,
    q: &Query,
    body: &[u8],
    content_type: &str,
) -> Result<Resp, ApiError> {
    let c = &shared.cluster;
    let dry_run = q.get("dryRun") == Some("All");
    let status_only = t.sub == Sub::Status;
    if t.sub == Sub::Log {
        if *method != Method::GET {
            return Err(ApiError::method_not_allowed());
        }
        return pod_log(shared, t.namespace, t.name, q).await;
    }
    let obj = match *method {
        Method::GET => c.get(t.kind, t.namespace, t.name)?,
        Method::PUT => {
            let new = parse_body(body, content_type)?;
            let o = c.update(t.kind, t.namespace, t.name, new, status_only, dry_run)?;
            commit_then_fail(shared)?;
            o
        }
        Method::PATCH => {
            let ty = PatchType::from_content_type(content_type)?;
            let o = c.patch(t.kind, t.namespace, t.name, body, ty, status_only, dry_run)?;
            commit_then_fail(shared)?;
            o
        }
        Method::DELETE if t.sub == Sub::None => {
            let mut opts = delete_options(q, body, content_type)?;
            opts.dry_run |= dry_run;
            let deleted = c.delete(t.kind, t.namespace, t.name, &opts)?;
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
            return Ok(resp);
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(json_response(200, &with_type_meta(t.kind, &obj)))
}

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

async fn pod_log(
    shared: &Arc<Shared>,
    namespace: &str,
    name: &str,
    q: &Query,
) -> Result<Resp, ApiError> {
    let pod = shared.cluster.get(Kind::Pod, namespace, name)?;
    let containers: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().any(|x| x == c) => c.to_owned(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )))
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )))
        }
    };
    let Some((lines, closed)) = shared.logs.read_from(namespace, name, &container, 0) else {
        let reason = pod["status"]["containerStatuses"]
            .as_array()
            .and_then(|cs| cs.iter().find(|s| s["name"] == container.as_str()))
            .and_then(|s| s["state"]["waiting"]["reason"].as_str())
            .unwrap_or("ContainerCreating")
            .to_owned();
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    };
    let timestamps = q.flag("timestamps");
    let follow = q.flag("follow");
    let tail = q.int("tailLines")?;
    let limit_bytes = q.int("limitBytes")?;
    let since_ms = match q.int("sinceSeconds")? {
        Some(s) => Some(shared.cluster.clock.now_ms() - s * 1000),
        None => q.get("sinceTime").and_then(super::clock::parse_rfc3339),
    };
    let format = move |(ts, line): &(i64, String)| -> String {
        if timestamps {
            format!("{} {line}\n", rfc3339_nanos(*ts))
        } else {
            format!("{line}\n")
        }
    };
    let keep = |(ts, _): &&(i64, String)| since_ms.is_none_or(|s| *ts >= s);
    let mut selected: Vec<&(i64, String)> = lines.iter().filter(keep).collect();
    if let Some(n) = tail {
        let n = usize::try_from(n.max(0)).unwrap_or(0);
        let skip = selected.len().saturating_sub(n);
        selected.drain(..skip);
    }
    let mut text: String = selected.iter().map(|l| format(l)).collect();
    if let Some(limit) = limit_bytes.and_then(|l| usize::try_from(l).ok()) {
        if text.len() > limit {
            let mut cut = limit;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
    }
    if !follow || closed {
        return Ok(text_response(200, text));
    }
    let (resp, tx) = stream_response("text/plain; charset=utf-8", 64);
    let logs = shared.logs.clone();
    let (ns, pod_name) = (namespace.to_owned(), name.to_owned());
    let mut next = lines.len();
    tokio::spawn(async move {
        if !text.is_empty() && tx.send(Bytes::from(text)).await.is_err() {
            return;
        }
        loop {
            let notified = logs.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some((more, closed)) = logs.read_from(&ns, &pod_name, &container, next) else {
                return;
            };
            next += more.len();
            let chunk: String = more.iter().map(&format).collect();
            if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
            if closed {
                return;
            }
            tokio::select! {
                () = notified => {}
                () = tx.closed() => return,
            }
        }
    });
    Ok(resp)
}

fn rfc3339_nanos(ms: i64) -> String {
    let base = rfc3339(ms);
    let frac = ms.rem_euclid(1000);
    format!("{}.{frac:03}000000Z", base.trim_end_matches('Z'))
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "36", "gitVersion": "v1.36.0-runway-devcluster",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
        "platform": "linux/amd64", "emulationMajor": "1", "emulationMinor": "36",
        "minCompatibilityMajor": "1", "minCompatibilityMinor": "35"
    })
}

fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
}

fn api_groups() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
        "name": "batch",
        "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}
    }]})
}

fn resource(name: &str, kind: &str, namespaced: bool, verbs: &[&str], short: &[&str]) -> Value {
    let mut r = json!({"name": name, "singularName": if name.contains('/') { "" } else { name.trim_end_matches('s') },
                       "namespaced": namespaced, "kind": kind, "verbs": verbs});
    if !short.is_empty() {
        r["shortNames"] = json!(short);
    }
    r
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn core_resources() -> Value {
    json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        resource("namespaces", "Namespace", false, &["create", "delete", "get", "list", "patch", "update", "watch"], &["ns"]),
        resource("namespaces/status", "Namespace", false, &["get", "patch", "update"], &[]),
        resource("pods", "Pod", true, ALL_VERBS, &["po"]),
        resource("pods/status", "Pod", true, &["get", "patch", "update"], &[]),
        resource("pods/log", "Pod", true, &["get"], &[]),
        resource("events", "Event", true, ALL_VERBS, &["ev"]),
        resource("configmaps", "ConfigMap", true, ALL_VERBS, &["cm"]),
        resource("secrets", "Secret", true, ALL_VERBS, &[]),
        resource("serviceaccounts", "ServiceAccount", true, ALL_VERBS, &["sa"]),
    ]})
}

fn batch_resources() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "batch/v1", "resources": [
        resource("jobs", "Job", true, ALL_VERBS, &[]),
        resource("jobs/status", "Job", true, &["get", "patch", "update"], &[]),
    ]})
}

/// The listening address, for kubeconfigs and logs.
pub fn base_url(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}
