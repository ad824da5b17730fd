//! `runway bench worker`: trivial steps end to end. Tasks published with
//! confirms, a `runway worker` in-process, an in-process dev cluster with
//! the simulated kubelet, Dagster's PostgreSQL storage and the Redis result
//! backend; then the Python peer (a real `celery worker` with
//! dagster-celery-k8s's task) on the same cluster in the same run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use thiserror::Error;

use super::cluster::bench_cluster;
use super::cpu;
use super::{pct, sorted};
use crate::app;
use crate::broker::publish::{uuid4, Publisher};
use crate::results::watch::Results;
use crate::worker::settings::WorkerArgs;
use drive::{collect, secs, Driver};
use runway_devcluster::seed::NS;

mod drive;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    App(#[from] app::Error),
    #[error("publisher: {0}")]
    Publish(#[from] crate::broker::publish::Error),
    #[error("the Python side: {0}")]
    Python(String),
}

fn setup(e: impl std::fmt::Display) -> Error {
    Error::Setup(e.to_string())
}

/// The flags of `runway bench worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerBench {
    #[arg(skip)]
    pub root: PathBuf,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672//")]
    pub broker_url: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    pub result_backend: String,
    #[arg(long, default_value_t = 5_000)]
    pub steps: usize,
    /// Steps the worker runs at once.
    #[arg(long, default_value_t = 2_000)]
    pub concurrency: usize,
    /// Publishes awaiting their confirm at once.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Steps per second of the paced phases, one phase per rate.
    #[arg(long, value_delimiter = ',', default_value = "50,200")]
    pub rates: Vec<f64>,
    #[arg(long, default_value_t = 4.0)]
    pub rate_seconds: f64,
    /// Python with dagster-celery-k8s (default: .venv/bin/python when present).
    #[arg(long)]
    pub python: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    pub python_steps: usize,
}

fn python(python: &Path, script: &Path, args: &[&str]) -> Result<Value, Error> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    super::python_json(python, script, &args).map_err(Error::Python)
}

pub async fn run(b: &WorkerBench) -> Result<Vec<Value>, Error> {
    let py = b.python.clone().ok_or_else(|| {
        Error::Setup("needs --python: Dagster's schema and run come from it".into())
    })?;
    let script = b.root.join("benches/python/worker_bench.py");
    let dir = std::env::temp_dir().join(format!("runway-bench-worker-{}", std::process::id()));
    // The dev cluster and the worker each on a runtime of their own, so their
    // CPU is told apart (`bench::cpu`).
    let cluster_rt = cpu::runtime(cpu::DEVCLUSTER, 2).map_err(setup)?;
    let worker_rt = cpu::runtime(cpu::WORKER, 2).map_err(setup)?;
    let d = dir.clone();
    let (dev, kubeconfig) = cpu::on(&cluster_rt, async move { bench_cluster(&d, 20_000).await })
        .await
        .map_err(Error::Setup)?
        .map_err(setup)?;
    let kc = kubeconfig.display().to_string();
    let made = python(
        &py,
        &script,
        &["setup", "--kubeconfig", &kc, "--namespace", NS],
    )?;
    let setup_file = dir.join("setup.json");
    std::fs::write(&setup_file, made.to_string()).map_err(setup)?;
    let result = measure(b, &made, &kubeconfig, &py, &script, &setup_file, &worker_rt).await;
    dev.shutdown().await;
    let sf = setup_file.display().to_string();
    let _ = python(&py, &script, &["drop", "--setup", &sf]);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    b: &WorkerBench,
    made: &Value,
    kubeconfig: &Path,
    py: &Path,
    script: &Path,
    setup_file: &Path,
    worker_rt: &tokio::runtime::Runtime,
) -> Result<Vec<Value>, Error> {
    use clap::Parser;
    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        a: WorkerArgs,
    }
    let queue = format!("runway-bench-steps-{}", &uuid4()[..8]);
    let args = P::try_parse_from([
        "worker".to_owned(),
        format!("--queues={queue}"),
        format!("--broker-url={}", b.broker_url),
        format!("--result-backend={}", b.result_backend),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--namespace={NS}"),
        "--http-listen=127.0.0.1:0".into(),
        format!("--concurrency={}", b.concurrency),
        "--kube-qps=0".into(),
        "--kube-max-in-flight=512".into(),
        "--hostname=runway-bench@localhost".into(),
    ])
    .map_err(setup)?
    .a;
    let worker = cpu::on(worker_rt, async move { app::start_worker(&args).await })
        .await
        .map_err(Error::Setup)??;
    if !worker.tracker.wait_synced(Duration::from_secs(30)).await {
        return Err(Error::Setup("the watches did not sync".into()));
    }
    let mut connected = worker.pool.broker.connected.subscribe();
    tokio::time::timeout(Duration::from_secs(30), connected.wait_for(|c| *c))
        .await
        .map_err(|_| Error::Setup("the worker did not connect to the broker".into()))?
        .map_err(setup)?;

    let client = redis::Client::open(b.result_backend.as_str()).map_err(setup)?;
    let results = Results::new(client);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(results.clone().run(stop_rx));
    let mut sub = results.subscribed.subscribe();
    tokio::time::timeout(Duration::from_secs(10), sub.wait_for(|s| *s))
        .await
        .map_err(|_| Error::Setup("could not subscribe to the result backend".into()))?
        .map_err(setup)?;

    let driver = Driver {
        results,
        publisher: Arc::new(Publisher::new(&b.broker_url, Default::default())),
        queue: queue.clone(),
        template: made["kwargs"].clone(),
        window: b.window,
    };
    driver.warm_up().await?;
    let latencies = || {
        worker
            .pool
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    };

    // Saturation: every step at once; its latency is mostly queueing.
    let tasks = driver.prepare("s", b.steps).await?;
    let phase = cpu::Phase::start();
    let started = Instant::now();
    let (waits, published) = driver.publish(tasks, None).await?;
    let done = collect(waits).await?;
    let took = secs(started);
    let lat = sorted(latencies());
    let mut lines = vec![json!({
        "bench": "worker", "impl": "runway", "what": "steps at saturation (latency is queueing)",
        "steps": b.steps, "concurrency": b.concurrency,
        "states": done.states, "failures": done.failures,
        "publish_seconds": published.as_secs_f64(),
        "steps_per_s": b.steps as f64 / took,
        "completion_to_result_p50_ms": pct(&lat, 0.5) * 1e3,
        "completion_to_result_p99_ms": pct(&lat, 0.99) * 1e3,
        "note": "per step: run read, 3 event-log rows, Job create, watch wait, pod list, log read, result SETEX+PUBLISH, ack",
    })];
    phase.end(&mut lines[0], b.steps, &[cpu::WORKER]);

    // Latency at load: steps published at a fixed rate, well under saturation.
    for rate in b.rates.iter().copied() {
        let n = (rate * b.rate_seconds).round().max(1.0) as usize;
        let tasks = driver.prepare(&format!("p{rate:.0}-"), n).await?;
        let before = latencies().len();
        let phase = cpu::Phase::start();
        let (waits, _) = driver.publish(tasks, Some(rate)).await?;
        let done = collect(waits).await?;
        let lat = sorted(latencies().split_off(before));
        let mut line = json!({
            "bench": "worker", "impl": "runway", "what": "steps paced", "rate_per_s": rate,
            "steps": n, "states": done.states, "failures": done.failures,
            "completion_to_result_p50_ms": pct(&lat, 0.5) * 1e3,
            "completion_to_result_p99_ms": pct(&lat, 0.99) * 1e3,
        });
        phase.end(&mut line, n, &[cpu::WORKER]);
        lines.push(line);
    }
    let _ = stop_tx.send(true);
    worker.shutdown().await;
    if b.python_steps > 0 {
        let sf = setup_file.display().to_string();
        let pq = format!("runway-bench-py-{}", &uuid4()[..8]);
        let steps = b.python_steps.to_string();
        let peer = python(
            py,
            script,
            &[
                "peer",
                "--setup",
                &sf,
                "--broker",
                &b.broker_url,
                "--backend",
                &b.result_backend,
                "--queue",
                &pq,
                "--steps",
                &steps,
            ],
        )?;
        let ratio = lines[0]["steps_per_s"].as_f64().unwrap_or(f64::NAN)
            / peer["steps_per_s"].as_f64().unwrap_or(f64::NAN);
        let lat_ratio = peer["completion_to_result_p99_s"]
            .as_f64()
            .unwrap_or(f64::NAN)
            * 1e3
            / lines[0]["completion_to_result_p99_ms"]
                .as_f64()
                .unwrap_or(f64::NAN);
        let cpu_ratio = peer["own_cpu_us_per_op"].as_f64().unwrap_or(f64::NAN)
            / lines[0]["runway_cpu_us_per_op"]
                .as_f64()
                .unwrap_or(f64::NAN);
        lines.push(peer);
        lines.push(json!({"bench": "worker", "what": "ratio runway/python",
                          "steps_per_s": ratio, "completion_to_result_p99_python_over_runway": lat_ratio,
                          "cpu_per_step_python_over_runway": cpu_ratio}));
    }
    Ok(lines)
}
