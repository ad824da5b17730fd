//! `runway worker`: the watches, the pool, the result backend, Celery
//! events and the operations port, and their two-phase shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{bind, kube_client, node_name, Error};
use crate::broker::connect::BrokerTls;
use crate::cluster::{KubeJobs, Tracker};
use crate::metrics::Metrics;
use crate::ops::{self, Probe};
use crate::results::backend;
use crate::worker::pg::Pg;
use crate::worker::settings::WorkerArgs;
use crate::worker::task::Ctx;
use crate::worker::{consume, wait, AmqpBroker, ConsumerConfig, Pool, PoolConfig};

/// The production pool: the task body on kube, the Redis or `rpc://`
/// backend, RabbitMQ.
pub type WorkerPool = Pool<Ctx<KubeJobs>, backend::Backend, AmqpBroker>;

/// A running `runway worker`.
#[derive(Debug)]
pub struct WorkerHandle {
    pub http_addr: std::net::SocketAddr,
    pub hostname: String,
    pub pool: Arc<WorkerPool>,
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<Metrics>,
    probe: Arc<Probe>,
    stop_pool: watch::Sender<bool>,
    stop_background: watch::Sender<bool>,
    pool_task: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

/// How long a task's claim outlives its worker (it is renewed at a third).
const CLAIM_TTL: Duration = Duration::from_secs(30);

/// Starts the worker pool; returns once the operations port listens (the
/// broker connection and the watches come up in the background).
pub async fn start_worker(args: &WorkerArgs) -> Result<WorkerHandle, Error> {
    args.validate().map_err(Error::Settings)?;
    let metrics = Arc::new(Metrics::new());
    let client = kube_client(&args.kube, &metrics).await?;
    let (stop_background, bg_rx) = watch::channel(false);
    let (stop_pool, pool_rx) = watch::channel(false);
    let tracker = Tracker::new(
        args.kube.namespaces.clone(),
        args.unschedulable_grace_secs,
        1 << 16,
        metrics.clone(),
    );
    let mut background = tracker.spawn(&client, bg_rx.clone());
    let kube = KubeJobs {
        client,
        timeout: Duration::from_secs(args.kube.kube_timeout_secs.max(1)),
    };
    let (publish_tx, publish_rx) = watch::channel(None);
    let tls = &args.store_tls;
    let backend = match backend::parse(&args.result_backend, tls.redis_ca_file.as_deref())
        .map_err(|e| Error::Settings(format!("--result-backend: {e}")))?
    {
        backend::BackendUrl::Redis(c) => backend::Backend::Redis(backend::RedisBackend::new(
            *c,
            Duration::from_secs(args.result_expires_secs),
        )),
        backend::BackendUrl::Rpc => backend::Backend::Rpc(publish_rx),
    };
    let postgres = match &args.postgres_url {
        Some(u) => Some(
            runway_core::dagster::instance::parse_url(u, "--postgres-url")
                .map_err(|e| Error::Settings(e.to_string()))?,
        ),
        None => None,
    };
    let hostname = args.hostname.clone().unwrap_or_else(node_name);
    let pg = Arc::new(Pg::new(args.postgres_ca_file.clone()));
    if let Some(t) = &postgres {
        pg.tls_for(t)
            .map_err(|e| Error::Settings(format!("--postgres-url: {e}")))?;
    }
    let mut stores = vec![(pg.reachable.subscribe(), "PostgreSQL unreachable")];
    if let backend::Backend::Redis(redis) = &backend {
        stores.push((redis.reachable.subscribe(), "Redis unreachable"));
    }
    let jobs = wait::Jobs::new(tracker.clone());
    let runs = wait::Runs::new(pg.clone(), Duration::from_secs(30));
    background.push(tokio::spawn(jobs.clone().run(bg_rx.clone())));
    background.push(tokio::spawn(runs.clone().run(bg_rx.clone())));
    let ctx = Ctx {
        kube,
        jobs,
        runs,
        pg,
        hostname: hostname.clone(),
        pod_name: std::env::var("HOSTNAME").ok(),
        postgres,
        env: Box::new(crate::env::ProcessEnv),
        dagster: args.dagster_version.clone(),
        event_write_patience: Duration::from_secs(args.event_write_patience_secs),
        cancel_grace: Duration::from_secs(args.cancel_grace_secs),
        targets: Default::default(),
        metrics: metrics.clone(),
    };
    // Worker events (heartbeats) always go out, as Celery's do; task
    // events from the start with --task-events, or once Flower enables them.
    let (events, task) = crate::worker::events::Events::start(
        &hostname,
        args.task_events,
        publish_tx.subscribe(),
        bg_rx.clone(),
    );
    background.push(task);
    let consumer = ConsumerConfig {
        broker_url: args.broker_url.clone(),
        broker_tls: BrokerTls::load(tls.broker_ca_file.as_deref())
            .map_err(|e| Error::Settings(format!("--broker-ca-file: {e}")))?,
        queues: args.queues.clone(),
        prefetch: args.prefetch(),
        max_message_bytes: args.max_message_bytes,
        result_backend: args.result_backend.clone(),
        result_expires_secs: args.result_expires_secs,
    };
    let broker = AmqpBroker::new(
        hostname.clone(),
        Duration::from_secs(args.ack_deadline_secs),
        consumer,
        publish_tx,
    );
    let pool = Pool::new(
        ctx,
        backend,
        broker,
        events,
        metrics.clone(),
        PoolConfig {
            hostname: hostname.clone(),
            concurrency: args.concurrency,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            ack_deadline: Duration::from_secs(args.ack_deadline_secs),
            claim_ttl: CLAIM_TTL,
        },
    );

    let (http_listener, http_addr) = bind(args.http_listen).await?;
    let probe = Arc::new(Probe {
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        draining: false.into(),
        conditions: [
            (pool.broker.connected.subscribe(), "broker not connected"),
            (tracker.reachable(), "Kubernetes API unreachable"),
        ]
        .into_iter()
        .chain(stores)
        .collect(),
    });
    background.push(tokio::spawn(ops::serve(
        http_listener,
        probe.clone(),
        bg_rx,
    )));
    let pool_task = tokio::spawn(consume::run(pool.clone(), pool_rx));
    tracing::info!(%http_addr, %hostname, queues = ?args.queues, "runway worker started");
    Ok(WorkerHandle {
        http_addr,
        hostname,
        pool,
        tracker,
        metrics,
        probe,
        stop_pool,
        stop_background,
        pool_task,
        background,
    })
}

impl WorkerHandle {
    /// Two phases: stop taking deliveries and let running steps finish
    /// (returning the rest to the queue after the grace); then stop the
    /// watches and the operations port.
    pub async fn shutdown(self) {
        tracing::info!("draining: no new deliveries, finishing running steps");
        self.probe.draining.store(true, Ordering::Relaxed);
        let _ = self.stop_pool.send(true);
        let _ = self.pool_task.await;
        let _ = self.stop_background.send(true);
        for t in self.background {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        tracing::info!("stopped");
    }

    /// Runs until SIGTERM, Ctrl-C or `celery control shutdown`, then shuts
    /// down in two phases.
    pub async fn run_until_signal(self) {
        let mut remote = self.pool.broker.shutdown.subscribe();
        tokio::select! {
            _ = crate::stop::signalled() => {}
            _ = crate::stop::stopped(&mut remote) => {}
        }
        self.shutdown().await;
    }
}
