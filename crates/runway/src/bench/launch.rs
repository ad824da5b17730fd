//! `runway bench launch`: the service against an in-process dev cluster
//! (simulated kubelet), driven by concurrent gRPC clients; the Python
//! `K8sRunLauncher.launch_run` against the same dev cluster in the same run.

use runway_proto as proto;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;
use tonic::transport::Channel;

use super::cluster::{bench_cluster, SetupError};
use super::cpu;
use super::pct;
use crate::app::{self, ServeHandle};
use crate::serve::settings::ServeArgs;
use runway_devcluster::seed::NS;
use runway_proto::run_launcher_client::RunLauncherClient;

mod load;
mod observe;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    App(#[from] app::Error),
    #[error("gRPC: {0}")]
    Grpc(#[from] tonic::Status),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the Python peer: {0}")]
    Python(String),
    #[error(transparent)]
    Cluster(#[from] SetupError),
}

/// What to run (the flags of `runway bench launch`).
#[derive(Debug, Clone, clap::Args)]
pub struct LaunchBench {
    /// Repository root (the case fixture and the Python script live there).
    #[arg(skip)]
    pub root: PathBuf,
    #[arg(long, default_value_t = 5_000)]
    pub launches: usize,
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Launches per second of the paced phases, one phase per rate.
    #[arg(long, value_delimiter = ',', default_value = "50,200,500")]
    pub rates: Vec<f64>,
    #[arg(long, default_value_t = 4.0)]
    pub rate_seconds: f64,
    #[arg(long, default_value_t = 3.0)]
    pub health_seconds: f64,
    /// Python with dagster-k8s for the peer (default: .venv/bin/python when present).
    #[arg(long)]
    pub python: Option<PathBuf>,
    #[arg(long, default_value_t = 200)]
    pub python_launches: usize,
    /// Skip the Python peer.
    #[arg(long)]
    pub no_python: bool,
}

fn setup(e: impl std::fmt::Display) -> Error {
    Error::Setup(e.to_string())
}

pub(super) struct Case {
    launcher: proto::LauncherConfig,
    run: proto::Run,
}

fn load_case(root: &Path, kubeconfig: &Path) -> Result<Case, Error> {
    let path = root.join("tests/fixtures/cases/seed_k8s_run.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Setup(format!("{}: {e}", path.display())))?;
    let mut case: Value = serde_json::from_str(&text).map_err(setup)?;
    // The same launcher config the Python peer gets.
    case["launcher"]["load_incluster_config"] = json!(false);
    case["launcher"]["kubeconfig_file"] = json!(kubeconfig.display().to_string());
    let req = crate::client::request_from_case(&case, None).map_err(setup)?;
    match (req.launcher, req.run) {
        (Some(launcher), Some(run)) => Ok(Case { launcher, run }),
        _ => Err(Error::Setup("the case has no launcher or run".into())),
    }
}

pub(super) fn run_id(phase: u32, n: usize) -> String {
    format!("b{phase:07x}-0000-4000-8000-{n:012}")
}

impl Case {
    pub(super) fn request(&self, run_id: String, digest_only: bool) -> proto::LaunchRunRequest {
        let mut launcher = self.launcher.clone();
        if digest_only {
            launcher.config_json.clear();
        }
        proto::LaunchRunRequest {
            run: Some(proto::Run {
                run_id,
                ..self.run.clone()
            }),
            launcher: Some(launcher),
            env: HashMap::new(),
            dagster_version: String::new(),
        }
    }
}

/// The in-process parts, each on a runtime of its own so their CPU is told
/// apart (`bench::cpu`): the dev cluster and serve. The load runs on the
/// caller's runtime.
struct Parts {
    /// Kept for as long as the parts run on them (dropped in the background).
    _cluster_rt: cpu::Runtime,
    _serve_rt: cpu::Runtime,
    dev: runway_devcluster::DevCluster,
    serve: ServeHandle,
    kubeconfig: PathBuf,
}

async fn start_parts(dir: &Path) -> Result<Parts, Error> {
    let cluster_rt = cpu::runtime(cpu::DEVCLUSTER, 2).map_err(setup)?;
    let serve_rt = cpu::runtime(cpu::SERVE, 2).map_err(setup)?;
    let d = dir.to_path_buf();
    let (dev, kubeconfig) = cpu::on(&cluster_rt, async move { bench_cluster(&d, 5_000).await })
        .await
        .map_err(Error::Setup)??;
    let kc = kubeconfig.clone();
    let serve = cpu::on(&serve_rt, async move { start_serve(&kc).await })
        .await
        .map_err(Error::Setup)??;
    Ok(Parts {
        _cluster_rt: cluster_rt,
        _serve_rt: serve_rt,
        dev,
        serve,
        kubeconfig,
    })
}

/// Runs the whole bench; returns the JSON lines to print.
pub async fn run(bench: &LaunchBench) -> Result<Vec<Value>, Error> {
    let dir = std::env::temp_dir().join(format!("runway-bench-launch-{}", std::process::id()));
    let parts = start_parts(&dir).await?;
    let result = measure(bench, &parts).await;
    let stopped = parts.serve.shutdown().await;
    parts.dev.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    stopped?;
    result
}

/// Serve's own threads: what a launch costs Runway.
const RUNWAY: &[&str] = &[cpu::SERVE];

async fn measure(bench: &LaunchBench, parts: &Parts) -> Result<Vec<Value>, Error> {
    let clients = connect(&parts.serve, 4).await?;
    let case = Arc::new(load_case(&bench.root, &parts.kubeconfig)?);
    // Primes the config cache, as the first launch of a daemon does.
    clients[0]
        .clone()
        .launch_run(case.request(run_id(0, 0), false))
        .await?;
    let (completed_at, recorder) = observe::record_completions(&parts.dev);
    let (seen_at, watcher) = observe::record_successes(&mut clients[1].clone()).await?;
    let mut expected = 1;

    // One launch after another, as the Python peer runs: the latency ratio.
    let phase = cpu::Phase::start();
    let (seq, _) = load::burst(&clients, &case, 3, bench.python_launches.max(50), 1).await?;
    expected += seq.len();
    observe::wait_seen(&seen_at, expected, Duration::from_secs(120)).await;
    let mut seq_line = json!({
        "impl": "runway", "what": "LaunchRun sequential", "launches": seq.len(),
        "p50_ms": pct(&seq, 0.5), "p99_ms": pct(&seq, 0.99),
    });
    phase.end(&mut seq_line, seq.len(), RUNWAY);

    // Saturation: as many launches as the clients can push; its latency is
    // mostly time spent queued, and labelled so.
    let phase = cpu::Phase::start();
    let (lat, took) = load::burst(&clients, &case, 1, bench.launches, bench.concurrency).await?;
    expected += bench.launches;
    // The burst's pods finish before the paced phases, so those (and the
    // completion latency measured in them) see their stated rate, not a backlog.
    observe::wait_seen(&seen_at, expected, Duration::from_secs(120)).await;
    let mut burst = json!({
        "impl": "runway", "what": "LaunchRun burst (saturation; latency is queueing)",
        "launches": bench.launches, "concurrency": bench.concurrency,
        "launches_per_s": bench.launches as f64 / took.as_secs_f64(),
        "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "p999_ms": pct(&lat, 0.999),
    });
    phase.end(&mut burst, bench.launches, RUNWAY);
    let burst_watch = observe::watch_latency(&completed_at, &seen_at, |_| true);
    let mut lines = vec![burst, seq_line];

    for (k, rate) in bench.rates.iter().copied().enumerate() {
        let id = 4 + k as u32;
        let phase = cpu::Phase::start();
        let paced = load::paced(&clients, &case, id, rate, bench.rate_seconds).await?;
        expected += paced.len();
        observe::wait_seen(&seen_at, expected, Duration::from_secs(120)).await;
        let prefix = run_id(id, 0)[..9].to_owned();
        let watch = observe::watch_latency(&completed_at, &seen_at, |job| job.contains(&prefix));
        let mut line = json!({
            "impl": "runway", "what": "LaunchRun paced", "rate_per_s": rate,
            "launches": paced.len(),
            "p50_ms": pct(&paced, 0.5), "p99_ms": pct(&paced, 0.99), "p999_ms": pct(&paced, 0.999),
            "watch_completion_jobs": watch.len(),
            "watch_completion_p50_ms": pct(&watch, 0.5), "watch_completion_p99_ms": pct(&watch, 0.99),
        });
        phase.end(&mut line, paced.len(), RUNWAY);
        lines.push(line);
    }
    lines.push(json!({
        "impl": "runway", "what": "WatchRuns completion latency, during the burst (queueing)",
        "jobs": burst_watch.len(),
        "p50_ms": pct(&burst_watch, 0.5), "p99_ms": pct(&burst_watch, 0.99),
    }));

    let concurrency = bench.concurrency.max(64);
    let phase = cpu::Phase::start();
    let (checks, hps) =
        load::health_rate(&clients, bench.launches, bench.health_seconds, concurrency).await?;
    let mut line = json!({"impl": "runway", "what": "CheckRunWorkerHealth", "checks_per_s": hps});
    phase.end(&mut line, checks as usize, RUNWAY);
    lines.push(line);
    watcher.abort();
    recorder.abort();

    if let Some(python) = bench.python.as_ref().filter(|_| !bench.no_python) {
        // The peer reports its own CPU over its timed launches (imports excluded).
        let peer = load::python_peer(bench, python, &parts.kubeconfig)?;
        let ratio = json!({
            "what": "ratio runway/python",
            "launches_per_s": lines[0]["launches_per_s"].as_f64().unwrap_or(f64::NAN)
                / peer["launches_per_s"].as_f64().unwrap_or(f64::NAN),
            "sequential_p50_latency_python_over_runway":
                peer["p50_ms"].as_f64().unwrap_or(f64::NAN) / pct(&seq, 0.5),
            "cpu_per_launch_python_over_runway":
                peer["own_cpu_us_per_op"].as_f64().unwrap_or(f64::NAN)
                / lines[1]["runway_cpu_us_per_op"].as_f64().unwrap_or(f64::NAN),
        });
        lines.push(peer);
        lines.push(ratio);
    }
    Ok(lines)
}

/// `runway serve` in process on the bench cluster, its watches synced.
async fn start_serve(kubeconfig: &Path) -> Result<ServeHandle, Error> {
    use clap::Parser;
    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        a: ServeArgs,
    }
    let args = P::try_parse_from([
        "serve".to_owned(),
        "--listen=127.0.0.1:0".into(),
        "--http-listen=127.0.0.1:0".into(),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--namespace={NS}"),
        "--kube-qps=0".into(),
        "--kube-max-in-flight=512".into(),
        "--watch-buffer=1000000".into(),
    ])
    .map_err(setup)?
    .a;
    let serve: ServeHandle = app::start_serve(&args).await?;
    if !serve.tracker.wait_synced(Duration::from_secs(30)).await {
        return Err(Error::Setup("the watches did not sync".into()));
    }
    Ok(serve)
}

/// `n` gRPC clients, each with its own connection.
async fn connect(serve: &ServeHandle, n: usize) -> Result<Vec<RunLauncherClient<Channel>>, Error> {
    let url = format!("http://{}", serve.grpc_addr);
    let mut clients = Vec::new();
    for _ in 0..n {
        let channel = Channel::from_shared(url.clone())
            .map_err(setup)?
            .connect()
            .await?;
        clients.push(RunLauncherClient::new(channel));
    }
    Ok(clients)
}
