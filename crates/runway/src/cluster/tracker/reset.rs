//! Noticing a cluster that lost its state. kube-runtime's watcher relists on
//! 410 Gone, but an API server restarted empty (its etcd wiped or replaced)
//! answers a resume from an old resourceVersion with "Too large resource
//! version", or holds the watch until it catches up, and never says 410:
//! the index would keep Jobs that no longer exist. So each namespace is
//! probed: a one-item list gives the store's current resourceVersion; one
//! below what the watches already saw means the cluster went back in time,
//! and the namespace's watches restart from a fresh list, which drops what is
//! gone. The probe also tells `/ready` whether the API is reachable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::sync::watch;

use super::{selector, Tracker};

/// How often each namespace is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// One namespace's watches: the newest resourceVersion they delivered and a
/// generation that, when bumped, restarts them.
#[derive(Debug)]
pub struct Namespace {
    seen: AtomicU64,
    restart: watch::Sender<u64>,
    reachable: AtomicBool,
}

impl Namespace {
    pub fn new() -> Arc<Namespace> {
        Arc::new(Namespace {
            seen: AtomicU64::new(0),
            restart: watch::Sender::new(0),
            reachable: AtomicBool::new(true),
        })
    }

    /// Records an object's resourceVersion. They are etcd revisions on every
    /// real cluster (and the dev cluster); one that is not a number is left
    /// out, which only switches the check off.
    pub fn saw(&self, resource_version: Option<&str>) {
        if let Some(rv) = resource_version.and_then(|v| v.parse::<u64>().ok()) {
            self.seen.fetch_max(rv, Ordering::Relaxed);
        }
    }

    pub fn generation(&self) -> watch::Receiver<u64> {
        self.restart.subscribe()
    }

    /// Restarts the namespace's watches from a fresh list.
    pub fn restart(&self) {
        self.seen.store(0, Ordering::Relaxed);
        self.restart.send_modify(|g| *g += 1);
    }
}

/// The namespaces' states, by name.
pub type Namespaces = HashMap<String, Arc<Namespace>>;

/// Whether a watch error says the server is behind the resourceVersion asked for.
pub fn too_large_resource_version(error: &str) -> bool {
    error.contains("Too large resource version") || error.contains("ResourceVersionTooLarge")
}

impl Tracker {
    /// Probes one namespace until `stop` turns true.
    pub(super) async fn probe(
        self: Arc<Self>,
        client: Client,
        namespace: String,
        mut stop: watch::Receiver<bool>,
    ) {
        let api: Api<Job> = Api::namespaced(client, &namespace);
        let params = ListParams::default().labels(&selector()).limit(1);
        let Some(state) = self.namespace_state(&namespace) else {
            return;
        };
        let mut every = tokio::time::interval(PROBE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = crate::stop::stopped(&mut stop) => return,
                _ = every.tick() => {}
            }
            match api.list_metadata(&params).await {
                Ok(list) => {
                    self.set_reachable(&namespace, &state, None);
                    let current = list.metadata.resource_version.as_deref();
                    self.check_for_reset(&namespace, &state, current);
                }
                Err(e) => self.set_reachable(&namespace, &state, Some(e.to_string())),
            }
        }
    }

    fn check_for_reset(&self, namespace: &str, state: &Namespace, current: Option<&str>) {
        let Some(current) = current.and_then(|v| v.parse::<u64>().ok()) else {
            return;
        };
        let seen = state.seen.load(Ordering::Relaxed);
        if current < seen {
            tracing::warn!(
                %namespace,
                seen,
                current,
                "the Kubernetes API's resourceVersion went back: the cluster lost its state; \
                 relisting, and dropping what is gone"
            );
            self.metrics.cluster_resets.inc();
            state.restart();
        }
    }

    /// Records the probe's outcome; a change is logged once, at WARN when the
    /// API becomes unreachable. `/ready` wants every namespace reachable.
    fn set_reachable(&self, namespace: &str, state: &Namespace, error: Option<String>) {
        let ok = error.is_none();
        let changed = state.reachable.swap(ok, Ordering::Relaxed) != ok;
        let all = self
            .namespace_states
            .values()
            .all(|n| n.reachable.load(Ordering::Relaxed));
        self.reachable
            .send_if_modified(|r| std::mem::replace(r, all) != all);
        match (changed, error) {
            (true, Some(e)) => {
                tracing::warn!(%namespace, error = %e, "the Kubernetes API is unreachable")
            }
            (true, None) => tracing::info!(%namespace, "the Kubernetes API is reachable again"),
            _ => {}
        }
    }
}
