//! The load of `runway bench worker`: step tasks published with confirms,
//! all at once (saturation) or at a fixed rate (latency at load), and their
//! results awaited through the result backend.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt as _};
use serde_json::{json, Value};

use super::{setup, Error};
use crate::broker::publish::{uuid4, Publisher};
use crate::results::watch::{ResultWait, Results};
use runway_core::celery::message::{encode, NewTask};
use runway_core::celery::pyval::PyVal;

/// One task ready to publish: its id, kwargs and result watcher.
pub(super) type Task = (String, PyVal, ResultWait);

pub(super) struct Driver {
    pub results: Arc<Results>,
    pub publisher: Arc<Publisher>,
    pub queue: String,
    /// The kwargs of the Python side's step task; each task gets its own step key.
    pub template: Value,
    /// Publishes awaiting their confirm at once.
    pub window: usize,
}

impl Driver {
    /// `n` tasks whose watchers exist before the clock starts. Step keys carry
    /// `prefix`, so no phase reuses another's Jobs.
    pub async fn prepare(&self, prefix: &str, n: usize) -> Result<Vec<Task>, Error> {
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let mut kw = self.template.clone();
            kw["execute_step_args_packed"]["step_keys_to_execute"] =
                json!([format!("{prefix}{i:05}")]);
            let kwargs: PyVal = serde_json::from_value(kw).map_err(setup)?;
            let id = uuid4();
            let wait = self.results.wait(&id).await.map_err(setup)?;
            tasks.push((id, kwargs, wait));
        }
        Ok(tasks)
    }

    /// Publishes `tasks`, `window` awaiting confirms at once, each no earlier
    /// than its slot when `rate` is given; returns the watchers and the time
    /// publishing took.
    pub async fn publish(
        &self,
        tasks: Vec<Task>,
        rate: Option<f64>,
    ) -> Result<(Vec<ResultWait>, Duration), Error> {
        let started = tokio::time::Instant::now();
        let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r.max(0.1)));
        let mut waits = Vec::with_capacity(tasks.len());
        let mut pending = FuturesUnordered::new();
        for (i, (id, kwargs, wait)) in tasks.into_iter().enumerate() {
            if let Some(every) = interval {
                drive_until(&mut pending, started + every.mul_f64(i as f64)).await?;
            }
            if pending.len() >= self.window.max(1) {
                if let Some(r) = pending.next().await {
                    r?;
                }
            }
            let publisher = self.publisher.clone();
            let queue = self.queue.clone();
            pending.push(async move {
                let msg = encode(&NewTask {
                    id: &id,
                    task: runway_core::celery::STEP_TASK,
                    kwargs: &kwargs,
                    origin: "gen0@runway-bench",
                    reply_to: "runway-bench",
                    priority: 5,
                });
                publisher.publish(&queue, &msg).await
            });
            waits.push(wait);
        }
        while let Some(r) = pending.next().await {
            r?;
        }
        Ok((waits, started.elapsed()))
    }

    /// The task no worker runs, published first so the queue and the
    /// publisher's channel exist before any clock starts.
    pub async fn warm_up(&self) -> Result<(), Error> {
        let warm = encode(&NewTask {
            id: &uuid4(),
            task: "runway-bench-warmup",
            kwargs: &PyVal::Dict(Vec::new()),
            origin: "gen0@runway-bench",
            reply_to: "runway-bench",
            priority: 5,
        });
        self.publisher.publish(&self.queue, &warm).await?;
        Ok(())
    }
}

/// Drives the publishes already made until `at`. A `FuturesUnordered` only
/// runs its futures while it is polled: waiting for the next slot without it
/// held every paced publish back until the window filled, so a "paced" phase
/// reached the worker as one burst.
async fn drive_until<F, E>(
    pending: &mut FuturesUnordered<F>,
    at: tokio::time::Instant,
) -> Result<(), Error>
where
    F: std::future::Future<Output = Result<(), E>>,
    Error: From<E>,
{
    let slot = tokio::time::sleep_until(at);
    tokio::pin!(slot);
    loop {
        tokio::select! {
            () = &mut slot => return Ok(()),
            Some(r) = pending.next(), if !pending.is_empty() => r?,
        }
    }
}

/// The state a stored meta holds (`STARTED` is stored when a step starts).
fn status(meta: &str) -> Option<String> {
    serde_json::from_str::<Value>(meta)
        .ok()
        .and_then(|v| v["status"].as_str().map(str::to_owned))
}

/// Celery's ready states: the task has its final result.
fn ready(meta: &Option<String>) -> bool {
    meta.as_deref()
        .and_then(status)
        .is_some_and(|s| matches!(s.as_str(), "SUCCESS" | "FAILURE" | "REVOKED"))
}

/// The final results of a phase: counts by state, and what the first few
/// failures said (a bench that fails steps says why).
#[derive(Debug, Default)]
pub(super) struct Collected {
    pub(super) states: HashMap<String, usize>,
    pub(super) failures: Vec<Value>,
}

/// Waits for every final result; counts them by state.
pub(super) async fn collect(waits: Vec<ResultWait>) -> Result<Collected, Error> {
    let mut out = Collected::default();
    for mut w in waits {
        let meta = tokio::time::timeout(Duration::from_secs(600), w.rx.wait_for(ready))
            .await
            .map_err(|_| Error::Setup("a step got no result within 600 s".into()))?
            .map_err(setup)?
            .clone()
            .unwrap_or_default();
        let state = status(&meta).unwrap_or_default();
        if state != "SUCCESS" && out.failures.len() < 3 {
            let result = serde_json::from_str::<Value>(&meta).map(|m| m["result"].clone());
            out.failures.push(result.unwrap_or(Value::String(meta)));
        }
        *out.states.entry(state).or_default() += 1;
    }
    Ok(out)
}

/// Wall time since `since`, in seconds.
pub(super) fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::time::Instant;

    /// Publishes that each take 5 ms (their confirm) and note when they ended.
    struct Publishes {
        start: Instant,
        ended: Arc<Mutex<Vec<Duration>>>,
    }

    impl Publishes {
        fn new() -> Publishes {
            Publishes {
                start: Instant::now(),
                ended: Arc::default(),
            }
        }

        fn one(&self, fail: bool) -> impl std::future::Future<Output = Result<(), Error>> {
            let (start, ended) = (self.start, self.ended.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ended.lock().unwrap().push(start.elapsed());
                if fail {
                    return Err(Error::Setup("the broker refused".into()));
                }
                Ok(())
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.start + Duration::from_millis(ms)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn publishes_run_while_the_next_slot_is_awaited() {
        let p = Publishes::new();
        let mut pending = FuturesUnordered::new();
        pending.push(p.one(false));
        drive_until(&mut pending, p.at(20)).await.unwrap();
        pending.push(p.one(false));
        drive_until(&mut pending, p.at(40)).await.unwrap();
        // Each publish ended 5 ms after it was made, not when a later slot
        // (or a full window) first polled it.
        assert_eq!(
            *p.ended.lock().unwrap(),
            [Duration::from_millis(5), Duration::from_millis(25)]
        );
        assert!(pending.is_empty());
        assert_eq!(p.start.elapsed(), Duration::from_millis(40));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_publish_ends_the_wait_with_its_error() {
        let p = Publishes::new();
        let mut pending = FuturesUnordered::new();
        pending.push(p.one(true));
        let err = drive_until(&mut pending, p.at(10_000)).await.unwrap_err();
        assert!(err.to_string().contains("the broker refused"), "{err}");
        assert_eq!(p.start.elapsed(), Duration::from_millis(5));
    }
}
