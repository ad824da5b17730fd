//! The operations port: `/metrics` (Prometheus text), `/live` and `/ready`
//! (ready = every watch has synced and the server is not draining).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cluster::Tracker;
use crate::metrics::Metrics;

/// What the probes read.
#[derive(Debug)]
pub struct Probe {
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<Metrics>,
    pub draining: AtomicBool,
    /// Further conditions of readiness, each with what `/ready` says while
    /// it is false (the worker's broker connection, its stores).
    pub conditions: Vec<(watch::Receiver<bool>, &'static str)>,
}

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn route(probe: &Probe, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            probe.metrics.render(),
        ),
        "/live" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/ready" => {
            if probe.draining.load(Ordering::Relaxed) {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "draining\n".into(),
                )
            } else if let Some((_, what)) = probe.conditions.iter().find(|(rx, _)| !*rx.borrow()) {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("{what}\n"),
                )
            } else if probe.tracker.is_synced() {
                reply(StatusCode::OK, "text/plain", "ok\n".into())
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "watches not synced yet\n".into(),
                )
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /live or /ready\n".into(),
        ),
    }
}

/// Serves until `stop` turns true.
pub async fn serve(listener: TcpListener, probe: Arc<Probe>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = crate::stop::stopped(&mut stop) => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let probe = probe.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = route(&probe, req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Whether a store the process depends on answered the last time it was
/// used: `/ready` reads it, and each change is logged once (WARN when it
/// stops answering) rather than on every failed call.
#[derive(Debug)]
pub struct Reachable {
    what: &'static str,
    tx: watch::Sender<bool>,
}

impl Reachable {
    pub fn new(what: &'static str) -> Reachable {
        Reachable {
            what,
            tx: watch::Sender::new(true),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    pub fn ok(&self) {
        if self.tx.send_if_modified(|r| !std::mem::replace(r, true)) {
            tracing::info!(store = self.what, "reachable again");
        }
    }

    pub fn failed(&self, error: &dyn std::fmt::Display) {
        if self.tx.send_if_modified(|r| std::mem::replace(r, false)) {
            tracing::warn!(store = self.what, %error, "unreachable");
        }
    }
}
