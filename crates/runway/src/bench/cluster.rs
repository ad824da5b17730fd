//! The in-process dev cluster the benches run on: simulated kubelet,
//! unbounded nodes and the seed's prerequisites.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use runway_devcluster::kubelet::KubeletMode;
use runway_devcluster::seed::seed_prerequisites;
use runway_devcluster::{DevCluster, DevClusterConfig};

/// The cluster could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("setting up the bench's dev cluster: {0}")]
pub struct SetupError(pub String);

fn setup(e: impl std::fmt::Display) -> SetupError {
    SetupError(e.to_string())
}

async fn post(url: &str, path: &str, body: Value) -> Result<(), SetupError> {
    // The dev cluster is plain HTTP on loopback; one tiny client is enough here.
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(setup)?;
    let text = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(req.as_bytes()).await.map_err(setup)?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.map_err(setup)?;
    if !(out.starts_with("HTTP/1.1 201") || out.starts_with("HTTP/1.1 200")) {
        return Err(SetupError(format!(
            "POST {path}: {}",
            out.lines().next().unwrap_or("")
        )));
    }
    Ok(())
}

/// An in-process dev cluster for load: simulated kubelet (50 ms containers),
/// unbounded nodes, the seed's prerequisites, and its kubeconfig in `dir`.
/// `history` is kept small so it is reused rather than grown: fresh pages
/// (zeroed by the kernel) were a third of the profile with 100,000 changes.
pub(crate) async fn bench_cluster(
    dir: &Path,
    history: usize,
) -> Result<(DevCluster, PathBuf), SetupError> {
    std::fs::create_dir_all(dir).map_err(setup)?;
    let kubeconfig = dir.join("kubeconfig");
    let mut config = DevClusterConfig::default();
    config.kubelet.mode = KubeletMode::Simulated;
    config.kubelet.default_duration_ms = 50;
    config.store.history = history;
    config.kubelet.tick = Duration::from_millis(5);
    for node in &mut config.kubelet.nodes {
        node.max_pods = 1_000_000;
        node.cpu_millis = 1_000_000_000;
        node.memory_bytes = i64::MAX / 8;
    }
    let dev = DevCluster::start("127.0.0.1:0".parse().map_err(setup)?, config)
        .await
        .map_err(setup)?;
    dev.write_kubeconfig(&kubeconfig).map_err(setup)?;
    prepare(&dev.url()).await?;
    Ok((dev, kubeconfig))
}

pub(crate) async fn prepare(url: &str) -> Result<(), SetupError> {
    for (path, body) in seed_prerequisites() {
        post(url, &path, body).await?;
    }
    Ok(())
}
