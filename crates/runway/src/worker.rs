//! `runway worker`: a Celery-protocol-v2 worker pool for
//! `execute_step_k8s_job`. Deliveries are acknowledged only once their
//! result is stored (acks late); a redelivered task that is running here, or
//! whose result already exists, is answered without running twice; step Jobs
//! are created under deterministic names, so a takeover reuses the Job.

pub mod events;
pub mod pg;
pub mod settings;
pub mod task;
pub mod wait;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt as _};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::Acker;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::{watch, Semaphore};

use crate::broker::amqp;
use crate::cluster::JobApi;
use crate::metrics::{Metrics, StatusLabel};
use crate::results::backend::{self, Backend};
use runway_core::celery::message::{claimed_id, decode, DecodeError, Properties};
use runway_core::celery::result::{date_done, result_meta, Outcome, ResultState, TaskError};
use runway_core::celery::topology::{queue_spec, revoked_ids};
use task::{Ctx, Finish};
use wait::Revocations;

/// The one task this worker runs.
pub use runway_core::celery::STEP_TASK as TASK;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pool's fixed settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub broker_url: String,
    pub queues: Vec<String>,
    pub prefetch: u16,
    pub concurrency: usize,
    pub max_message_bytes: usize,
    pub shutdown_grace: Duration,
    /// How long a delivery stays unacknowledged before it is parked (below
    /// RabbitMQ's consumer_timeout).
    pub ack_deadline: Duration,
}

/// The worker pool.
#[derive(Debug)]
pub struct Pool<K> {
    pub ctx: Arc<Ctx<K>>,
    pub backend: Backend,
    pub revocations: Arc<Revocations>,
    pub metrics: Arc<Metrics>,
    pub config: PoolConfig,
    /// Where `rpc://` replies go out (the current confirm-mode channel).
    pub publish_tx: watch::Sender<Option<lapin::Channel>>,
    permits: Arc<Semaphore>,
    /// Running task ids, with the deliveries to acknowledge when they end
    /// (more than one after a redelivery).
    inflight: Mutex<HashMap<String, Vec<Acker>>>,
    /// Recently finished task ids (redeliveries of them are acknowledged).
    done: Mutex<(HashSet<String>, VecDeque<String>)>,
    /// Broker connection up (for /ready).
    pub connected: watch::Sender<bool>,
    /// Celery events (`--task-events`).
    pub events: Arc<events::Events>,
    processed: std::sync::atomic::AtomicU64,
    /// Seconds from step Job end to stored result, the first
    /// [`LATENCY_SAMPLES`] of them (for `runway bench worker`).
    pub latencies: Mutex<Vec<f64>>,
}

pub const LATENCY_SAMPLES: usize = 1_000_000;

const DONE_MAX: usize = 100_000;
/// How long a task's claim outlives its worker (it is renewed at a third).
const CLAIM_TTL: Duration = Duration::from_secs(30);

impl<K: JobApi> Pool<K> {
    pub fn new(
        ctx: Arc<Ctx<K>>,
        backend: Backend,
        publish_tx: watch::Sender<Option<lapin::Channel>>,
        events: Arc<events::Events>,
        metrics: Arc<Metrics>,
        config: PoolConfig,
    ) -> Arc<Pool<K>> {
        Arc::new(Pool {
            ctx,
            backend,
            revocations: Arc::default(),
            metrics,
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
            publish_tx,
            inflight: Mutex::default(),
            done: Mutex::default(),
            connected: watch::Sender::new(false),
            latencies: Mutex::default(),
            events,
            processed: Default::default(),
        })
    }

    /// Consumes until `stop` turns true, reconnecting with backoff; then
    /// drains: no new deliveries, running steps get the grace period, and
    /// what is still running is returned to the queue.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(200);
        let mut tasks = tokio::task::JoinSet::new();
        'connect: loop {
            if *stop.borrow() {
                break;
            }
            let session = match self.connect().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, broker = %crate::telemetry::redact_url(&self.config.broker_url), "broker connection failed; retrying");
                    tokio::select! {
                        _ = crate::stop::stopped(&mut stop) => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            self.metrics.broker_connects.inc();
            self.connected.send_replace(true);
            tracing::info!(queues = ?self.config.queues, "consuming");
            let Session {
                conn,
                consume,
                consumers,
                pidbox,
            } = session;
            let tags: Vec<String> = consumers.iter().map(|c| c.tag().to_string()).collect();
            let mut deliveries = stream::select_all(consumers.into_iter().map(|c| {
                let q = c.queue().to_string();
                c.map(move |d| d.map(|d| (q.clone(), d)))
            }));
            let mut pidbox = pidbox;
            self.worker_event("worker-online");
            let mut heartbeat = tokio::time::interval(Duration::from_secs_f64(
                runway_core::celery::events::HEARTBEAT_SECS,
            ));
            heartbeat.tick().await;
            loop {
                tokio::select! {
                    _ = crate::stop::stopped(&mut stop) => {
                        for t in &tags {
                            let _ = consume.basic_cancel(t.as_str().into(), BasicCancelOptions::default()).await;
                        }
                        self.drain(&mut tasks).await;
                        self.worker_event("worker-offline");
                        if self.events.enabled() {
                            // Lets the event queue reach the broker before the connection goes.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        let _ = conn.close(200, "worker stopped".into()).await;
                        break 'connect;
                    }
                    _ = heartbeat.tick(), if self.events.enabled() => self.worker_event("worker-heartbeat"),
                    Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                        if let Err(e) = done {
                            tracing::error!(error = %e, "task panicked");
                        }
                    }
                    msg = pidbox.next() => match msg {
                        Some(Ok(d)) => {
                            if let Some(ids) = revoked_ids(&d.data) {
                                for id in ids {
                                    tracing::info!(task_id = %id, "revoked");
                                    self.revocations.revoke(&id);
                                }
                            }
                        }
                        _ => break,
                    },
                    d = deliveries.next() => match d {
                        Some(Ok((queue, d))) => {
                            let this = self.clone();
                            tasks.spawn(async move { this.handle(queue, d).await });
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "consumer failed; reconnecting");
                            break;
                        }
                        None => break,
                    },
                }
            }
            self.connected.send_replace(false);
            self.publish_tx.send_replace(None);
            let _ = conn.close(320, "reconnecting".into()).await;
        }
        self.connected.send_replace(false);
        // Whatever is still running after the grace period ends with the
        // process; its deliveries return to the queue with the connection.
        tasks.abort_all();
    }

    fn worker_event(&self, ty: &str) {
        let active = usize::try_from(self.metrics.tasks_in_flight.get()).unwrap_or(0);
        let processed = self.processed.load(std::sync::atomic::Ordering::Relaxed);
        self.events.worker(ty, active, processed);
    }

    async fn drain(&self, tasks: &mut tokio::task::JoinSet<()>) {
        let deadline = tokio::time::sleep(self.config.shutdown_grace);
        tokio::pin!(deadline);
        while !tasks.is_empty() {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::warn!(running = tasks.len(), "grace period over; returning running tasks to the queue");
                    let ackers: Vec<Acker> = lock(&self.inflight).drain().flat_map(|(_, a)| a).collect();
                    for a in ackers {
                        let _ = a.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
                    }
                    tasks.abort_all();
                    return;
                }
                _ = tasks.join_next() => {}
            }
        }
    }

    async fn connect(&self) -> Result<Session, lapin::Error> {
        let conn = Connection::connect(
            &self.config.broker_url,
            ConnectionProperties::default().with_connection_name("runway-worker".into()),
        )
        .await?;
        let consume = conn.create_channel().await?;
        consume
            .basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await?;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut consumers = Vec::new();
        for q in &self.config.queues {
            amqp::declare(&consume, &queue_spec(q)).await?;
            consumers.push(
                consume
                    .basic_consume(
                        q.as_str().into(),
                        format!("{}-{q}", self.ctx.hostname).into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?,
            );
        }
        // Broadcast control messages (revoke) reach every worker through
        // its own exclusive queue on `celery.pidbox`.
        let control = conn.create_channel().await?;
        amqp::declare_pidbox(&control).await?;
        let q = control
            .queue_declare(
                format!("{}.runway.pidbox", self.ctx.hostname).into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        control
            .queue_bind(
                q.name().clone(),
                amqp::PIDBOX.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let pidbox = control
            .basic_consume(
                q.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        if self.events.enabled() {
            amqp::declare_celeryev(&publish).await?;
        }
        self.publish_tx.send_replace(Some(publish));
        Ok(Session {
            conn,
            consume,
            consumers,
            pidbox,
        })
    }

    /// One delivery, from decode to acknowledgement.
    async fn handle(self: Arc<Self>, queue: String, d: Delivery) {
        let copy = Parked {
            queue,
            properties: d.properties.clone(),
            body: d.data.clone(),
        };
        let headers = d
            .properties
            .headers()
            .as_ref()
            .map(amqp::headers_to_json)
            .unwrap_or_default();
        let props = Properties {
            content_type: d.properties.content_type().as_ref().map(|s| s.as_str()),
            content_encoding: d.properties.content_encoding().as_ref().map(|s| s.as_str()),
            correlation_id: d.properties.correlation_id().as_ref().map(|s| s.as_str()),
            reply_to: d.properties.reply_to().as_ref().map(|s| s.as_str()),
            priority: *d.properties.priority(),
        };
        let msg = match decode(&props, &headers, &d.data, self.config.max_message_bytes) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.tasks_rejected.inc();
                let id = claimed_id(&headers, props.correlation_id);
                tracing::warn!(task_id = ?id, error = %e, "refused a delivery");
                match id {
                    Some(id) => {
                        let err = refusal(&e);
                        self.finish(
                            &id,
                            props.reply_to,
                            vec![d.acker],
                            &Finish::Error {
                                exc_type: err.exc_type,
                                exc_module: err.exc_module,
                                message: err.exc_message.join(" "),
                            },
                            None,
                        )
                        .await;
                    }
                    // Nothing to answer: dropped, never requeued into a crash loop.
                    None => {
                        let _ = d.acker.reject(BasicRejectOptions { requeue: false }).await;
                    }
                }
                return;
            }
        };
        if msg.task != TASK {
            self.metrics.tasks_rejected.inc();
            tracing::warn!(task = %msg.task, task_id = %msg.id, "unregistered task");
            let f = Finish::Error {
                exc_type: "NotRegistered".into(),
                exc_module: "celery.exceptions".into(),
                message: format!("'{}'", msg.task),
            };
            self.finish(&msg.id, msg.reply_to.as_deref(), vec![d.acker], &f, None)
                .await;
            return;
        }
        // A redelivery of a task running here joins it.
        {
            let mut inflight = lock(&self.inflight);
            match inflight.get_mut(&msg.id) {
                Some(ackers) => {
                    self.metrics.tasks_deduplicated.inc();
                    ackers.push(d.acker);
                    return;
                }
                None => {
                    inflight.insert(msg.id.clone(), vec![d.acker]);
                }
            }
        }
        // Held deliveries are handed to a parked copy before RabbitMQ's
        // consumer timeout would close the channel under a long step.
        let parker = tokio::spawn(self.clone().park_loop(msg.id.clone(), copy));
        let _parker = AbortOnDrop(parker);
        if self.events.enabled() {
            let h = |k: &str| headers.get(k).cloned().unwrap_or(serde_json::Value::Null);
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
        if lock(&self.done).0.contains(&msg.id) {
            self.answered(&msg.id).await;
            return;
        }
        // One worker runs a task; another holding a delivery of it (after a
        // broker restart) waits for that run's result instead.
        let mut delay = Duration::from_millis(200);
        loop {
            match self
                .backend
                .claim(&msg.id, &self.ctx.hostname, CLAIM_TTL)
                .await
            {
                Ok(backend::Claim::Mine) => break,
                Ok(backend::Claim::Other(owner)) => {
                    tracing::info!(task_id = %msg.id, %owner, "another worker runs this task; waiting for its result");
                    if self.follow(&msg.id).await {
                        self.answered(&msg.id).await;
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(task_id = %msg.id, error = %e, "cannot claim the task yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        // The claim is ours, and the store is reachable: a stored result means done.
        if self.stored(&msg.id).await {
            let _ = self.backend.release(&msg.id).await;
            self.answered(&msg.id).await;
            return;
        }
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        self.metrics.tasks_in_flight.inc();
        let revoke = self.revocations.running(&msg.id);
        let span = tracing::info_span!("task", task_id = %msg.id);
        span.in_scope(|| tracing::info!("received"));
        self.events
            .task("task-started", vec![("uuid", msg.id.clone().into())]);
        let started = Instant::now();
        let job_done = std::sync::OnceLock::new();
        let exec = task::execute(&self.ctx, &msg.kwargs, revoke, &job_done);
        tokio::pin!(exec);
        let mut renew = tokio::time::interval(CLAIM_TTL / 3);
        renew.tick().await;
        let finish = loop {
            tokio::select! {
                f = &mut exec => break f,
                _ = renew.tick() => {
                    if let Err(e) = self.backend.renew(&msg.id, CLAIM_TTL).await {
                        tracing::warn!(task_id = %msg.id, error = %e, "renewing the claim failed");
                    }
                }
            }
        };
        self.metrics.tasks_in_flight.dec();
        self.task_event(&msg.id, &finish, started.elapsed().as_secs_f64());
        // The result's latency counts from the step Job's end as the watch saw it.
        let ended = job_done.get().copied().unwrap_or_else(Instant::now);
        self.finish(
            &msg.id,
            msg.reply_to.as_deref(),
            Vec::new(),
            &finish,
            Some(ended),
        )
        .await;
    }

    /// Every `ack_deadline`, the task's held deliveries are acknowledged once
    /// a copy of the message is safely in `runway.parked.<queue>`, whence it
    /// dead-letters back to the queue after the deadline. Whoever receives it
    /// then joins the running copy (same worker), waits on the claim
    /// (another worker), or takes the task over (its worker died): the Job
    /// is reused by name and the result stored once.
    async fn park_loop(self: Arc<Self>, id: String, copy: Parked) {
        let mut every = tokio::time::interval(self.config.ack_deadline);
        every.tick().await;
        loop {
            every.tick().await;
            let held = match lock(&self.inflight).get_mut(&id) {
                Some(a) if !a.is_empty() => std::mem::take(a),
                _ => continue,
            };
            match self.park(&copy).await {
                Ok(()) => {
                    self.metrics.tasks_parked.inc();
                    tracing::info!(task_id = %id, queue = %copy.queue, "parked a copy; acknowledging the held deliveries");
                    for a in held {
                        let _ = a.ack(BasicAckOptions::default()).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(task_id = %id, error = %e, "parking failed; keeping the deliveries");
                    if let Some(a) = lock(&self.inflight).get_mut(&id) {
                        a.extend(held);
                    }
                }
            }
        }
    }

    async fn park(&self, copy: &Parked) -> Result<(), amqp::PublishError> {
        let ch = self
            .publish_tx
            .borrow()
            .clone()
            .ok_or(amqp::PublishError::Nacked)?;
        let name = amqp::declare_parking(&ch, &copy.queue)
            .await
            .map_err(amqp::PublishError::Amqp)?;
        let mut headers = copy.properties.headers().clone().unwrap_or_default();
        headers.insert(
            "runway-parked-by".into(),
            lapin::types::AMQPValue::LongString(self.ctx.hostname.as_bytes().to_vec().into()),
        );
        let props = copy
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2)
            .with_expiration(self.config.ack_deadline.as_millis().to_string().into());
        amqp::publish_confirmed(&ch, "", &name, &copy.body, props).await
    }

    /// `task-succeeded`, `task-failed` or `task-revoked`.
    fn task_event(&self, id: &str, finish: &Finish, runtime: f64) {
        self.processed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let uuid = ("uuid", serde_json::Value::from(id));
        match finish {
            Finish::Events(events) => self.events.task(
                "task-succeeded",
                vec![
                    uuid,
                    (
                        "result",
                        format!("[{} serialized DagsterEvents]", events.len()).into(),
                    ),
                    ("runtime", runtime.into()),
                ],
            ),
            Finish::Error {
                exc_type, message, ..
            } => self.events.task(
                "task-failed",
                vec![
                    uuid,
                    ("exception", format!("{exc_type}({message:?})").into()),
                    ("traceback", serde_json::Value::Null),
                ],
            ),
            Finish::Revoked => self.events.task(
                "task-revoked",
                vec![
                    uuid,
                    ("terminated", false.into()),
                    ("signum", serde_json::Value::Null),
                    ("expired", false.into()),
                ],
            ),
        }
    }

    /// Acknowledges every delivery of a task whose result is stored.
    async fn answered(&self, id: &str) {
        self.metrics.tasks_deduplicated.inc();
        let ackers = lock(&self.inflight).remove(id).unwrap_or_default();
        for a in ackers {
            let _ = a.ack(BasicAckOptions::default()).await;
        }
    }

    /// Waits while another worker holds the claim: `true` once the result
    /// is stored, `false` when the claim lapsed without one (its worker died).
    async fn follow(&self, id: &str) -> bool {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.stored(id).await {
                return true;
            }
            if let Ok(None) = self.backend.holder(id).await {
                return self.stored(id).await;
            }
        }
    }

    /// Whether a result is stored, asked until the backend answers (an
    /// unreachable backend is not "no result": that would run a task twice).
    async fn stored(&self, id: &str) -> bool {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.backend.exists(id).await {
                Ok(b) => return b,
                Err(e) => {
                    tracing::warn!(task_id = %id, error = %e, "cannot read the result backend; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Stores the result (retrying until it is stored), then acknowledges
    /// `ackers` and every delivery of the task that joined it meanwhile
    /// (its entry stays in `inflight` until the result is stored, so a
    /// redelivery arriving during the write joins instead of running again).
    /// A result that cannot be stored sends the delivery back to the queue.
    async fn finish(
        &self,
        id: &str,
        reply_to: Option<&str>,
        ackers: Vec<Acker>,
        finish: &Finish,
        ended: Option<Instant>,
    ) {
        // Only a task that ran has an `inflight` entry of its own; a refused
        // delivery claiming a running task's id must not take its deliveries.
        let from_inflight = ended.is_some();
        let (state, meta) = meta(id, finish);
        let mut delay = Duration::from_millis(100);
        let mut stored = false;
        for attempt in 0..12 {
            match self.backend.store(id, &meta, reply_to).await {
                Ok(()) => {
                    stored = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(task_id = %id, attempt, error = %e, "storing the result failed; retrying");
                    self.metrics.result_store_retries.inc();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let Some(t) = ended {
            let secs = t.elapsed().as_secs_f64();
            self.metrics.result_latency.observe(secs);
            let mut samples = lock(&self.latencies);
            if samples.len() < LATENCY_SAMPLES {
                samples.push(secs);
            }
        }
        let mut ackers = ackers;
        if !stored {
            tracing::error!(task_id = %id, "the result could not be stored; returning the task to the queue");
            if from_inflight {
                ackers.extend(lock(&self.inflight).remove(id).unwrap_or_default());
            }
            for a in ackers {
                let _ = a
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
            }
            return;
        }
        if let Err(e) = self.backend.release(id).await {
            tracing::debug!(task_id = %id, error = %e, "releasing the claim failed; it expires");
        }
        {
            let mut done = lock(&self.done);
            if done.0.insert(id.to_owned()) {
                done.1.push_back(id.to_owned());
                if done.1.len() > DONE_MAX {
                    if let Some(old) = done.1.pop_front() {
                        done.0.remove(&old);
                    }
                }
            }
        }
        // After `done` holds the id: a delivery that finds no entry here finds it there.
        if from_inflight {
            ackers.extend(lock(&self.inflight).remove(id).unwrap_or_default());
        }
        self.metrics
            .tasks
            .get_or_create(&StatusLabel {
                status: state.as_str(),
            })
            .inc();
        tracing::info!(task_id = %id, state = state.as_str(), "task finished");
        for a in ackers {
            // A delivery of a dead channel is redelivered; the stored result answers it.
            if let Err(e) = a.ack(BasicAckOptions::default()).await {
                tracing::warn!(task_id = %id, error = %e, "ack failed; the redelivery will find the result");
            }
        }
    }
}

/// What it takes to publish a delivery again.
struct Parked {
    queue: String,
    properties: lapin::BasicProperties,
    body: Vec<u8>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Session {
    conn: Connection,
    consume: lapin::Channel,
    consumers: Vec<lapin::Consumer>,
    pidbox: lapin::Consumer,
}

/// The meta JSON of a finished task.
pub fn meta(id: &str, finish: &Finish) -> (ResultState, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    let date = date_done(now);
    match finish {
        Finish::Events(events) => {
            let v = serde_json::Value::Array(
                events
                    .iter()
                    .cloned()
                    .map(serde_json::Value::String)
                    .collect(),
            );
            (
                ResultState::Success,
                result_meta(id, ResultState::Success, &Outcome::Value(&v), None, &date),
            )
        }
        Finish::Error {
            exc_type,
            exc_module,
            message,
        } => {
            let err = TaskError {
                exc_type: exc_type.clone(),
                exc_message: vec![message.clone()],
                exc_module: exc_module.clone(),
            };
            let tb = format!("Traceback (most recent call last):\n  runway worker\n{exc_module}.{exc_type}: {message}\n");
            (
                ResultState::Failure,
                result_meta(
                    id,
                    ResultState::Failure,
                    &Outcome::Error(&err),
                    Some(&tb),
                    &date,
                ),
            )
        }
        Finish::Revoked => (
            ResultState::Revoked,
            result_meta(
                id,
                ResultState::Revoked,
                &Outcome::Error(&TaskError::revoked()),
                None,
                &date,
            ),
        ),
    }
}

/// The exception a refused delivery's FAILURE carries: kombu's own for a
/// refused content type, ValueError for the rest.
fn refusal(e: &DecodeError) -> TaskError {
    let (exc_type, exc_module) = match e {
        DecodeError::ContentType { .. } => ("ContentDisallowed", "kombu.exceptions"),
        _ => ("ValueError", "builtins"),
    };
    TaskError {
        exc_type: exc_type.into(),
        exc_message: vec![e.to_string()],
        exc_module: exc_module.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_content_types_raise_kombus_error() {
        let e = refusal(&DecodeError::ContentType {
            content_type: "application/x-python-serialize".into(),
        });
        assert_eq!(
            (e.exc_type.as_str(), e.exc_module.as_str()),
            ("ContentDisallowed", "kombu.exceptions")
        );
        let (state, m) = meta("t1", &Finish::Revoked);
        assert_eq!(state, ResultState::Revoked);
        assert!(m.starts_with(r#"{"status": "REVOKED", "result": {"exc_type": "TaskRevokedError""#));
    }
}
