//! The one door every Kubernetes request goes through: a client-side token
//! bucket shared by all calls, bounded concurrency, retries with the
//! project's full-jitter backoff ([`crate::retry`]) honouring Retry-After,
//! and per-call metrics. It is a tower layer on kube's client, so watches
//! and kube-runtime's own calls pass through it too.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::metrics::Metrics;

mod classify;
mod service;

pub use service::{GateLayer, GateService};

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
}

#[cfg(test)]
mod tests;
