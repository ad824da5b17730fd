//! Keeps the watch index: one labelled watch over Jobs and one over Pods per
//! namespace, plus one over Events, each through kube-runtime's watcher
//! (bookmarks on; 410 Gone -> relist, which the index reconciles without
//! losing or repeating a transition). Transitions go out on a bounded
//! broadcast: a subscriber that falls behind loses its place, never slows
//! the watches.

use std::fmt::Debug;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::runtime::watcher::{self, watcher, Event as WatchEvent};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::slim::{SlimJob, SlimPod};
use crate::metrics::{KindLabel, Metrics};

mod reset;

use reset::{too_large_resource_version, Namespace, Namespaces};
use runway_core::track::index::Kind;
use runway_core::track::{Index, Transition};

/// The label every Job and pod Runway creates carries, next to Dagster's own.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "runway");

/// The watches' label selector.
/// Labels a Job and its pods as Runway's, so the watches select them.
pub fn add_managed_by(job: &mut serde_json::Value) {
    for path in ["/metadata/labels", "/spec/template/metadata/labels"] {
        if let Some(map) = job
            .pointer_mut(path)
            .and_then(serde_json::Value::as_object_mut)
        {
            map.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
        }
    }
}

pub fn selector() -> String {
    format!(
        "app.kubernetes.io/part-of=dagster,{}={}",
        MANAGED_BY.0, MANAGED_BY.1
    )
}

/// A transition with the time the watch delivered it.
#[derive(Debug, Clone)]
pub struct Stamped {
    pub transition: Transition,
    pub observed_at_micros: i64,
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// The shared index and its watches.
#[derive(Debug)]
pub struct Tracker {
    index: RwLock<Index>,
    tx: broadcast::Sender<Arc<Stamped>>,
    synced: watch::Sender<usize>,
    metrics: Arc<Metrics>,
    namespaces: Vec<String>,
    namespace_states: Namespaces,
    /// Every namespace's probe reached the API the last time it tried.
    reachable: watch::Sender<bool>,
}

impl Tracker {
    /// `capacity` bounds the transitions a subscriber may lag behind.
    pub fn new(
        namespaces: Vec<String>,
        unschedulable_grace_secs: i64,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Arc<Tracker> {
        let (tx, _) = broadcast::channel(capacity.max(16));
        let namespace_states = namespaces
            .iter()
            .map(|n| (n.clone(), Namespace::new()))
            .collect();
        Arc::new(Tracker {
            index: RwLock::new(Index::new(unschedulable_grace_secs)),
            tx,
            synced: watch::Sender::new(0),
            metrics,
            namespaces,
            namespace_states,
            reachable: watch::Sender::new(true),
        })
    }

    /// Whether the Kubernetes API answers (false once a probe failed).
    pub fn reachable(&self) -> watch::Receiver<bool> {
        self.reachable.subscribe()
    }

    fn namespace_state(&self, namespace: &str) -> Option<Arc<Namespace>> {
        self.namespace_states.get(namespace).cloned()
    }

    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    pub fn watches(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == namespace)
    }

    /// Read access to the index.
    pub fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stamped>> {
        self.tx.subscribe()
    }

    /// Every watch has delivered its first full list.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow() >= self.namespaces.len() * 3
    }

    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        let need = self.namespaces.len() * 3;
        tokio::time::timeout(timeout, rx.wait_for(|n| *n >= need))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Applies a change under the write lock and publishes what it caused.
    pub fn update(&self, f: impl FnOnce(&mut Index, i64, &mut Vec<Transition>)) {
        let mut out = Vec::new();
        {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            f(&mut index, now_secs(), &mut out);
            self.metrics.index_jobs.set(index.job_count() as i64);
            self.metrics.index_pods.set(index.pod_count() as i64);
            self.metrics.index_runs.set(index.run_count() as i64);
            // Sent under the lock, so subscribers see transitions in index order.
            if !out.is_empty() {
                let at = now_micros();
                for t in out.drain(..) {
                    self.metrics.transitions.inc();
                    let _ = self.tx.send(Arc::new(Stamped {
                        transition: t,
                        observed_at_micros: at,
                    }));
                }
            }
        }
    }

    /// Starts the watches and the grace-period ticker; they end when `stop` turns true.
    pub fn spawn(
        self: &Arc<Self>,
        client: &Client,
        stop: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        let labelled = watcher::Config::default().labels(&selector());
        for ns in &self.namespaces {
            tasks.push(tokio::spawn(self.clone().watch::<SlimJob>(
                Api::namespaced(client.clone(), ns),
                labelled.clone(),
                Kind::Job,
                ns.clone(),
                stop.clone(),
            )));
            tasks.push(tokio::spawn(self.clone().watch::<SlimPod>(
                Api::namespaced(client.clone(), ns),
                labelled.clone(),
                Kind::Pod,
                ns.clone(),
                stop.clone(),
            )));
            // Warnings only: they are what health and pod debug info read,
            // and the Normal events of every pod would be most of the traffic.
            tasks.push(tokio::spawn(self.clone().watch::<Event>(
                Api::namespaced(client.clone(), ns),
                watcher::Config::default().fields("type=Warning"),
                Kind::Event,
                ns.clone(),
                stop.clone(),
            )));
        }
        for ns in &self.namespaces {
            tasks.push(tokio::spawn(self.clone().probe(
                client.clone(),
                ns.clone(),
                stop.clone(),
            )));
        }
        let this = self.clone();
        let mut stop_tick = stop;
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = crate::stop::stopped(&mut stop_tick) => return,
                    _ = every.tick() => this.update(|ix, now, out| ix.tick(now, out)),
                }
            }
        }));
        tasks
    }

    async fn watch<K>(
        self: Arc<Self>,
        api: Api<K>,
        config: watcher::Config,
        kind: Kind,
        namespace: String,
        mut stop: watch::Receiver<bool>,
    ) where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K: Applies,
    {
        let label = KindLabel {
            kind: match kind {
                Kind::Job => "jobs",
                Kind::Pod => "pods",
                Kind::Event => "events",
            },
        };
        let Some(state) = self.namespace_state(&namespace) else {
            return;
        };
        let mut generation = state.generation();
        // Events may live in an etcd of their own: only Jobs' and pods'
        // resourceVersions are compared with the store's.
        let counts = kind != Kind::Event;
        let mut synced = false;
        'restart: loop {
            let stream = watcher(api.clone(), config.clone()).default_backoff();
            let mut stream = std::pin::pin!(stream);
            loop {
                let next = tokio::select! {
                    _ = crate::stop::stopped(&mut stop) => return,
                    _ = generation.changed() => continue 'restart,
                    next = stream.next() => next,
                };
                match next {
                    None => return,
                    Some(Ok(WatchEvent::Init)) => {
                        self.metrics.watch_relists.get_or_create(&label).inc();
                        self.update(|ix, _, _| ix.begin_relist(kind, &namespace));
                    }
                    Some(Ok(WatchEvent::InitApply(obj) | WatchEvent::Apply(obj))) => {
                        if counts {
                            state.saw(obj.meta().resource_version.as_deref());
                        }
                        self.update(|ix, now, out| obj.apply(ix, now, out));
                    }
                    Some(Ok(WatchEvent::Delete(obj))) => {
                        if counts {
                            state.saw(obj.meta().resource_version.as_deref());
                        }
                        self.update(|ix, now, out| obj.delete(ix, now, out));
                    }
                    Some(Ok(WatchEvent::InitDone)) => {
                        self.update(|ix, now, out| ix.end_relist(kind, &namespace, now, out));
                        if !synced {
                            synced = true;
                            self.synced.send_modify(|n| *n += 1);
                        }
                    }
                    Some(Err(e)) => {
                        self.metrics.watch_restarts.get_or_create(&label).inc();
                        let text = e.to_string();
                        if too_large_resource_version(&text) {
                            // The server is behind what the watch resumes
                            // from: it lost its state. kube-runtime would
                            // retry the same resourceVersion forever.
                            tracing::warn!(kind = label.kind, %namespace, error = %text, "the Kubernetes API is behind the watch; relisting");
                            self.metrics.cluster_resets.inc();
                            state.restart();
                        } else {
                            tracing::warn!(kind = label.kind, %namespace, error = %text, "watch failed; restarting");
                        }
                    }
                }
            }
        }
    }
}

/// How each watched kind enters the index.
pub trait Applies {
    fn apply(&self, index: &mut Index, now: i64, out: &mut Vec<Transition>);
    fn delete(&self, index: &mut Index, now: i64, out: &mut Vec<Transition>);
}

// The watches decode only what the index reads (see `slim`).
impl Applies for SlimJob {
    fn apply(&self, index: &mut Index, now: i64, out: &mut Vec<Transition>) {
        index.apply_job(&self.to_job(), now, out);
    }
    fn delete(&self, index: &mut Index, _now: i64, out: &mut Vec<Transition>) {
        index.delete_job(&self.to_job(), out);
    }
}

impl Applies for SlimPod {
    fn apply(&self, index: &mut Index, now: i64, out: &mut Vec<Transition>) {
        index.apply_pod(&self.to_pod(), now, out);
    }
    fn delete(&self, index: &mut Index, now: i64, out: &mut Vec<Transition>) {
        index.delete_pod(&self.to_pod(), now, out);
    }
}

impl Applies for Event {
    fn apply(&self, index: &mut Index, now: i64, out: &mut Vec<Transition>) {
        index.apply_event(self, now, out);
    }
    fn delete(&self, _index: &mut Index, _now: i64, _out: &mut Vec<Transition>) {
        // An expired event still explains what happened; relists prune them.
    }
}
