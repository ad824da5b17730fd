//! The worker pool: from an accepted task message to its stored result and
//! acknowledged deliveries. Broker-independent: deliveries arrive with an
//! [`Ack`], results go to a [`ResultStore`], steps run through a
//! [`StepRunner`], so the claim, dedupe and parking rules are tested
//! against in-memory fakes (`pool/tests.rs`).

mod capacity;
mod eta;
mod execute;
mod park;
mod settle;
mod turn;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::ack::Ack;
use super::events::Events;
use super::ledger::{Entry, Ledger};
use super::registry::Registry;
use super::revoke::Revocations;
use super::runner::StepRunner;
use crate::metrics::Metrics;
use crate::results::backend::ResultStore;
use runway_core::celery::control::shapes::{DeliveryInfo, TaskInfo};
use runway_core::dagster::step::StepTask;

pub use park::{Broker, Parked};
use turn::Turn;

/// The one task this worker runs.
pub use runway_core::celery::STEP_TASK as TASK;

/// How many step-end-to-result latencies are kept for `runway bench worker`.
pub const LATENCY_SAMPLES: usize = 1_000_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Unix seconds, as Celery's `time_start`.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// The pool's fixed settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The Celery node name; also the claim's owner.
    pub hostname: String,
    pub concurrency: usize,
    pub shutdown_grace: Duration,
    /// How long a delivery stays unacknowledged before it is parked (below
    /// RabbitMQ's consumer_timeout).
    pub ack_deadline: Duration,
    /// How long a task's claim outlives its worker (renewed at a third).
    pub claim_ttl: Duration,
}

/// A task message the consumer decoded.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub id: String,
    pub task: String,
    /// Shared with the task's entry in [`Registry`] (`inspect reserved`).
    pub kwargs: Arc<Map<String, Value>>,
    pub reply_to: Option<String>,
    pub retries: u64,
    /// The message headers (for the `task-received` event's fields).
    pub headers: Map<String, Value>,
    /// Where the message came from (for `inspect active`).
    pub delivery: DeliveryInfo,
}

impl Accepted {
    /// The task as `inspect reserved` shows it until its step starts.
    fn info(&self, hostname: &str) -> TaskInfo {
        TaskInfo {
            id: self.id.clone(),
            name: self.task.clone(),
            kwargsrepr: self
                .headers
                .get("kwargsrepr")
                .and_then(Value::as_str)
                // A map of JSON values always serializes; no copy of it is made.
                .map_or_else(
                    || serde_json::to_string(&*self.kwargs).unwrap_or_default(),
                    str::to_owned,
                ),
            // The Job name is the same in every release, and is read without
            // rendering the step (which the step's own start does).
            step_job: StepTask::job_name_of(&self.kwargs),
            kwargs: Arc::clone(&self.kwargs),
            hostname: hostname.to_owned(),
            time_start: None,
            acknowledged: false,
            delivery_info: self.delivery.clone(),
            worker_pid: None,
        }
    }
}

/// The worker pool.
#[derive(Debug)]
pub struct Pool<S, R, B: Broker> {
    pub runner: S,
    pub store: R,
    pub broker: B,
    pub revocations: Arc<Revocations>,
    pub metrics: Arc<Metrics>,
    /// Celery events (`--task-events`).
    pub events: Arc<Events>,
    pub config: PoolConfig,
    permits: Arc<Semaphore>,
    /// The concurrency limit now (`pool_grow`, `pool_shrink`, `autoscale`).
    concurrency: AtomicUsize,
    ledger: Mutex<Ledger<B::Ack>>,
    /// The tasks held, for `inspect active`, `reserved` and `query_task`.
    pub registry: Registry,
    /// When the pool started (`stats.uptime`).
    pub started: Instant,
    /// Tasks taken on (Celery's `processed` counts accepted tasks).
    pub processed: AtomicU64,
    /// Seconds from step Job end to stored result, the first
    /// [`LATENCY_SAMPLES`] of them (for `runway bench worker`).
    pub latencies: Mutex<Vec<f64>>,
}

impl<S: StepRunner, R: ResultStore, B: Broker> Pool<S, R, B> {
    pub fn new(
        runner: S,
        store: R,
        broker: B,
        events: Arc<Events>,
        metrics: Arc<Metrics>,
        config: PoolConfig,
    ) -> Arc<Self> {
        Arc::new(Pool {
            runner,
            store,
            broker,
            revocations: Arc::default(),
            metrics,
            events,
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            concurrency: AtomicUsize::new(config.concurrency.max(1)),
            config,
            ledger: Mutex::default(),
            registry: Registry::default(),
            started: Instant::now(),
            processed: AtomicU64::new(0),
            latencies: Mutex::default(),
        })
    }

    /// One decoded task delivery, to its acknowledgement. `copy` is what a
    /// parked copy of the message is published from.
    pub async fn accept(self: Arc<Self>, msg: Accepted, ack: B::Ack, copy: Option<Parked>) {
        if msg.task != TASK {
            self.refuse_unregistered(&msg, ack).await;
            return;
        }
        // A redelivery of a task running here joins it.
        if lock(&self.ledger).enter(&msg.id, ack) == Entry::Joined {
            self.metrics.tasks_deduplicated.inc();
            return;
        }
        self.registry.reserve(msg.info(&self.config.hostname));
        // Held deliveries go to a parked copy before RabbitMQ's consumer
        // timeout would close the channel under a long step.
        let _parker = copy
            .map(|c| park::AbortOnDrop(tokio::spawn(self.clone().park_loop(msg.id.clone(), c))));
        self.received_event(&msg);
        if lock(&self.ledger).is_done(&msg.id) {
            self.answered(&msg.id).await;
            return;
        }
        let arrival = eta::Arrival::now();
        if self.expired(&msg, &arrival) {
            self.expire(&msg).await;
            return;
        }
        self.until_eta(&msg, &arrival).await;
        if self.expired(&msg, &arrival) {
            self.expire(&msg).await;
            return;
        }
        match self.take_turn(&msg.id).await {
            Turn::Answered => self.answered(&msg.id).await,
            Turn::Run(permit, token) => self.run(msg, permit, token).await,
        }
    }

    fn received_event(&self, msg: &Accepted) {
        if !self.events.task_events() {
            return;
        }
        let h = |k: &str| msg.headers.get(k).cloned().unwrap_or(Value::Null);
        self.events.task(
            "task-received",
            vec![
                ("uuid", msg.id.clone().into()),
                ("name", msg.task.clone().into()),
                ("args", h("argsrepr")),
                ("kwargs", h("kwargsrepr")),
                ("root_id", h("root_id")),
                ("parent_id", h("parent_id")),
                ("retries", msg.retries.into()),
                ("eta", h("eta")),
                ("expires", h("expires")),
            ],
        );
    }

    /// Sends Celery's worker event of this type (online, heartbeat, offline).
    pub fn worker_event(&self, ty: &str) {
        let active = usize::try_from(self.metrics.tasks_in_flight.get()).unwrap_or(0);
        let processed = self.processed.load(Ordering::Relaxed);
        self.events.worker(ty, active, processed);
    }

    /// The grace period ran out: every held delivery goes back to the queue.
    pub async fn requeue_everything(&self) {
        let held = lock(&self.ledger).drain();
        for a in held {
            a.requeue().await;
        }
    }
}

#[cfg(test)]
mod tests;
