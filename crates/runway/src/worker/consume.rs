//! The AMQP side of the worker: the session (consumers on the task queues
//! and on the worker's mailbox, a confirm-mode publishing channel), the
//! consume loop that hands decoded deliveries to the [`Pool`] and control
//! requests to [`control`](super::control), reconnection, and the two-phase
//! drain.

mod session;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder as _;
use lapin::message::Delivery;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::ack::Ack;
use super::outcome::refusal;
use super::pool::{Accepted, Broker, Parked, Pool};
use super::runner::StepRunner;
use crate::broker::amqp::{self, PublishError};
use crate::results::backend::ResultStore;
use crate::retry::Backoff;
use crate::telemetry::redact_url;
use runway_core::celery::control::shapes::DeliveryInfo;
use runway_core::celery::message::{claimed_id, decode, Properties};

pub use session::{Incoming, Session};

/// The consumer's settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub broker_url: String,
    /// `--broker-ca-file`, for `amqps://`.
    pub broker_tls: crate::broker::connect::BrokerTls,
    /// The queues consumed at start (`-Q`).
    pub queues: Vec<String>,
    pub prefetch: u16,
    pub max_message_bytes: usize,
    /// For `inspect conf` and `report`.
    pub result_backend: String,
    pub result_expires_secs: u64,
}

/// The broker of a running worker: its settings, the queues it consumes
/// now, its current publishing channel (for parked copies, `rpc://` results,
/// control replies and events), whether it is connected, and a remote
/// `shutdown` request.
#[derive(Debug)]
pub struct AmqpBroker {
    pub hostname: String,
    pub ack_deadline: Duration,
    pub config: ConsumerConfig,
    queues: Mutex<Vec<String>>,
    pub publish_tx: watch::Sender<Option<lapin::Channel>>,
    /// Broker connection up (for /ready).
    pub connected: watch::Sender<bool>,
    /// Turns true when `celery control shutdown` asks the worker to stop.
    pub shutdown: watch::Sender<bool>,
    /// Deliveries held until their ETA: each widens the prefetch window by
    /// one, as Celery's `qos.increment_eventually` does, so waiting tasks
    /// never starve the consumer.
    scheduled: watch::Sender<u16>,
}

impl AmqpBroker {
    pub fn new(
        hostname: String,
        ack_deadline: Duration,
        config: ConsumerConfig,
        publish_tx: watch::Sender<Option<lapin::Channel>>,
    ) -> AmqpBroker {
        AmqpBroker {
            hostname,
            ack_deadline,
            queues: Mutex::new(config.queues.clone()),
            config,
            publish_tx,
            connected: watch::Sender::new(false),
            shutdown: watch::Sender::new(false),
            scheduled: watch::Sender::new(0),
        }
    }

    /// The prefetch count now: the configured one plus the held ETA tasks.
    fn prefetch_now(&self) -> u16 {
        self.config
            .prefetch
            .saturating_add(*self.scheduled.borrow())
    }

    /// The queues consumed now, kept across reconnections.
    pub fn queues(&self) -> Vec<String> {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_queues(&self, queues: Vec<String>) {
        *self.queues.lock().unwrap_or_else(|e| e.into_inner()) = queues;
    }
}

impl Broker for AmqpBroker {
    type Ack = lapin::Acker;

    fn scheduled(&self, held: bool) {
        self.scheduled.send_modify(|n| {
            *n = if held {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            }
        });
    }

    async fn park(&self, copy: &Parked) -> Result<(), PublishError> {
        let ch = self
            .publish_tx
            .borrow()
            .clone()
            .ok_or(PublishError::Nacked)?;
        let name = amqp::declare_parking(&ch, &copy.queue)
            .await
            .map_err(PublishError::Amqp)?;
        let mut headers = copy.properties.headers().clone().unwrap_or_default();
        headers.insert(
            "runway-parked-by".into(),
            lapin::types::AMQPValue::LongString(self.hostname.as_bytes().to_vec().into()),
        );
        let props = copy
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2)
            .with_expiration(self.ack_deadline.as_millis().to_string().into());
        amqp::publish_confirmed(&ch, "", &name, &copy.body, props).await
    }
}

/// Consumes until `stop` turns true, reconnecting with backoff; then
/// drains: no new deliveries, running steps get the grace period, and what
/// is still running is returned to the queue.
pub async fn run<S: StepRunner, R: ResultStore>(
    pool: Arc<Pool<S, R, AmqpBroker>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut delays = Backoff::reconnect().build();
    let mut tasks = JoinSet::new();
    while !*stop.borrow() {
        let session = match Session::open(&pool).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, broker = %redact_url(&pool.broker.config.broker_url), "broker connection failed; retrying");
                tokio::select! {
                    _ = crate::stop::stopped(&mut stop) => break,
                    _ = tokio::time::sleep(delays.delay()) => {}
                }
                continue;
            }
        };
        delays = Backoff::reconnect().build();
        if consume(&pool, session, &mut tasks, &mut stop).await == Ended::Stopped {
            break;
        }
    }
    pool.broker.connected.send_replace(false);
    // Whatever is still running after the grace period ends with the
    // process; its deliveries return to the queue with the connection.
    tasks.abort_all();
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Stopped,
    Reconnect,
}

/// One connected session, until it breaks or the worker stops.
async fn consume<S: StepRunner, R: ResultStore>(
    pool: &Arc<Pool<S, R, AmqpBroker>>,
    mut session: Session,
    tasks: &mut JoinSet<()>,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    pool.metrics.broker_connects.inc();
    pool.broker.connected.send_replace(true);
    tracing::info!(queues = ?pool.broker.queues(), "consuming");
    pool.worker_event("worker-online");
    let mut heartbeat = tokio::time::interval(Duration::from_secs_f64(
        runway_core::celery::events::HEARTBEAT_SECS,
    ));
    heartbeat.tick().await;
    let mut pidbox = session.pidbox.take();
    let mut scheduled = pool.broker.scheduled.subscribe();
    scheduled.mark_changed();
    let ended = loop {
        tokio::select! {
            Ok(()) = scheduled.changed() => {
                let prefetch = pool.broker.prefetch_now();
                if let Err(e) = session.consume.basic_qos(prefetch, lapin::options::BasicQosOptions::default()).await {
                    tracing::warn!(error = %e, "widening the prefetch window failed; reconnecting");
                    break Ended::Reconnect;
                }
            }
            _ = crate::stop::stopped(stop) => {
                session.cancel_all().await;
                drain(pool, tasks).await;
                pool.worker_event("worker-offline");
                if pool.events.publishing() {
                    // Lets the event queue reach the broker before the connection goes.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                session.close(200, "worker stopped").await;
                return Ended::Stopped;
            }
            _ = heartbeat.tick(), if pool.events.publishing() => pool.worker_event("worker-heartbeat"),
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "task panicked");
                }
            }
            msg = next_control(&mut pidbox) => match msg {
                Some(Ok(d)) => super::control::handle(pool, &mut session, &d).await,
                _ => break Ended::Reconnect,
            },
            incoming = session.incoming.recv() => match incoming {
                Some(Incoming::Delivery(queue, d)) => {
                    let pool = pool.clone();
                    tasks.spawn(async move { handle(pool, queue, *d).await });
                }
                Some(Incoming::Failed(e)) => {
                    tracing::warn!(error = %e, "consumer failed; reconnecting");
                    break Ended::Reconnect;
                }
                None => break Ended::Reconnect,
            },
        }
    };
    pool.broker.connected.send_replace(false);
    pool.broker.publish_tx.send_replace(None);
    session.close(320, "reconnecting").await;
    ended
}

/// The next mailbox message; never, without a mailbox.
async fn next_control(
    pidbox: &mut Option<lapin::Consumer>,
) -> Option<Result<Delivery, lapin::Error>> {
    use futures::StreamExt as _;
    match pidbox {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

/// Lets running steps finish within the grace period; then returns what is
/// still held to the queue.
async fn drain<S: StepRunner, R: ResultStore>(
    pool: &Pool<S, R, AmqpBroker>,
    tasks: &mut JoinSet<()>,
) {
    let deadline = tokio::time::sleep(pool.config.shutdown_grace);
    tokio::pin!(deadline);
    while !tasks.is_empty() {
        tokio::select! {
            _ = &mut deadline => {
                tracing::warn!(running = tasks.len(), "grace period over; returning running tasks to the queue");
                pool.requeue_everything().await;
                tasks.abort_all();
                return;
            }
            _ = tasks.join_next() => {}
        }
    }
}

/// One delivery: decoded and handed to the pool, or refused.
async fn handle<S: StepRunner, R: ResultStore>(
    pool: Arc<Pool<S, R, AmqpBroker>>,
    queue: String,
    d: Delivery,
) {
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
    let msg = match decode(
        &props,
        &headers,
        &d.data,
        pool.broker.config.max_message_bytes,
    ) {
        Ok(m) => m,
        Err(e) => {
            let id = claimed_id(&headers, props.correlation_id);
            tracing::warn!(task_id = ?id, error = %e, "refused a delivery");
            match id {
                Some(id) => {
                    pool.refuse(&id, props.reply_to, d.acker, &refusal(&e))
                        .await
                }
                // Nothing to answer: dropped, never requeued into a crash loop.
                None => {
                    pool.metrics.tasks_rejected.inc();
                    d.acker.discard().await;
                }
            }
            return;
        }
    };
    let delivery = DeliveryInfo {
        exchange: d.exchange.to_string(),
        routing_key: d.routing_key.to_string(),
        priority: props.priority,
        redelivered: d.redelivered,
    };
    let copy = Parked {
        queue,
        properties: d.properties.clone(),
        body: d.data,
    };
    let accepted = Accepted {
        id: msg.id,
        task: msg.task,
        kwargs: Arc::new(msg.kwargs),
        reply_to: msg.reply_to,
        retries: msg.retries,
        headers,
        delivery,
    };
    pool.accept(accepted, d.acker, Some(copy)).await;
}
