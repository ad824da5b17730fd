//! Dev cluster throughput, measured with the real kube-rs client over HTTP:
//! Job creates per second with a watch open while every pod runs to completion
//! in simulated mode, watch-event latency (create answered -> ADDED seen), and
//! memory per stored object. Prints one JSON line.
//!
//! `cargo bench --bench devcluster -- [JOBS] [CONCURRENCY] [ROUNDS]` (defaults
//! 10000, 64, 3). On two cores the load, the server, the controller and the
//! kubelet share the CPU, and how the scheduler interleaves them moves the
//! creates/s of one round by 2x: the figures are the median round's (each
//! round a fresh cluster), with every round listed. Memory is the first
//! round's, in a process that has not yet freed anything to reuse.
//!
//! The dev cluster runs on a runtime of its own (threads `rw-devcluster`),
//! the client's creates and watch on another (`rw-load`), so the CPU each
//! spends per Job is read from the threads' counters: what the dev cluster
//! costs per Job, apart from the client that loads it on the same two cores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

use runway_devcluster::kubelet::KubeletMode;
use runway_devcluster::{DevCluster, DevClusterConfig};

// The allocator the `runway` binary uses.
#[global_allocator]
static GLOBAL: runway_alloc::Mimalloc = runway_alloc::Mimalloc;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn job(name: &str) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"dagster/run-id": name}},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"annotations": {"runway.dev/duration-ms": "0"}},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "dagster", "image": "busybox:1.36",
                "command": ["dagster"], "args": ["api", "execute_run", "{}"]}]}}}
    }))
    .unwrap()
}

/// Thread-name prefixes of the two runtimes.
const LOAD: &str = "rw-load";
const DEVCLUSTER: &str = "rw-devcluster";

fn named_runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// CPU seconds so far of this process's threads whose name starts with
/// `prefix`, from `/proc/self/task/*/stat` (utime and stime, the 12th and
/// 13th fields after the parenthesised name, in 100 Hz ticks). `runway`'s
/// `bench/cpu.rs` reads the same counters, but this crate sits below it.
fn threads_cpu_seconds(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
        if !read("comm").starts_with(prefix) {
            continue;
        }
        let stat = read("stat");
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        ticks += after_name
            .split_ascii_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse::<u64>().ok())
            .sum::<u64>();
    }
    ticks as f64 / 100.0
}

/// Microseconds of CPU per Job each side spent between two readings.
struct CpuSpent {
    at_start: (f64, f64),
}

impl CpuSpent {
    fn start() -> CpuSpent {
        CpuSpent {
            at_start: (threads_cpu_seconds(DEVCLUSTER), threads_cpu_seconds(LOAD)),
        }
    }

    /// (dev cluster, load) µs per Job.
    fn per_job(&self, jobs: usize) -> (f64, f64) {
        let per = |now: f64, then: f64| (now - then).max(0.0) * 1e6 / jobs.max(1) as f64;
        (
            per(threads_cpu_seconds(DEVCLUSTER), self.at_start.0),
            per(threads_cpu_seconds(LOAD), self.at_start.1),
        )
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let jobs_n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let concurrency: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3).max(1);
    let load = named_runtime(LOAD);
    let cluster = named_runtime(DEVCLUSTER);
    let mut results = Vec::new();
    for _ in 0..rounds {
        let round = run(cluster.handle().clone(), jobs_n, concurrency);
        // Spawned, so the load runs on its named threads, not on this one.
        results.push(load.block_on(load.spawn(round)).unwrap());
    }
    println!("{}", summary(results));
}

/// The median round by creates/s, with every round's figures and the first
/// round's memory.
fn summary(mut rounds: Vec<serde_json::Value>) -> serde_json::Value {
    let first_bytes = rounds[0]["bytes_per_stored_object"].clone();
    let figure = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    let creates: Vec<f64> = rounds.iter().map(|r| figure(r, "creates_per_s")).collect();
    let completed: Vec<f64> = rounds
        .iter()
        .map(|r| figure(r, "jobs_completed_per_s"))
        .collect();
    let cluster_cpu: Vec<f64> = rounds
        .iter()
        .map(|r| figure(r, "devcluster_cpu_us_per_job"))
        .collect();
    let all_complete = rounds.iter().all(|r| r["all_complete"] == true);
    rounds.sort_by(|a, b| figure(a, "creates_per_s").total_cmp(&figure(b, "creates_per_s")));
    let mut line = rounds.swap_remove(rounds.len() / 2);
    line["bytes_per_stored_object"] = first_bytes;
    line["all_complete"] = json!(all_complete);
    line["rounds"] = json!(creates.len());
    line["rounds_creates_per_s"] = json!(creates);
    line["rounds_jobs_completed_per_s"] = json!(completed);
    line["rounds_devcluster_cpu_us_per_job"] = json!(cluster_cpu);
    line
}

/// When each Job's create was sent, and the latency to its ADDED event.
#[derive(Default)]
struct Timings {
    created_at: Mutex<HashMap<String, Instant>>,
    latencies: Mutex<Vec<f64>>,
}

async fn run(
    cluster: tokio::runtime::Handle,
    jobs_n: usize,
    concurrency: usize,
) -> serde_json::Value {
    let rss_before = rss_bytes();
    let (dev, api) = start(&cluster, jobs_n).await;
    let timings = Arc::new(Timings::default());
    let (watch_task, mut complete_rx) = watch_completions(&dev, &api, jobs_n, &timings).await;

    let cpu = CpuSpent::start();
    let start = Instant::now();
    create_jobs(&api, jobs_n, concurrency, &timings).await;
    let create_secs = start.elapsed().as_secs_f64();
    let completed = tokio::time::timeout(Duration::from_secs(280), complete_rx.recv())
        .await
        .ok()
        .flatten()
        .is_some();
    let all_done_secs = start.elapsed().as_secs_f64();
    // Every Job's whole life: its create, its pod run to completion, the
    // status updates and the watch events each of those sends.
    let (cluster_us, load_us) = cpu.per_job(jobs_n);
    watch_task.abort();
    let mut saturated = timings.latencies.lock().unwrap().clone();
    saturated.sort_by(f64::total_cmp);
    let lat = probe_latency(&dev, &api, 500).await;

    let objects = dev.cluster().lock().len();
    let rss_after = rss_bytes();
    let line = json!({
        "bench": "devcluster",
        "jobs": jobs_n,
        "concurrency": concurrency,
        "creates_per_s": jobs_n as f64 / create_secs,
        "all_complete": completed,
        "jobs_completed_per_s": if completed { jobs_n as f64 / all_done_secs } else { 0.0 },
        "devcluster_cpu_us_per_job": cluster_us,
        "devcluster_jobs_per_core_s": if cluster_us > 0.0 { 1e6 / cluster_us } else { 0.0 },
        "load_cpu_us_per_job": load_us,
        "watch_latency_ms_p50": percentile(&lat, 0.5),
        "watch_latency_ms_p99": percentile(&lat, 0.99),
        "watch_latency_probes": lat.len(),
        "saturated_watch_latency_ms_p50": percentile(&saturated, 0.5),
        "saturated_watch_latency_ms_p99": percentile(&saturated, 0.99),
        "stored_objects": objects,
        "bytes_per_stored_object": if objects > 0 {
            rss_after.saturating_sub(rss_before) / objects as u64
        } else {
            0
        },
    });
    cluster.spawn(dev.shutdown()).await.unwrap();
    line
}

/// A dev cluster with simulated pods that finish at once, and a client.
async fn start(cluster: &tokio::runtime::Handle, jobs_n: usize) -> (DevCluster, Api<Job>) {
    let mut config = DevClusterConfig::default();
    config.kubelet.mode = KubeletMode::Simulated;
    config.kubelet.default_duration_ms = 0;
    config.store.history = jobs_n * 20;
    // Started on its runtime: the server, controller and kubelet tasks stay there.
    let dev = cluster
        .spawn(DevCluster::start("127.0.0.1:0".parse().unwrap(), config))
        .await
        .unwrap()
        .unwrap();
    let kubeconfig = Kubeconfig::from_yaml(&dev.kubeconfig()).unwrap();
    let client = Client::try_from(
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap(),
    )
    .unwrap();
    (dev, Api::namespaced(client, "default"))
}

/// The watch: when each Job's ADDED and Complete arrive; the receiver gets
/// a message once every Job completed. A watch the server ends (a watcher
/// that fell too far behind is cut, as the real API server's cacher cuts
/// it) resumes from the last revision seen, as client-go and kube-rs do.
async fn watch_completions(
    dev: &DevCluster,
    api: &Api<Job>,
    jobs_n: usize,
    timings: &Arc<Timings>,
) -> (tokio::task::JoinHandle<()>, tokio::sync::mpsc::Receiver<()>) {
    let (complete_tx, complete_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut rv = dev.cluster().revision().to_string();
    let timings = timings.clone();
    let api = api.clone();
    let task = tokio::spawn(async move {
        let mut complete = 0;
        let mut resumes = 0;
        while resumes < 100 {
            let Ok(stream) = api.watch(&WatchParams::default().timeout(290), &rv).await else {
                return;
            };
            let mut stream = stream.boxed();
            while let Some(ev) = stream.next().await {
                let seen = Instant::now();
                match ev {
                    Ok(WatchEvent::Added(j)) => {
                        rv = j.metadata.resource_version.clone().unwrap_or(rv);
                        let name = j.metadata.name.unwrap_or_default();
                        if let Some(t) = timings.created_at.lock().unwrap().get(&name) {
                            let ms = (seen - *t).as_secs_f64() * 1e3;
                            timings.latencies.lock().unwrap().push(ms);
                        }
                    }
                    Ok(WatchEvent::Modified(j)) => {
                        rv = j.metadata.resource_version.clone().unwrap_or(rv);
                        let done = j
                            .status
                            .and_then(|s| s.conditions)
                            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Complete"));
                        if done {
                            complete += 1;
                            if complete == jobs_n {
                                let _ = complete_tx.send(()).await;
                                return;
                            }
                        }
                    }
                    _ => {}
                }
            }
            resumes += 1;
        }
    });
    (task, complete_rx)
}

/// Creates `jobs_n` Jobs from `concurrency` workers.
async fn create_jobs(api: &Api<Job>, jobs_n: usize, concurrency: usize, timings: &Arc<Timings>) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (api, next, timings) = (api.clone(), next.clone(), timings.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= jobs_n {
                    return;
                }
                let name = format!("dagster-run-{i:08}");
                let t = Instant::now();
                api.create(&PostParams::default(), &job(&name))
                    .await
                    .unwrap();
                // Latency runs from the moment the client sent the create.
                timings.created_at.lock().unwrap().insert(name, t);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
}

/// Watch latency off saturation: one create at a time, each timed from the
/// request to its ADDED event on an open watch. Sorted.
async fn probe_latency(dev: &DevCluster, api: &Api<Job>, probe_n: usize) -> Vec<f64> {
    let rv = dev.cluster().revision().to_string();
    let mut probe = api
        .watch(&WatchParams::default().timeout(120), &rv)
        .await
        .unwrap()
        .boxed();
    let mut lat = Vec::with_capacity(probe_n);
    for i in 0..probe_n {
        let name = format!("probe-{i:05}");
        let t = Instant::now();
        api.create(&PostParams::default(), &job(&name))
            .await
            .unwrap();
        loop {
            match probe.next().await {
                Some(Ok(WatchEvent::Added(j))) if j.metadata.name.as_deref() == Some(&name) => {
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                    break;
                }
                Some(_) => {}
                None => panic!("probe watch ended"),
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    lat
}
