//! The HTTP front of the dev cluster: authentication, fault injection and
//! dispatch to the handlers.
//!
//! Layout: `routing` (paths to resources), `discovery` (`/version`, `/api`,
//! `/apis` and the resource lists), `items` (create, get, update, patch,
//! delete), `list` and `watch`, `logs` (`pods/{name}/log`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::Value;
use tokio::net::TcpListener;

use super::api::Cluster;
use super::faults::{FaultSettings, Faults};
use super::http::{error_response, json_bytes_response, json_response, text_response, Query, Resp};
use super::logs::LogStore;
use super::status::ApiError;

mod discovery;
mod items;
mod list;
mod logs;
mod routing;
mod watch;

use routing::{route, Route, Target};

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
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut stop = stopped.clone();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        let mut stop = stopped.clone();
        tokio::spawn(async move {
            let connection = async move {
                match tls {
                    Some(acceptor) => {
                        // A failed handshake is the client's problem; the server goes on.
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve_connection(stream, shared).await;
                        }
                    }
                    None => serve_connection(stream, shared).await,
                }
            };
            // A stopped server drops its connections, keep-alive ones
            // included, as an API server that goes away does.
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                () = connection => {}
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

/// A request as the resource handlers see it: method, query and body.
#[derive(Debug)]
struct ApiRequest {
    method: Method,
    query: Query,
    body: Bytes,
    /// `application/json` when the client sent none.
    content_type: String,
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    match handle_inner(&shared, req).await {
        Ok(resp) => resp,
        Err(err) => error_response(&err),
    }
}

async fn handle_inner(shared: &Arc<Shared>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    authenticate(shared, &req)?;
    let route = route(req.uri().path()).ok_or_else(ApiError::no_route)?;
    if matches!(route, Route::Collection { .. } | Route::Item { .. }) {
        inject_faults(shared).await?;
    }
    let query = Query::parse(req.uri().query());
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let body = read_body(req, shared.config.max_body_bytes).await?;
    let req = ApiRequest {
        method,
        query,
        body,
        content_type,
    };
    let resp = match route {
        Route::Version => json_response(200, &discovery::version()),
        Route::Health => text_response(200, "ok"),
        Route::ApiVersions => json_response(200, &discovery::api_versions()),
        Route::ApiGroups => json_response(200, &discovery::api_groups()),
        Route::CoreResources => json_response(200, &discovery::core_resources()),
        Route::BatchResources => json_response(200, &discovery::batch_resources()),
        Route::OpenApi { path } => {
            let doc = crate::openapi::document(&path).ok_or_else(ApiError::no_route)?;
            json_bytes_response(200, doc)
        }
        Route::Faults => faults_endpoint(shared, &req.method, &req.body)?,
        Route::Collection { kind, namespace } => {
            items::collection(shared, &req, kind, namespace.as_deref()).await?
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
            items::item(shared, &req, target).await?
        }
    };
    Ok(resp)
}

/// With a token configured, every request must bear it (401 otherwise).
fn authenticate(shared: &Shared, req: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(token) = &shared.config.token else {
        return Ok(());
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given != Some(token.as_str()) {
        return Err(ApiError::unauthorized());
    }
    Ok(())
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

fn commit_then_fail(shared: &Shared) -> Result<(), ApiError> {
    let p = shared.faults.commit_then_fail_ppm.load(Ordering::Relaxed);
    if p > 0 && dice(&shared.cluster) < p {
        return Err(ApiError::internal(
            "injected fault: the write was stored but the response failed",
        ));
    }
    Ok(())
}

/// The listening address, for kubeconfigs and logs.
pub fn base_url(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}
