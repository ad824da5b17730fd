//! `runway dev-cluster`: the local control plane in the foreground, until
//! SIGTERM or Ctrl-C.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::ValueEnum;

#[derive(Debug, clap::Args)]
pub struct DevClusterArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: std::net::SocketAddr,
    /// Where to write the kubeconfig (context `runway-dev`).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// `process` runs each container's command as a local process;
    /// `simulated` runs nothing (durations and exit codes from annotations).
    #[arg(long, value_enum, default_value_t = KubeletArg::Process)]
    kubelet: KubeletArg,
    /// Serve HTTPS with a self-signed certificate made at start (the
    /// kubeconfig carries it as certificate-authority-data).
    #[arg(long)]
    tls: bool,
    /// Require this bearer token on every request (401 without it).
    #[arg(long, env = "RUNWAY_DEV_CLUSTER_TOKEN")]
    token: Option<String>,
    /// Node names, comma-separated (each labelled kubernetes.io/hostname=<name>).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "devmaster1,devmaster2,devmaster3"
    )]
    nodes: Vec<String>,
    /// Allocatable CPU of each node, in millicores.
    #[arg(long, default_value_t = 64_000)]
    node_cpu_millis: i64,
    /// Allocatable memory of each node, in MiB.
    #[arg(long, default_value_t = 262_144)]
    node_memory_mib: i64,
    /// Glob patterns of the images that "exist"; any other fails with ErrImagePull.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    images: Vec<String>,
    /// How many changes the watch history keeps (older resourceVersions get 410 Gone).
    #[arg(long, default_value_t = 100_000)]
    history: usize,
    /// Fraction of API requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    fault_429: f64,
    /// Fraction of API requests answered 500.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    fault_500: f64,
    /// Latency added to every API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of writes that are stored but answered 500 (exercises
    /// 409-after-retry idempotence).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    fault_commit_then_fail: f64,
    /// Start with the Job controller paused (no pods are created).
    #[arg(long)]
    pause_controller: bool,
    /// Start with the kubelet paused (pods stay Pending).
    #[arg(long)]
    pause_kubelet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KubeletArg {
    Process,
    Simulated,
}

pub async fn run(args: DevClusterArgs) -> anyhow::Result<()> {
    use runway_devcluster::faults::FaultSettings;
    use runway_devcluster::kubelet::{KubeletMode, NodeConfig};
    use runway_devcluster::{DevCluster, DevClusterConfig};

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = DevClusterConfig::default();
    config.server.token = args.token.clone();
    config.tls = args.tls;
    config.store.history = args.history;
    config.kubelet.mode = match args.kubelet {
        KubeletArg::Process => KubeletMode::Process,
        KubeletArg::Simulated => KubeletMode::Simulated,
    };
    config.kubelet.images = args.images.clone();
    config.kubelet.nodes = args
        .nodes
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| {
            let mut node = NodeConfig::new(n);
            node.cpu_millis = args.node_cpu_millis;
            node.memory_bytes = args.node_memory_mib << 20;
            node
        })
        .collect();
    let cluster = DevCluster::start(args.listen, config)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    cluster.faults().apply(&FaultSettings {
        rate_429: Some(args.fault_429),
        rate_500: Some(args.fault_500),
        latency_ms: Some(args.latency_ms),
        commit_then_fail: Some(args.fault_commit_then_fail),
        pause_controller: Some(args.pause_controller),
        pause_kubelet: Some(args.pause_kubelet),
        ..FaultSettings::default()
    });
    if let Some(path) = &args.kubeconfig {
        cluster
            .write_kubeconfig(path)
            .with_context(|| format!("writing kubeconfig {}", path.display()))?;
    }
    tracing::info!(url = %cluster.url(), kubeconfig = ?args.kubeconfig, "dev cluster ready");
    println!("runway dev-cluster listening on {}", cluster.url());
    runway::stop::signalled().await;
    tracing::info!("shutting down: stopping containers");
    cluster.shutdown().await;
    Ok(())
}

/// A fraction of requests: a number from 0 to 1.
fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{s:?} is not a fraction: give a number from 0 to 1, e.g. 0.05"
        )),
    }
}
