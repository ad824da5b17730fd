//! The scheduler and the kubelet. The scheduler binds pending pods to nodes
//! that match their nodeSelector and required node affinity and have room
//! for their requests; the rest stay Pending with PodScheduled=False. The
//! kubelet then runs each bound pod:
//! - `process` mode: every container's command and args run as a local
//!   process group with the container's env, envFrom and working dir; stdout
//!   and stderr become the pod log; a memory limit is enforced by watching the
//!   group's RSS (OOMKilled, exit 137); deletion sends SIGTERM, then SIGKILL
//!   when the grace period ends. Images are not pulled: a catalogue of glob
//!   patterns says which exist, and any other gives ErrImagePull, then
//!   ImagePullBackOff, with Events.
//! - `simulated` mode: containers "run" for a duration and exit with a code,
//!   both from annotations, on the cluster clock (virtual in tests), so load
//!   tests can run very many pods.
//!
//! Layout: `scheduler` (placement and binding), `pod` (one bound pod's
//! lifecycle: image pulls, back-off, deletion), `process` and `simulated`
//! (the two ways containers run), `env` (a container's environment),
//! `status` (container statuses and the pod phase and conditions), `images`
//! (the image catalogue).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::api::Cluster;
use super::faults::Faults;
use super::logs::LogStore;
use super::store::{EventType, Phase, Stored};
use super::validate::Kind;

mod env;
mod images;
mod pod;
mod process;
mod scheduler;
mod simulated;
mod status;

pub use images::{glob_match, image_exists};
pub use scheduler::{node_matches, parse_quantity};

/// Annotations that script a pod (on the Job's pod template, or on the Job).
pub const ANN_DURATION_MS: &str = "runway.dev/duration-ms";
pub const ANN_EXIT_CODE: &str = "runway.dev/exit-code";
pub const ANN_LOG: &str = "runway.dev/log";
/// One of ErrImagePull, ImagePullBackOff, CrashLoopBackOff,
/// CreateContainerConfigError, OOMKilled, Evicted, Never (runs forever).
pub const ANN_SCENARIO: &str = "runway.dev/scenario";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeletMode {
    Process,
    Simulated,
}

/// One node: its name, labels and allocatable capacity.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub max_pods: i64,
}

impl NodeConfig {
    pub fn new(name: &str) -> NodeConfig {
        let labels = [
            ("kubernetes.io/hostname", name),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        NodeConfig {
            name: name.to_owned(),
            labels,
            cpu_millis: 64_000,
            memory_bytes: 256 << 30,
            max_pods: 110_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub mode: KubeletMode,
    pub nodes: Vec<NodeConfig>,
    /// Glob patterns (`*` matches any run of characters) of the images that
    /// exist; a pattern starting with `!` excludes, and the last match wins.
    pub images: Vec<String>,
    /// Where pods without an existing workingDir run (one folder per pod).
    pub root: PathBuf,
    /// First image-pull back-off; doubles up to five minutes, as a real kubelet.
    pub pull_backoff: Duration,
    /// Simulated mode: how long a container runs without an annotation.
    pub default_duration_ms: i64,
    /// How often the scheduler and the simulated containers are checked.
    pub tick: Duration,
    /// Environment every process gets before the container's own (PATH, HOME, ...).
    pub base_env: Vec<(String, String)>,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        let base_env = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .collect();
        KubeletConfig {
            mode: KubeletMode::Process,
            nodes: ["devmaster1", "devmaster2", "devmaster3"]
                .into_iter()
                .map(NodeConfig::new)
                .collect(),
            images: vec!["*".to_owned()],
            root: std::env::temp_dir().join("runway-dev-cluster"),
            pull_backoff: Duration::from_secs(1),
            default_duration_ms: 100,
            tick: Duration::from_millis(20),
            base_env,
        }
    }
}

/// A pod's namespace and name.
type PodKey = (String, String);

/// The handles the scheduler and every pod task share.
#[derive(Debug, Clone)]
struct Kubelet {
    cluster: Arc<Cluster>,
    logs: Arc<LogStore>,
    config: Arc<KubeletConfig>,
}

#[derive(Debug, Default)]
struct State {
    /// Pods waiting for a node, in arrival order.
    pending: BTreeMap<u64, PodKey>,
    next_seq: u64,
    /// Resources held by bound, unfinished pods.
    bound: HashMap<PodKey, scheduler::Bound>,
    /// What the bound pods hold, per node.
    usage: HashMap<String, scheduler::Usage>,
    /// Pods the kubelet runs: the sender tells the pod's task about deletion.
    running: HashMap<PodKey, watch::Sender<Option<i64>>>,
    /// The last Unschedulable message written per pod.
    unschedulable: HashMap<PodKey, String>,
    next_ip: u32,
}

/// Runs until `stop` turns true.
pub async fn run_kubelet(
    cluster: Arc<Cluster>,
    logs: Arc<LogStore>,
    faults: Arc<Faults>,
    config: KubeletConfig,
    mut stop: watch::Receiver<bool>,
) {
    let kubelet = Kubelet {
        cluster,
        logs,
        config: Arc::new(config),
    };
    let cluster = &kubelet.cluster;
    let mut state = State::default();
    let mut rx = resync(cluster, &mut state);
    let mut ticker = tokio::time::interval(kubelet.config.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    for (_, tx) in state.running.drain() {
                        // Stop every process at once: the cluster goes away.
                        let _ = tx.send(Some(0));
                    }
                    return;
                }
            }
            _ = ticker.tick() => {}
            ev = rx.recv() => match ev {
                Ok(e) if e.kind == Kind::Pod => observe(cluster, &kubelet.logs, &mut state, e.ty, &e.object),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => rx = resync(cluster, &mut state),
                Err(RecvError::Closed) => return,
            }
        }
        if faults.kubelet_paused() {
            continue;
        }
        scheduler::schedule(&kubelet, &mut state);
    }
}

fn resync(
    cluster: &Cluster,
    state: &mut State,
) -> tokio::sync::broadcast::Receiver<Arc<super::store::Event>> {
    let (lists, rx) = cluster.snapshot_and_subscribe(&[Kind::Pod]);
    let pods = lists.into_iter().next().unwrap_or_default();
    state.pending.clear();
    for pod in pods {
        let key = pod.key();
        if !pod.bound() && !pod.deleting() {
            state.next_seq += 1;
            state.pending.insert(state.next_seq, key);
        }
    }
    rx
}

fn observe(cluster: &Cluster, logs: &LogStore, state: &mut State, ty: EventType, pod: &Stored) {
    let key = pod.key();
    let unbound = !pod.bound();
    match ty {
        EventType::Added if unbound => {
            state.next_seq += 1;
            state.pending.insert(state.next_seq, key);
        }
        EventType::Deleted => {
            scheduler::release(state, &key);
            state.unschedulable.remove(&key);
            state.pending.retain(|_, k| *k != key);
            if let Some(tx) = state.running.remove(&key) {
                let _ = tx.send(Some(0));
            }
            logs.remove_pod(&key.0, &key.1);
        }
        _ => {
            if pod.deleting() {
                let deadline = pod.value()["metadata"]["deletionTimestamp"]
                    .as_str()
                    .and_then(super::clock::parse_rfc3339)
                    .unwrap_or(0);
                match state.running.get(&key) {
                    Some(tx) => {
                        let _ = tx.send(Some(deadline));
                    }
                    // Nothing runs for it (unbound, or already finished): done at once.
                    None => {
                        let _ = cluster.finish_pod_deletion(&key.0, &key.1);
                    }
                }
            }
            if pod.phase() != Phase::Other {
                scheduler::release(state, &key);
            }
        }
    }
}

#[cfg(test)]
mod tests;
