//! The load phases: bursts, a paced open loop, health checks, and the
//! Python peer on the same cluster.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use super::{run_id, setup, Case, Error, LaunchBench};
use crate::bench::sorted;
use runway_proto as proto;
use runway_proto::run_launcher_client::RunLauncherClient;

/// Launch latencies (ms) of `n` launches with `concurrency` in flight.
pub(super) async fn burst(
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
pub(super) async fn paced(
    clients: &[RunLauncherClient<Channel>],
    case: &Arc<Case>,
    phase: u32,
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
        let req = case.request(run_id(phase, i), true);
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

pub(super) async fn health_rate(
    clients: &[RunLauncherClient<Channel>],
    runs: usize,
    seconds: f64,
    concurrency: usize,
) -> Result<(u64, f64), Error> {
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
    Ok((
        total,
        total as f64 / start.elapsed().as_secs_f64().max(seconds),
    ))
}

pub(super) fn python_peer(
    bench: &LaunchBench,
    python: &Path,
    kubeconfig: &Path,
) -> Result<Value, Error> {
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
    crate::bench::python_json(
        python,
        &bench.root.join("benches/python/launch_bench.py"),
        &args,
    )
    .map_err(Error::Python)
}
