//! Starting and stopping a whole dev cluster: API server, Job controller and
//! kubelet, in-process on `127.0.0.1:0` for tests or in the foreground for
//! `runway dev-cluster`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::api::Cluster;
use super::clock::Clock;
use super::controller::{run_job_controller, ControllerConfig};
use super::faults::Faults;
use super::kubelet::{run_kubelet, KubeletConfig};
use super::logs::LogStore;
use super::server::{base_url, serve, ServerConfig, Shared};
use super::store::StoreConfig;

/// Everything a dev cluster can be started with.
#[derive(Debug, Clone, Default)]
pub struct DevClusterConfig {
    pub store: StoreConfig,
    pub server: ServerConfig,
    pub controller: ControllerConfig,
    pub kubelet: KubeletConfig,
    pub clock: Clock,
    /// Seed for generated names and uids (0: from the time).
    pub seed: u64,
    /// Serve HTTPS with a self-signed certificate for 127.0.0.1 and
    /// localhost, made at start; the kubeconfig carries it as the CA.
    pub tls: bool,
}

/// A running dev cluster. Dropping it does not stop it: call [`DevCluster::shutdown`].
#[derive(Debug)]
pub struct DevCluster {
    addr: SocketAddr,
    /// PEM of the serving certificate, with `tls`.
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl DevCluster {
    /// Binds `addr` (use `127.0.0.1:0` for a free port) and starts everything.
    pub async fn start(addr: SocketAddr, config: DevClusterConfig) -> std::io::Result<DevCluster> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tls, ca_pem) = if config.tls {
            let (acceptor, pem) = self_signed(addr)?;
            (Some(acceptor), Some(pem))
        } else {
            (None, None)
        };
        let seed = if config.seed == 0 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        } else {
            config.seed
        };
        let cluster = Cluster::new(config.store, config.clock.clone(), seed);
        let shared = Arc::new(Shared {
            cluster: cluster.clone(),
            logs: Arc::new(LogStore::default()),
            faults: Arc::new(Faults::default()),
            config: config.server.clone(),
        });
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(serve(listener, shared.clone(), tls, stopped.clone())),
            tokio::spawn(run_job_controller(
                cluster.clone(),
                shared.faults.clone(),
                config.controller.clone(),
                stopped.clone(),
            )),
            tokio::spawn(run_kubelet(
                cluster,
                shared.logs.clone(),
                shared.faults.clone(),
                config.kubelet.clone(),
                stopped,
            )),
        ];
        Ok(DevCluster {
            addr,
            ca_pem,
            shared,
            stop,
            tasks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        base_url(self.addr, self.ca_pem.is_some())
    }

    /// The serving certificate (PEM) clients must trust, with `tls`.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.shared.cluster
    }

    pub fn faults(&self) -> &Arc<Faults> {
        &self.shared.faults
    }

    pub fn logs(&self) -> &Arc<LogStore> {
        &self.shared.logs
    }

    /// A kubeconfig for this cluster (context `runway-dev`, namespace `default`).
    pub fn kubeconfig(&self) -> String {
        kubeconfig_yaml(
            &self.url(),
            self.shared.config.token.as_deref(),
            self.ca_pem.as_deref(),
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Stops the server and controllers, ending open streams; the kubelet
    /// stops the processes it runs.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.shared.faults.drop_watches();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// A serving certificate for the loopback names, and its PEM for clients.
fn self_signed(addr: SocketAddr) -> std::io::Result<(tokio_rustls::TlsAcceptor, String)> {
    use tokio_rustls::rustls;
    let io_err = |e: &dyn std::fmt::Display| std::io::Error::other(format!("dev-cluster TLS: {e}"));
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let ip = addr.ip().to_string();
    if !names.contains(&ip) {
        names.push(ip);
    }
    let cert = rcgen::generate_simple_self_signed(names).map_err(|e| io_err(&e))?;
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io_err(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .map_err(|e| io_err(&e))?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), pem))
}

/// The kubeconfig YAML clients load.
pub fn kubeconfig_yaml(url: &str, token: Option<&str>, ca_pem: Option<&str>) -> String {
    use base64::Engine as _;
    let user = match token {
        Some(t) => format!("  user:\n    token: {t}\n"),
        None => "  user: {}\n".to_owned(),
    };
    let ca = ca_pem
        .map(|pem| {
            let data = base64::engine::general_purpose::STANDARD.encode(pem);
            format!("    certificate-authority-data: {data}\n")
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: runway-dev\n  cluster:\n    server: {url}\n{ca}\
         contexts:\n- name: runway-dev\n  context:\n    cluster: runway-dev\n    user: runway-dev\n\
         \x20   namespace: default\ncurrent-context: runway-dev\nusers:\n- name: runway-dev\n{user}\
         preferences: {{}}\n"
    )
}
