//! `runway bench launch`: the service against an in-process dev cluster
//! (simulated kubelet), driven by concurrent gRPC clients; the Python
//! `K8sRunLauncher.launch_run` against the same dev cluster in the same run.

use runway_proto as proto;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use thiserror::Error;
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use crate::app::{self, ServeHandle};
use crate::serve::settings::ServeArgs;
use runway_devcluster::kubelet::KubeletMode;
use runway_devcluster::validate::Kind;
use runway_devcluster::{DevCluster, DevClusterConfig};
use runway_proto::run_launcher_client::RunLauncherClient;
use runway_proto::{self, WorkerStatus};

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
    /// Launches per second of the paced phase.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
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

pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn setup(e: impl std::fmt::Display) -> Error {
    Error::Setup(e.to_string())
}

/// The seed deployment's namespace.
pub use runway_devcluster::seed::{seed_prerequisites, NS};

async fn post(url: &str, path: &str, body: Value) -> Result<(), Error> {
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
        return Err(Error::Setup(format!(
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
) -> Result<(DevCluster, PathBuf), Error> {
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

pub(crate) async fn prepare(url: &str) -> Result<(), Error> {
    for (path, body) in seed_prerequisites() {
        post(url, &path, body).await?;
    }
    Ok(())
}

struct Case {
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

fn run_id(phase: u32, n: usize) -> String {
    format!("b{phase:07x}-0000-4000-8000-{n:012}")
}

impl Case {
    fn request(&self, run_id: String, digest_only: bool) -> proto::LaunchRunRequest {
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
        }
    }
}

/// Launch latencies (ms) of `n` launches with `concurrency` in flight.
async fn burst(
    clients: &[RunLauncherClient<Channel>],
    case: &Arc<Case>,
    phase: u32,
    n: usize,
    concurrency: usize,
) -> Result<(Vec<f64>, Duration), Error> {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.map_err(setup)?;
        let mut c = clients[i % clients.len()].clone();
        let req = case.request(run_id(phase, i), true);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = c.launch_run(req).await;
            drop(permit);
            r.map(|_| t.elapsed().as_secs_f64() * 1e3)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.push(t.await.map_err(setup)??);
    }
    Ok((sorted(lat), start.elapsed()))
}

/// Launches at a fixed rate (open loop) for `seconds`.
async fn paced(
    clients: &[RunLauncherClient<Channel>],
    case: &Arc<Case>,
    rate: f64,
    seconds: f64,
) -> Result<Vec<f64>, Error> {
    let n = (rate * seconds).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
        let mut c = clients[i % clients.len()].clone();
        let req = case.request(run_id(2, i), true);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            c.launch_run(req)
                .await
                .map(|_| t.elapsed().as_secs_f64() * 1e3)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.push(t.await.map_err(setup)??);
    }
    Ok(sorted(lat))
}

async fn health_rate(
    clients: &[RunLauncherClient<Channel>],
    runs: usize,
    seconds: f64,
    concurrency: usize,
) -> Result<f64, Error> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for w in 0..concurrency.max(1) {
        let mut c = clients[w % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut i = w;
            while Instant::now() < deadline {
                let req = proto::CheckRunWorkerHealthRequest {
                    run_id: run_id(1, i % runs.max(1)),
                    run_status: "STARTED".into(),
                    ..Default::default()
                };
                c.check_run_worker_health(req).await?;
                n += 1;
                i += 7;
            }
            Ok::<u64, tonic::Status>(n)
        }));
    }
    let start = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.map_err(setup)??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64().max(seconds))
}

fn python_peer(bench: &LaunchBench, python: &Path, kubeconfig: &Path) -> Result<Value, Error> {
    let args = [
        "--kubeconfig".to_owned(),
        kubeconfig.display().to_string(),
        "--case".into(),
        bench
            .root
            .join("tests/fixtures/cases/seed_k8s_run.json")
            .display()
            .to_string(),
        "--count".into(),
        bench.python_launches.to_string(),
    ];
    super::python_json(
        python,
        &bench.root.join("benches/python/launch_bench.py"),
        &args,
    )
    .map_err(Error::Python)
}

type Times = Arc<Mutex<HashMap<String, Instant>>>;

/// Milliseconds from the store's Complete to WatchRuns' SUCCESS, per Job.
fn watch_latency(done: &Times, seen: &Times, pick: impl Fn(&str) -> bool) -> Vec<f64> {
    let done = done.lock().unwrap_or_else(|p| p.into_inner());
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    sorted(
        seen.iter()
            .filter(|(job, _)| pick(job))
            .filter_map(|(job, at)| {
                done.get(job)
                    .map(|d| at.saturating_duration_since(*d).as_secs_f64() * 1e3)
            })
            .collect(),
    )
}

/// Runs the whole bench; returns the JSON lines to print.
pub async fn run(bench: &LaunchBench) -> Result<Vec<Value>, Error> {
    let dir = std::env::temp_dir().join(format!("runway-bench-launch-{}", std::process::id()));
    let (dev, kubeconfig) = bench_cluster(&dir, 5_000).await?;

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
    let url = format!("http://{}", serve.grpc_addr);
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(RunLauncherClient::new(
            Channel::from_shared(url.clone())
                .map_err(setup)?
                .connect()
                .await?,
        ));
    }
    let case = Arc::new(load_case(&bench.root, &kubeconfig)?);
    // Primes the config cache, as the first launch of a daemon does.
    clients[0]
        .launch_run(case.request(run_id(0, 0), false))
        .await?;

    // When the dev cluster stored each Job's completion, and when WatchRuns saw it.
    let completed_at: Times = Arc::default();
    let (_, mut store_rx) = dev.cluster().snapshot_and_subscribe(&[Kind::Job]);
    let recorder = {
        let completed_at = completed_at.clone();
        tokio::spawn(async move {
            loop {
                let e = match store_rx.recv().await {
                    Ok(e) => e,
                    // Missed completions only shrink the sample.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                if e.kind != Kind::Job {
                    continue;
                }
                let done = e.object["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Complete" && c["status"] == "True")
                    });
                if done {
                    if let Some(name) = e.object["metadata"]["name"].as_str() {
                        completed_at
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(name.to_owned())
                            .or_insert_with(Instant::now);
                    }
                }
            }
        })
    };
    let seen_at: Times = Arc::default();
    let mut stream = clients[1]
        .watch_runs(proto::WatchRunsRequest::default())
        .await?
        .into_inner();
    let watcher = {
        let seen_at = seen_at.clone();
        tokio::spawn(async move {
            while let Some(Ok(t)) = stream.next().await {
                if t.status == WorkerStatus::Success as i32 {
                    seen_at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(t.job_name)
                        .or_insert_with(Instant::now);
                }
            }
        })
    };

    // One launch after another, as the Python peer runs: the latency ratio.
    let (seq, _) = burst(&clients, &case, 3, bench.python_launches.max(50), 1).await?;
    let (lat, took) = burst(&clients, &case, 1, bench.launches, bench.concurrency).await?;
    let mut lines = vec![json!({
        "impl": "runway", "what": "LaunchRun burst", "launches": bench.launches,
        "concurrency": bench.concurrency,
        "launches_per_s": bench.launches as f64 / took.as_secs_f64(),
        "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "p999_ms": pct(&lat, 0.999),
    })];
    // The burst's pods finish before the paced phase, so that phase (and the
    // completion latency measured in it) sees the stated rate, not a backlog.
    let settle = Instant::now() + Duration::from_secs(120);
    while seen_at.lock().unwrap_or_else(|p| p.into_inner()).len() < bench.launches + 1
        && Instant::now() < settle
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let burst_watch = watch_latency(&completed_at, &seen_at, |_| true);
    lines.push(json!({
        "impl": "runway", "what": "LaunchRun sequential", "launches": seq.len(),
        "p50_ms": pct(&seq, 0.5), "p99_ms": pct(&seq, 0.99),
    }));
    let paced_lat = paced(&clients, &case, bench.rate, bench.rate_seconds).await?;
    lines.push(json!({
        "impl": "runway", "what": "LaunchRun paced", "rate_per_s": bench.rate,
        "launches": paced_lat.len(),
        "p50_ms": pct(&paced_lat, 0.5), "p99_ms": pct(&paced_lat, 0.99), "p999_ms": pct(&paced_lat, 0.999),
    }));
    let hps = health_rate(
        &clients,
        bench.launches,
        bench.health_seconds,
        bench.concurrency.max(64),
    )
    .await?;
    lines.push(json!({"impl": "runway", "what": "CheckRunWorkerHealth", "checks_per_s": hps}));

    // Let the simulated pods finish, then compare completion with observation.
    let expected = bench.launches + paced_lat.len() + seq.len() + 1;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen_at.lock().unwrap_or_else(|p| p.into_inner()).len() < expected
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let paced_watch = watch_latency(&completed_at, &seen_at, |job| {
        job.contains(&run_id(2, 0)[..9])
    });
    lines.push(json!({
        "impl": "runway", "what": "WatchRuns completion latency, paced phase",
        "rate_per_s": bench.rate, "jobs": paced_watch.len(),
        "p50_ms": pct(&paced_watch, 0.5), "p99_ms": pct(&paced_watch, 0.99),
    }));
    lines.push(json!({
        "impl": "runway", "what": "WatchRuns completion latency, during the burst",
        "jobs": burst_watch.len(),
        "p50_ms": pct(&burst_watch, 0.5), "p99_ms": pct(&burst_watch, 0.99),
    }));
    watcher.abort();
    recorder.abort();

    if let Some(python) = bench.python.as_ref().filter(|_| !bench.no_python) {
        let peer = python_peer(bench, python, &kubeconfig)?;
        let py_rate = peer["launches_per_s"].as_f64().unwrap_or(f64::NAN);
        let py_p50 = peer["p50_ms"].as_f64().unwrap_or(f64::NAN);
        let rw_rate = lines[0]["launches_per_s"].as_f64().unwrap_or(f64::NAN);
        lines.push(peer);
        lines.push(json!({
            "what": "ratio runway/python",
            "launches_per_s": rw_rate / py_rate,
            "sequential_p50_latency_python_over_runway": py_p50 / pct(&seq, 0.5),
        }));
    }
    serve.shutdown().await?;
    dev.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(lines)
}
