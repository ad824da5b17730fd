//! The one door every Kubernetes request goes through: a client-side token
//! bucket shared by all calls, bounded concurrency, retries with jittered
//! exponential backoff (honouring Retry-After), and per-call metrics. It is
//! a tower layer on kube's client, so watches and kube-runtime's own calls
//! pass through it too.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use tokio::sync::Semaphore;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::metrics::Metrics;

/// Limits of the gate.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Sustained requests per second; 0 lifts the limit.
    pub qps: f64,
    pub burst: u32,
    /// Requests allowed to wait for a token; the next one is refused.
    pub max_queue: usize,
    /// Requests in flight at once (watches excluded: they are long-lived).
    pub max_in_flight: usize,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for GateConfig {
    fn default() -> GateConfig {
        GateConfig {
            qps: 20.0,
            burst: 30,
            max_queue: 1000,
            max_in_flight: 64,
            max_attempts: 6,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// The bucket was the bottleneck and its queue was full.
#[derive(Debug, thiserror::Error)]
#[error("the Kubernetes client's rate limit ({qps} requests/s) is saturated and {queued} requests are already waiting; retry in {retry_after:?}")]
pub struct Throttled {
    pub qps: f64,
    pub queued: usize,
    pub retry_after: Duration,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    waiting: usize,
}

struct InLine<'a>(&'a Mutex<Bucket>);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        let mut b = self.0.lock().unwrap_or_else(|e| e.into_inner());
        b.waiting = b.waiting.saturating_sub(1);
    }
}

/// The shared state of the gate.
#[derive(Debug)]
pub struct Gate {
    config: GateConfig,
    bucket: Mutex<Bucket>,
    in_flight: Semaphore,
    metrics: Arc<Metrics>,
    seed: AtomicU64,
}

impl Gate {
    pub fn new(config: GateConfig, metrics: Arc<Metrics>) -> Arc<Gate> {
        Arc::new(Gate {
            bucket: Mutex::new(Bucket {
                tokens: f64::from(config.burst.max(1)),
                last: Instant::now(),
                waiting: 0,
            }),
            in_flight: Semaphore::new(config.max_in_flight.max(1)),
            metrics,
            seed: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
            config,
        })
    }

    /// Takes a token, waiting for one when the bucket is empty (in line:
    /// each waiter reserves the next token, as client-go's limiter does).
    pub async fn acquire(&self) -> Result<(), Throttled> {
        if self.config.qps <= 0.0 {
            return Ok(());
        }
        let wait = {
            let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let burst = f64::from(self.config.burst.max(1));
            b.tokens =
                (b.tokens + now.duration_since(b.last).as_secs_f64() * self.config.qps).min(burst);
            b.last = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                return Ok(());
            }
            if b.waiting >= self.config.max_queue {
                let retry_after = Duration::from_secs_f64(
                    ((1.0 - b.tokens) / self.config.qps).max(1.0 / self.config.qps),
                );
                self.metrics.kube_throttled.inc();
                return Err(Throttled {
                    qps: self.config.qps,
                    queued: b.waiting,
                    retry_after,
                });
            }
            b.tokens -= 1.0;
            b.waiting += 1;
            Duration::from_secs_f64(-b.tokens / self.config.qps)
        };
        // Leaves the line even when the waiting call is cancelled (a client
        // that gave up, a timeout), or the line would fill with ghosts.
        let _in_line = InLine(&self.bucket);
        tokio::time::sleep(wait).await;
        self.metrics
            .kube_rate_limit_wait
            .observe(wait.as_secs_f64());
        Ok(())
    }

    /// Full jitter on an exponential backoff (AWS's "full jitter").
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .config
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.config.backoff_max);
        let mut x = self
            .seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        let frac = (x >> 11) as f64 / (1u64 << 53) as f64;
        cap.mul_f64(0.5 + frac / 2.0)
    }
}

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

/// The verb and resource of a request, for metrics.
fn classify(req: &Request<Body>) -> (&'static str, String) {
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
                                .max(gate.backoff(attempt));
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
                            let wait = gate.backoff(attempt);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: http::Method, uri: &str) -> Request<Body> {
        let mut r = Request::new(Body::empty());
        *r.method_mut() = method;
        *r.uri_mut() = uri.parse().unwrap();
        r
    }

    #[test]
    fn requests_are_classified_by_verb_and_resource() {
        use http::Method;
        let cases = [
            (
                Method::POST,
                "/apis/batch/v1/namespaces/ns/jobs",
                ("create", "jobs"),
            ),
            (
                Method::GET,
                "/apis/batch/v1/namespaces/ns/jobs/j",
                ("get", "jobs"),
            ),
            (
                Method::GET,
                "/apis/batch/v1/namespaces/ns/jobs?watch=true&labelSelector=a",
                ("watch", "jobs"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/ns/pods?labelSelector=job-name%3Dj",
                ("list", "pods"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/ns/pods/p/log?tailLines=25",
                ("get", "pods/log"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/ns/pods/p",
                ("delete", "pods"),
            ),
        ];
        for (m, uri, (verb, resource)) in cases {
            let got = classify(&req(m, uri));
            assert_eq!((got.0, got.1.as_str()), (verb, resource), "{uri}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_paces_and_then_refuses() {
        let gate = Gate::new(
            GateConfig {
                qps: 10.0,
                burst: 2,
                max_queue: 3,
                ..GateConfig::default()
            },
            Arc::new(Metrics::new()),
        );
        let start = tokio::time::Instant::now();
        let mut waiters = Vec::new();
        for _ in 0..5 {
            let g = gate.clone();
            waiters.push(tokio::spawn(async move {
                g.acquire().await.map(|()| tokio::time::Instant::now())
            }));
        }
        tokio::task::yield_now().await;
        // Burst 2 at once, three in line; the sixth finds the line full.
        let refused = gate.acquire().await.unwrap_err();
        assert_eq!(refused.queued, 3);
        assert!(refused.retry_after > Duration::ZERO);
        let mut times = Vec::new();
        for w in waiters {
            times.push(w.await.unwrap().unwrap().duration_since(start));
        }
        times.sort();
        assert_eq!(times[1], Duration::ZERO);
        assert!(times[4] >= Duration::from_millis(299), "{times:?}");
        assert!(times[4] <= Duration::from_millis(301), "{times:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_waiters_leave_the_line() {
        let gate = Gate::new(
            GateConfig {
                qps: 1.0,
                burst: 1,
                max_queue: 1,
                ..GateConfig::default()
            },
            Arc::new(Metrics::new()),
        );
        gate.acquire().await.unwrap();
        // Waits in line, then gives up.
        let waiting = tokio::time::timeout(Duration::from_millis(10), gate.acquire()).await;
        assert!(waiting.is_err());
        // The line is free again: this one waits its turn rather than being
        // refused as if the one that gave up were still in line.
        assert!(gate.acquire().await.is_ok());
    }

    #[test]
    fn backoff_is_jittered_within_the_cap() {
        let gate = Gate::new(GateConfig::default(), Arc::new(Metrics::new()));
        let samples: Vec<Duration> = (0..50).map(|_| gate.backoff(10)).collect();
        assert!(samples
            .iter()
            .all(|d| *d >= Duration::from_secs(5) && *d <= Duration::from_secs(10)));
        assert!(samples.windows(2).any(|w| w[0] != w[1]));
        assert!(gate.backoff(1) <= Duration::from_millis(200));
    }
}
