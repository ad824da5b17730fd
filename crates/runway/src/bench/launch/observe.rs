//! When each Job completed in the dev cluster's store, and when WatchRuns
//! reported it: the completion latency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use tonic::transport::Channel;

use super::Error;
use crate::bench::sorted;
use runway_devcluster::validate::Kind;
use runway_devcluster::DevCluster;
use runway_proto as proto;
use runway_proto::run_launcher_client::RunLauncherClient;
use runway_proto::WorkerStatus;

pub(super) type Times = Arc<Mutex<HashMap<String, Instant>>>;

/// Milliseconds from the store's Complete to WatchRuns' SUCCESS, per Job.
pub(super) fn watch_latency(done: &Times, seen: &Times, pick: impl Fn(&str) -> bool) -> Vec<f64> {
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

/// Records when the store saw each Job complete.
pub(super) fn record_completions(dev: &DevCluster) -> (Times, tokio::task::JoinHandle<()>) {
    let completed_at: Times = Arc::default();
    let (_, mut store_rx) = dev.cluster().snapshot_and_subscribe(&[Kind::Job]);
    let task = {
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
                let job = e.object.value();
                let done = job["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Complete" && c["status"] == "True")
                });
                if done {
                    completed_at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(e.object.name().to_owned())
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    (completed_at, task)
}

/// Records when WatchRuns reported each Job's SUCCESS.
pub(super) async fn record_successes(
    client: &mut RunLauncherClient<Channel>,
) -> Result<(Times, tokio::task::JoinHandle<()>), Error> {
    let seen_at: Times = Arc::default();
    let mut stream = client
        .watch_runs(proto::WatchRunsRequest::default())
        .await?
        .into_inner();
    let task = {
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
    Ok((seen_at, task))
}

/// Waits until `seen` holds `n` Jobs, or `within` passes.
pub(super) async fn wait_seen(seen: &Times, n: usize, within: std::time::Duration) {
    let deadline = Instant::now() + within;
    while seen.lock().unwrap_or_else(|p| p.into_inner()).len() < n && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
