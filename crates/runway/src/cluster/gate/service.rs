//! The tower layer: every request waits for a token and a slot, and is
//! retried on 429, 5xx and connection errors while its body can be replayed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use backon::BackoffBuilder as _;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use tower::{BoxError, Layer, Service, ServiceExt};

use super::classify::classify;
use super::Gate;
use crate::retry::Backoff;

/// The tower layer that puts a [`Gate`] in front of kube's client stack.
#[derive(Debug, Clone)]
pub struct GateLayer {
    pub gate: Arc<Gate>,
}

impl<S> Layer<S> for GateLayer {
    type Service = GateService<S>;
    fn layer(&self, inner: S) -> GateService<S> {
        GateService {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            gate: self.gate.clone(),
        }
    }
}

/// See [`GateLayer`].
#[derive(Debug)]
pub struct GateService<S> {
    // kube's stack is a `BoxService`, which cannot be cloned; calls take it
    // only long enough to start a request.
    inner: Arc<tokio::sync::Mutex<S>>,
    gate: Arc<Gate>,
}

impl<S> Clone for GateService<S> {
    fn clone(&self) -> Self {
        GateService {
            inner: self.inner.clone(),
            gate: self.gate.clone(),
        }
    }
}

fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

fn rebuild(parts: &http::request::Parts, body: Body) -> Request<Body> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    if let Some(name) = parts.extensions.get::<&'static str>() {
        req.extensions_mut().insert(*name);
    }
    req
}

impl<S, B> Service<Request<Body>> for GateService<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let gate = self.gate.clone();
        Box::pin(async move {
            let (verb, resource) = classify(&req);
            let (parts, body) = req.into_parts();
            // Bodies kube builds are in memory; anything else is sent once.
            let replay = body.try_clone();
            let mut body = Some(body);
            let mut attempt = 0u32;
            let mut delays =
                Backoff::new(gate.config.backoff_base, gate.config.backoff_max).build();
            loop {
                attempt += 1;
                gate.acquire().await?;
                let _permit = if verb == "watch" {
                    None
                } else {
                    Some(gate.in_flight.acquire().await?)
                };
                let this_body = match body.take() {
                    Some(b) => b,
                    None => replay
                        .as_ref()
                        .and_then(Body::try_clone)
                        .unwrap_or_else(Body::empty),
                };
                let started = Instant::now();
                let fut = {
                    let mut svc = inner.lock().await;
                    let ready = svc.ready().await.map_err(Into::into)?;
                    ready.call(rebuild(&parts, this_body))
                };
                let result = fut.await.map_err(Into::into);
                let elapsed = started.elapsed().as_secs_f64();
                let can_retry = attempt < gate.config.max_attempts
                    && (replay.is_some() || parts.method == http::Method::GET);
                match result {
                    Ok(resp) => {
                        let code = resp.status();
                        gate.metrics
                            .kube_request(verb, &resource, code.as_str(), elapsed);
                        if retryable(code) && can_retry {
                            let wait = retry_after(resp.headers())
                                .unwrap_or_default()
                                .max(delays.delay());
                            gate.metrics.kube_retries.inc();
                            tracing::debug!(verb, %resource, code = code.as_u16(), ?wait, attempt, "retrying Kubernetes request");
                            drop(resp);
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        return Ok(resp);
                    }
                    Err(e) => {
                        gate.metrics.kube_request(verb, &resource, "error", elapsed);
                        if can_retry {
                            let wait = delays.delay();
                            gate.metrics.kube_retries.inc();
                            tracing::debug!(verb, %resource, error = %e, ?wait, attempt, "retrying Kubernetes request");
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        return Err(e);
                    }
                }
            }
        })
    }
}
