//! The one place concrete types are wired together: kube's client behind
//! the gate, the tracker's watches, the launcher logic, tonic and the
//! operations port. Tests start the same thing in-process.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::cluster::{self, ClientSource, Gate, GateConfig, GateLayer, KubeJobs, Tracker};
use crate::metrics::Metrics;
use crate::proto;
use crate::serve::grpc::{Grpc, TokenCheck};
use crate::serve::http::{self as ops, Probe};
use crate::serve::settings::{HealthModeArg, ServeArgs};
use crate::serve::{Launch, Options};
use crate::stop::stopped;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Cluster(#[from] cluster::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("reading {what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Settings(String),
    #[error("gRPC server: {0}")]
    Server(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(String),
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::File {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// The StepExecutor service, with its publisher and result watcher when
/// the broker and backend are configured.
fn steps_service(
    args: &ServeArgs,
    stop_streams: watch::Receiver<bool>,
    stop_background: watch::Receiver<bool>,
    background: &mut Vec<JoinHandle<()>>,
) -> Result<crate::serve::steps::Steps, Error> {
    use crate::worker::{backend, publish, results};
    let publisher = args
        .broker_url
        .as_deref()
        .map(|u| Arc::new(publish::Publisher::new(u)));
    let results = match args.result_backend.as_deref() {
        None => None,
        Some(url) => match backend::parse(url)
            .map_err(|e| Error::Settings(format!("--result-backend: {e}")))?
        {
            backend::BackendUrl::Redis(c) => {
                let r = results::Results::new(c);
                background.push(tokio::spawn(r.clone().run(stop_background)));
                Some(r)
            }
            backend::BackendUrl::Rpc => {
                return Err(Error::Settings(
                    "--result-backend: WatchStep reads results from Redis; rpc:// results go \
                     only to the publishing process (give redis://host:port/db)"
                        .into(),
                ))
            }
        },
    };
    let host = node_name();
    let host = host.split_once('@').map_or(host.as_str(), |(_, h)| h);
    Ok(crate::serve::steps::Steps {
        publisher,
        results,
        origin: format!("gen{}@{host}", std::process::id()),
        reply_to: publish::uuid4(),
        stop: stop_streams,
    })
}

/// Listens on `addr` (port 0 picks one) and says which address it got.
async fn bind(addr: std::net::SocketAddr) -> Result<(TcpListener, std::net::SocketAddr), Error> {
    let err = |source| Error::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

/// A running `runway serve`.
#[derive(Debug)]
pub struct ServeHandle {
    pub grpc_addr: std::net::SocketAddr,
    pub http_addr: std::net::SocketAddr,
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<Metrics>,
    probe: Arc<Probe>,
    stop_accepting: watch::Sender<bool>,
    stop_watches: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    background: Vec<JoinHandle<()>>,
    grace: Duration,
}

fn validate(args: &ServeArgs) -> Result<(), Error> {
    args.kube.validate().map_err(Error::Settings)
}

/// kube's client behind Runway's gate (rate limit, retries, metrics).
pub async fn kube_client(
    kube: &crate::serve::settings::KubeArgs,
    metrics: &Arc<Metrics>,
) -> Result<kube::Client, Error> {
    let gate = Gate::new(
        GateConfig {
            qps: kube.kube_qps,
            burst: kube.kube_burst,
            max_queue: kube.kube_queue,
            max_in_flight: kube.kube_max_in_flight,
            max_attempts: kube.kube_attempts,
            backoff_base: Duration::from_millis(kube.kube_backoff_ms),
            backoff_max: Duration::from_millis(kube.kube_backoff_max_ms.max(kube.kube_backoff_ms)),
        },
        metrics.clone(),
    );
    cluster::client(
        &ClientSource {
            kubeconfig: kube.kubeconfig.clone(),
            context: kube.kube_context.clone(),
        },
        GateLayer { gate },
    )
    .await
    .map_err(Error::from)
}

/// Starts the service; returns once both ports listen (the watches sync in the background).
pub async fn start_serve(args: &ServeArgs) -> Result<ServeHandle, Error> {
    validate(args)?;
    let metrics = Arc::new(Metrics::new());
    let client = kube_client(&args.kube, &metrics).await?;
    let (stop_accepting, accept_rx) = watch::channel(false);
    let (stop_watches, watch_rx) = watch::channel(false);
    let tracker = Tracker::new(
        args.kube.namespaces.clone(),
        args.unschedulable_grace_secs,
        args.watch_buffer,
        metrics.clone(),
    );
    let mut background = tracker.spawn(&client, watch_rx.clone());
    let kube = KubeJobs {
        client,
        timeout: Duration::from_secs(args.kube.kube_timeout_secs.max(1)),
    };
    let launch = Arc::new(Launch::new(
        kube,
        tracker.clone(),
        metrics.clone(),
        Options {
            force_dagster_compat: args.health_mode == HealthModeArg::DagsterCompat,
            unschedulable_grace_secs: args.unschedulable_grace_secs,
            ..Options::default()
        },
    ));

    let token = match &args.token_file {
        Some(p) => {
            let raw = read("token file", p)?;
            let t = String::from_utf8_lossy(&raw).trim().to_owned();
            if t.is_empty() {
                return Err(Error::Settings(format!(
                    "--token-file {}: the file is empty",
                    p.display()
                )));
            }
            Some(Arc::<str>::from(t))
        }
        None => None,
    };

    let (grpc_listener, grpc_addr) = bind(args.listen).await?;
    let (http_listener, http_addr) = bind(args.http_listen).await?;

    let probe = Arc::new(Probe {
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        draining: false.into(),
        also: None,
    });
    background.push(tokio::spawn(ops::serve(
        http_listener,
        probe.clone(),
        watch_rx.clone(),
    )));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_not_serving::<proto::run_launcher_server::RunLauncherServer<Grpc<KubeJobs>>>()
        .await;
    {
        let tracker = tracker.clone();
        let reporter = health_reporter.clone();
        let mut accept_rx = accept_rx.clone();
        background.push(tokio::spawn(async move {
            let synced = tokio::select! {
                _ = stopped(&mut accept_rx) => false,
                synced = tracker.wait_synced(Duration::from_secs(86_400)) => synced,
            };
            if synced {
                reporter
                    .set_serving::<proto::run_launcher_server::RunLauncherServer<Grpc<KubeJobs>>>()
                    .await;
                stopped(&mut accept_rx).await;
            }
            reporter
                .set_not_serving::<proto::run_launcher_server::RunLauncherServer<Grpc<KubeJobs>>>()
                .await;
        }));
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Reflection(e.to_string()))?;

    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(crate::serve::grpc::KEEPALIVE))
        .tcp_nodelay(true);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
            read("TLS certificate", cert)?,
            read("TLS key", key)?,
        ));
        if let Some(ca) = &args.tls_client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read("client CA", ca)?));
        }
        builder = builder.tls_config(tls)?;
    }
    let service = tonic::service::interceptor::InterceptedService::new(
        proto::run_launcher_server::RunLauncherServer::new(Grpc::new(launch, accept_rx.clone()))
            .max_decoding_message_size(16 * 1024 * 1024),
        TokenCheck {
            token: token.clone(),
        },
    );
    let steps = steps_service(args, accept_rx.clone(), watch_rx.clone(), &mut background)?;
    let steps = tonic::service::interceptor::InterceptedService::new(
        proto::step_executor_server::StepExecutorServer::new(steps)
            .max_decoding_message_size(16 * 1024 * 1024),
        TokenCheck { token },
    );
    let router = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service)
        .add_service(steps);
    let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let mut accept_signal = accept_rx;
    let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        stopped(&mut accept_signal).await;
    }));
    tracing::info!(%grpc_addr, %http_addr, namespaces = ?args.kube.namespaces, "runway serve listening");
    Ok(ServeHandle {
        grpc_addr,
        http_addr,
        tracker,
        metrics,
        probe,
        stop_accepting,
        stop_watches,
        server,
        background,
        grace: Duration::from_secs(args.shutdown_grace_secs),
    })
}

impl ServeHandle {
    /// Two phases: stop accepting (not ready, health NOT_SERVING, streams
    /// ended) and let in-flight calls finish within the grace; then stop the
    /// watches.
    pub async fn shutdown(self) -> Result<(), Error> {
        tracing::info!("draining: no new calls, finishing in-flight ones");
        self.probe.draining.store(true, Ordering::Relaxed);
        let _ = self.stop_accepting.send(true);
        let mut server = self.server;
        let result = match tokio::time::timeout(self.grace, &mut server).await {
            Ok(Ok(r)) => r.map_err(Error::from),
            Ok(Err(join)) => Err(Error::Settings(format!("gRPC server task failed: {join}"))),
            Err(_) => {
                tracing::warn!(grace = ?self.grace, "in-flight calls did not finish within the grace; closing");
                server.abort();
                Ok(())
            }
        };
        let _ = self.stop_watches.send(true);
        for t in self.background {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        tracing::info!("stopped");
        result
    }

    /// Runs until SIGTERM or Ctrl-C, then shuts down.
    pub async fn run_until_signal(self) -> Result<(), Error> {
        wait_for_signal().await;
        self.shutdown().await
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

// === runway worker ===

/// A running `runway worker`.
#[derive(Debug)]
pub struct WorkerHandle {
    pub http_addr: std::net::SocketAddr,
    pub hostname: String,
    pub pool: Arc<crate::worker::Pool<KubeJobs>>,
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<Metrics>,
    probe: Arc<Probe>,
    stop_pool: watch::Sender<bool>,
    stop_background: watch::Sender<bool>,
    pool_task: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

/// `runway-<6 hex>@<host>`, in the shape of Celery's `-n dagster-<6 hex>@%h`.
fn node_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("runway-{:06x}@{host}", r & 0xff_ffff)
}

/// Starts the worker pool; returns once the operations port listens (the
/// broker connection and the watches come up in the background).
pub async fn start_worker(
    args: &crate::worker::settings::WorkerArgs,
) -> Result<WorkerHandle, Error> {
    use crate::worker::{backend, pg::Pg, task::Ctx, wait, Pool, PoolConfig};
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
    let backend = match backend::parse(&args.result_backend)
        .map_err(|e| Error::Settings(format!("--result-backend: {e}")))?
    {
        backend::BackendUrl::Redis(c) => backend::Backend::Redis(backend::RedisBackend::new(
            c,
            Duration::from_secs(args.result_expires_secs),
        )),
        backend::BackendUrl::Rpc => backend::Backend::Rpc(publish_rx),
    };
    let postgres = match &args.postgres_url {
        Some(u) => Some(
            crate::dagster::instance::parse_url(u, "--postgres-url")
                .map_err(|e| Error::Settings(e.to_string()))?,
        ),
        None => None,
    };
    let hostname = args.hostname.clone().unwrap_or_else(node_name);
    let pg = Arc::new(Pg::default());
    let jobs = wait::Jobs::new(tracker.clone());
    let runs = wait::Runs::new(pg.clone(), Duration::from_secs(30));
    background.push(tokio::spawn(jobs.clone().run(bg_rx.clone())));
    background.push(tokio::spawn(runs.clone().run(bg_rx.clone())));
    let ctx = Arc::new(Ctx {
        kube,
        jobs,
        runs,
        pg,
        hostname: hostname.clone(),
        pod_name: std::env::var("HOSTNAME").ok(),
        postgres,
        env: Box::new(crate::dagster::ProcessEnv),
    });
    let events = if args.task_events {
        let (events, task) =
            crate::worker::events::Events::start(&hostname, publish_tx.subscribe(), bg_rx.clone());
        background.push(task);
        events
    } else {
        crate::worker::events::Events::disabled(&hostname)
    };
    let pool = Pool::new(
        ctx,
        backend,
        publish_tx,
        events,
        metrics.clone(),
        PoolConfig {
            broker_url: args.broker_url.clone(),
            queues: args.queues.clone(),
            prefetch: args.prefetch(),
            concurrency: args.concurrency,
            max_message_bytes: args.max_message_bytes,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            ack_deadline: Duration::from_secs(args.ack_deadline_secs),
        },
    );

    let (http_listener, http_addr) = bind(args.http_listen).await?;
    let probe = Arc::new(Probe {
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        draining: false.into(),
        also: Some((pool.connected.subscribe(), "broker not connected")),
    });
    background.push(tokio::spawn(ops::serve(
        http_listener,
        probe.clone(),
        bg_rx,
    )));
    let pool_task = tokio::spawn(pool.clone().run(pool_rx));
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

    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        self.shutdown().await;
    }
}
