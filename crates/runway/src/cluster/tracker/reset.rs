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

    /// What the watches had delivered when a probe was sent.
    pub fn watermark(&self) -> Watermark {
        Watermark {
            seen: self.seen.load(Ordering::Relaxed),
            generation: *self.restart.borrow(),
        }
    }

    /// Whether the probe's answer (`current`, the list's resourceVersion)
    /// shows the cluster went back in time. It is compared with what the
    /// watches had delivered before the probe was sent: a watch event that
    /// arrives while the list is answered may be newer than the list, and
    /// comparing with it took that race for a reset and relisted every
    /// few probes under a steady flow of events. A restart meanwhile
    /// already relists.
    pub fn went_back(&self, before: Watermark, current: Option<&str>) -> bool {
        let Some(current) = current.and_then(|v| v.parse::<u64>().ok()) else {
            return false;
        };
        current < before.seen && *self.restart.borrow() == before.generation
    }

    /// Restarts the namespace's watches from a fresh list.
    pub fn restart(&self) {
        self.seen.store(0, Ordering::Relaxed);
        self.restart.send_modify(|g| *g += 1);
    }
}

/// A namespace's newest delivered resourceVersion and its watches'
/// generation, taken before a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    seen: u64,
    generation: u64,
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
            let before = state.watermark();
            match api.list_metadata(&params).await {
                Ok(list) => {
                    self.set_reachable(&namespace, &state, None);
                    let current = list.metadata.resource_version.as_deref();
                    self.check_for_reset(&namespace, &state, before, current);
                }
                Err(e) => self.set_reachable(&namespace, &state, Some(e.to_string())),
            }
        }
    }

    fn check_for_reset(
        &self,
        namespace: &str,
        state: &Namespace,
        before: Watermark,
        current: Option<&str>,
    ) {
        if state.went_back(before, current) {
            tracing::warn!(
                %namespace,
                seen = before.seen,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_newer_than_the_probes_answer_is_no_reset() {
        let ns = Namespace::new();
        ns.saw(Some("100"));
        let before = ns.watermark();
        // The watch delivers 150 while the list is answered at 120.
        ns.saw(Some("150"));
        assert!(!ns.went_back(before, Some("120")));
        assert!(!ns.went_back(before, Some("100")));
        assert_eq!(ns.watermark().seen, 150);
    }

    #[test]
    fn an_answer_below_what_was_delivered_before_the_probe_is_a_reset() {
        let ns = Namespace::new();
        ns.saw(Some("100"));
        let before = ns.watermark();
        assert!(ns.went_back(before, Some("3")));
        assert!(ns.went_back(before, Some("99")));
    }

    #[test]
    fn a_restart_during_the_probe_or_an_unreadable_version_decides_nothing() {
        let ns = Namespace::new();
        ns.saw(Some("100"));
        let before = ns.watermark();
        assert!(!ns.went_back(before, Some("not-a-number")));
        assert!(!ns.went_back(before, None));
        let generation = ns.generation();
        ns.restart();
        assert!(generation.has_changed().unwrap());
        assert!(!ns.went_back(before, Some("3")));
        // A fresh watermark after the restart starts from nothing.
        assert!(!ns.went_back(ns.watermark(), Some("3")));
    }
}
