//! The one place concrete types are wired together: kube's client behind
//! the gate, the tracker's watches, the launcher logic, tonic, the broker,
//! the result backend and the operations port. Tests start the same thing
//! in-process.

mod serve;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;

use crate::cluster::{self, ClientSource, Gate, GateConfig, GateLayer};
use crate::metrics::Metrics;
use crate::settings::KubeArgs;

pub use serve::{start_serve, ServeHandle};
pub use worker::{start_worker, WorkerHandle};

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

/// Listens on `addr` (port 0 picks one) and says which address it got.
async fn bind(addr: std::net::SocketAddr) -> Result<(TcpListener, std::net::SocketAddr), Error> {
    let err = |source| Error::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

/// kube's client behind Runway's gate (rate limit, retries, metrics).
pub async fn kube_client(kube: &KubeArgs, metrics: &Arc<Metrics>) -> Result<kube::Client, Error> {
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
