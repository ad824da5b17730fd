//! `runway serve`: the watches, the launcher, the gRPC services and the
//! operations port, and their two-phase shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use runway_proto as proto;

use super::{bind, kube_client, node_name, read, Error};
use crate::broker::connect::BrokerTls;
use crate::broker::publish;
use crate::cluster::{KubeJobs, Tracker};
use crate::metrics::Metrics;
use crate::ops::{self, Probe};
use crate::results::{backend, watch as results};
use crate::serve::grpc::{Grpc, TokenCheck};
use crate::serve::settings::{HealthModeArg, ServeArgs};
use crate::serve::{CacheLimits, Launch, Options};
use crate::stop::stopped;

/// The StepExecutor service, with its publisher and result watcher when
/// the broker and backend are configured.
fn steps_service(
    args: &ServeArgs,
    stop_streams: watch::Receiver<bool>,
    stop_background: watch::Receiver<bool>,
    background: &mut Vec<JoinHandle<()>>,
) -> Result<crate::serve::steps::Steps, Error> {
    let tls = &args.store_tls;
    let publisher = match args.broker_url.as_deref() {
        None => None,
        Some(u) => {
            let ca = BrokerTls::load(tls.broker_ca_file.as_deref())
                .map_err(|e| Error::Settings(format!("--broker-ca-file: {e}")))?;
            Some(Arc::new(publish::Publisher::new(u, ca)))
        }
    };
    let results = match args.result_backend.as_deref() {
        None => None,
        Some(url) => match backend::parse(url, tls.redis_ca_file.as_deref())
            .map_err(|e| Error::Settings(format!("--result-backend: {e}")))?
        {
            backend::BackendUrl::Redis(c) => {
                let r = results::Results::new(*c);
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
            cache: CacheLimits {
                entries: 64,
                bytes: args.config_cache_bytes,
                max_config_bytes: args.max_config_bytes,
            },
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
        conditions: vec![(tracker.reachable(), "Kubernetes API unreachable")],
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
        proto::run_launcher_server::RunLauncherServer::new(Grpc::new(
            launch,
            accept_rx.clone(),
            args.max_watch_streams.max(1),
        ))
        .max_decoding_message_size(args.max_request_bytes),
        TokenCheck {
            token: token.clone(),
        },
    );
    let steps = steps_service(args, accept_rx.clone(), watch_rx.clone(), &mut background)?;
    let steps = tonic::service::interceptor::InterceptedService::new(
        proto::step_executor_server::StepExecutorServer::new(steps)
            .max_decoding_message_size(args.max_request_bytes),
        TokenCheck {
            token: token.clone(),
        },
    );
    let router = builder
        .add_service(health_service)
        // Only health is open; reflection, like the services, needs the token.
        .add_service(tonic::service::interceptor::InterceptedService::new(
            reflection,
            TokenCheck {
                token: token.clone(),
            },
        ))
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
        crate::stop::signalled().await;
        self.shutdown().await
    }
}
