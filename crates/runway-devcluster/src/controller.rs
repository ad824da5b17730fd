//! The Job controller, as kube-controller-manager's behaves for the fields
//! Dagster uses: pods from the template with owner references and the
//! job-tracking finalizer, status counters, backoffLimit with pod-failure
//! backoff, activeDeadlineSeconds, completions and parallelism, suspend,
//! conditions with their reasons, and the TTL-after-finished controller.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::api::Cluster;
use super::faults::Faults;
use super::store::{EventType, Phase, Stored};
use super::validate::Kind;

mod pods;
mod reconcile;
#[cfg(test)]
mod tests;

use pods::{controller_owner, has_tracking_finalizer, release_finalizer};
use reconcile::reconcile;

const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
const COMPONENT: &str = "job-controller";

/// Controller settings.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Delay before recreating a pod after the first failure; doubles per
    /// failure up to `max_backoff` (kube-controller-manager: 10 s and 6 min).
    pub pod_failure_backoff: Duration,
    pub max_backoff: Duration,
    /// How often time-based rules (deadlines, TTL, backoff) are checked.
    pub tick: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            pod_failure_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(360),
            tick: Duration::from_millis(100),
        }
    }
}

type JobKey = (String, String);

/// What a Job's reconcile reads of one of its pods (its uid aside, which
/// only changes through a delete and a new pod). A pod update that changes
/// none of it (the scheduler's binding, a container waiting, then running
/// before it is ready) cannot change the Job's status or its pods, so it
/// does not queue the Job: the dev cluster bench under callgrind runs one
/// Job reconcile in eight fewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PodBits {
    phase: Phase,
    ready: bool,
    deleting: bool,
    tracked: bool,
}

impl PodBits {
    fn of(pod: &Stored) -> PodBits {
        PodBits {
            phase: pod.phase(),
            ready: pod.ready(),
            deleting: pod.deleting(),
            tracked: has_tracking_finalizer(pod),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Pods (namespace, name) by owning Job uid, with what their Job last
    /// saw of them.
    pods_by_owner: HashMap<String, BTreeMap<JobKey, PodBits>>,
    /// The uid pods name as their owner, by the owner's (namespace, name).
    owner_uid: HashMap<JobKey, String>,
    /// Pod uids already counted into a Job's succeeded/failed.
    counted: HashSet<String>,
    /// Jobs to reconcile.
    dirty: BTreeSet<JobKey>,
    /// Jobs with a time-based rule pending (deadline, back-off, TTL), by the
    /// time (ms) it falls due; a tick reconciles only the Jobs now due, as
    /// kube-controller-manager's delayed queues do. Reconciling every Job
    /// that waits for its TTL on every tick was most of the controller's
    /// time once thousands of Jobs had finished.
    timed: BTreeMap<JobKey, i64>,
    /// Earliest time (ms) a Job may create pods again after a failure.
    backoff_until: HashMap<String, i64>,
    /// The revision of each Job's last status write by this controller whose
    /// own event needs no pass: the pass that wrote it saw everything the
    /// next one would (a pass that finishes the Job is not recorded: the
    /// next one applies its TTL).
    own_writes: HashMap<JobKey, u64>,
    /// Pods this controller created whose ADDED event has not arrived yet:
    /// their bits were recorded at creation, so that event changes nothing.
    created: HashSet<JobKey>,
    /// Pods with the tracking finalizer and no controlling Job (an Orphan
    /// delete strips the owner reference): kube-controller-manager releases
    /// them at once, or they could never be deleted.
    orphans: BTreeSet<JobKey>,
}

/// Runs until `stop` turns true.
pub async fn run_job_controller(
    cluster: Arc<Cluster>,
    faults: Arc<Faults>,
    config: ControllerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut state = State::default();
    let mut rx = resync(&cluster, &mut state);
    let mut ticker = tokio::time::interval(config.tick);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    return;
                }
            }
            _ = ticker.tick() => {
                let now = cluster.clock.now_ms();
                let due = state.timed.iter().filter(|(_, at)| **at <= now);
                let due: Vec<JobKey> = due.map(|(key, _)| key.clone()).collect();
                state.dirty.extend(due);
            }
            ev = rx.recv() => match ev {
                Ok(e) => observe(&mut state, e.kind, e.ty, &e.object),
                Err(RecvError::Lagged(_)) => rx = resync(&cluster, &mut state),
                Err(RecvError::Closed) => return,
            }
        }
        if faults.controller_paused() {
            continue;
        }
        // Drain whatever else is queued before reconciling, so a burst of
        // pod updates costs one reconcile per Job.
        loop {
            match rx.try_recv() {
                Ok(e) => observe(&mut state, e.kind, e.ty, &e.object),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {
                    rx = resync(&cluster, &mut state);
                }
                Err(_) => break,
            }
        }
        let dirty = std::mem::take(&mut state.dirty);
        for key in dirty {
            reconcile(&cluster, &config, &mut state, &key);
        }
        for (ns, name) in std::mem::take(&mut state.orphans) {
            if let Ok(pod) = cluster.get(Kind::Pod, &ns, &name) {
                if controller_owner(&pod).is_none() {
                    let _ = release_finalizer(&cluster, &pod);
                }
            }
        }
    }
}

/// Subscribes and rebuilds the index from a full list.
fn resync(
    cluster: &Cluster,
    state: &mut State,
) -> tokio::sync::broadcast::Receiver<Arc<super::store::Event>> {
    let (lists, rx) = cluster.snapshot_and_subscribe(&[Kind::Pod, Kind::Job]);
    state.pods_by_owner.clear();
    state.owner_uid.clear();
    // Every Job is passed again below; what was known to be seen is not.
    state.own_writes.clear();
    state.created.clear();
    let mut lists = lists.into_iter();
    for pod in lists.next().unwrap_or_default() {
        observe(state, Kind::Pod, EventType::Added, &pod);
    }
    for job in lists.next().unwrap_or_default() {
        state.dirty.insert(job.key());
    }
    rx
}

fn observe(state: &mut State, kind: Kind, ty: EventType, obj: &Stored) {
    match kind {
        Kind::Job => {
            let key = obj.key();
            let own = state.own_writes.remove(&key) == Some(obj.rev());
            if !(own && ty == EventType::Modified) {
                state.dirty.insert(key);
            }
        }
        Kind::Pod => {
            let Some((owner_uid, owner_name)) = controller_owner(obj) else {
                if ty != EventType::Deleted && has_tracking_finalizer(obj) {
                    state.orphans.insert(obj.key());
                }
                return;
            };
            let (ns, name) = obj.key();
            state
                .owner_uid
                .insert((ns.clone(), owner_name.clone()), owner_uid.clone());
            let pods = state.pods_by_owner.entry(owner_uid).or_default();
            let created = state.created.remove(&(ns.clone(), name.clone()));
            if ty == EventType::Deleted {
                pods.remove(&(ns.clone(), name));
            } else {
                let bits = PodBits::of(obj);
                let before = pods.insert((ns.clone(), name), bits);
                let seen = ty == EventType::Modified || created;
                if seen && before == Some(bits) {
                    return;
                }
            }
            state.dirty.insert((ns, owner_name));
        }
        _ => {}
    }
}

/// Whether `obj` (a Job or a Pod) has condition `ty` with status True.
fn condition_true(obj: &Value, ty: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}
