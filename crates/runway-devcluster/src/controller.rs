//! The Job controller, as kube-controller-manager's behaves for the fields
//! Dagster uses: pods from the template with owner references and the
//! job-tracking finalizer, status counters, backoffLimit with pod-failure
//! backoff, activeDeadlineSeconds, completions and parallelism, suspend,
//! conditions with their reasons, and the TTL-after-finished controller.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::api::{ns_name, Cluster, DeleteOptions, Propagation};
use super::clock::{parse_rfc3339, rfc3339};
use super::faults::Faults;
use super::store::EventType;
use super::validate::Kind;

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

#[derive(Debug, Default)]
struct State {
    /// Pods (namespace, name) by owning Job uid.
    pods_by_owner: HashMap<String, BTreeSet<JobKey>>,
    /// The uid pods name as their owner, by the owner's (namespace, name).
    owner_uid: HashMap<JobKey, String>,
    /// Pod uids already counted into a Job's succeeded/failed.
    counted: HashSet<String>,
    /// Jobs to reconcile.
    dirty: BTreeSet<JobKey>,
    /// Jobs with a time-based rule pending, checked every tick.
    timed: BTreeSet<JobKey>,
    /// Earliest time (ms) a Job may create pods again after a failure.
    backoff_until: HashMap<String, i64>,
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
                let timed: Vec<JobKey> = state.timed.iter().cloned().collect();
                state.dirty.extend(timed);
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
                    release_finalizer(&cluster, &pod);
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
    let mut lists = lists.into_iter();
    for pod in lists.next().unwrap_or_default() {
        observe(state, Kind::Pod, EventType::Added, &pod);
    }
    for job in lists.next().unwrap_or_default() {
        state.dirty.insert(ns_name(&job));
    }
    rx
}

fn controller_owner(obj: &Value) -> Option<(String, String)> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == "Job" && r["controller"] == true)
        .and_then(|r| {
            Some((
                r["uid"].as_str()?.to_owned(),
                r["name"].as_str()?.to_owned(),
            ))
        })
}

fn observe(state: &mut State, kind: Kind, ty: EventType, obj: &Value) {
    match kind {
        Kind::Job => {
            state.dirty.insert(ns_name(obj));
        }
        Kind::Pod => {
            let Some((owner_uid, owner_name)) = controller_owner(obj) else {
                if ty != EventType::Deleted && has_tracking_finalizer(obj) {
                    state.orphans.insert(ns_name(obj));
                }
                return;
            };
            let (ns, name) = ns_name(obj);
            state
                .owner_uid
                .insert((ns.clone(), owner_name.clone()), owner_uid.clone());
            let set = state.pods_by_owner.entry(owner_uid).or_default();
            if ty == EventType::Deleted {
                set.remove(&(ns.clone(), name));
            } else {
                set.insert((ns.clone(), name));
            }
            state.dirty.insert((ns, owner_name));
        }
        _ => {}
    }
}

fn condition_true(job: &Value, ty: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}

fn pod_phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn reconcile(cluster: &Cluster, config: &ControllerConfig, state: &mut State, key: &JobKey) {
    let (ns, name) = key;
    let Ok(job) = cluster.get(Kind::Job, ns, name) else {
        state.timed.remove(key);
        release_orphans(cluster, state, key);
        return;
    };
    let uid = job["metadata"]["uid"].as_str().unwrap_or("").to_owned();
    let now = cluster.clock.now_ms();
    let spec = &job["spec"];
    let status = &job["status"];
    let deleting = job["metadata"].get("deletionTimestamp").is_some();

    // Count finished pods into the Job and release their tracking finalizer.
    let owned: Vec<Arc<Value>> = state
        .pods_by_owner
        .get(&uid)
        .map(|set| {
            set.iter()
                .filter_map(|(pns, pname)| cluster.get(Kind::Pod, pns, pname).ok())
                .collect()
        })
        .unwrap_or_default();
    let mut succeeded = status["succeeded"].as_i64().unwrap_or(0);
    let mut failed = status["failed"].as_i64().unwrap_or(0);
    let mut newly_failed = false;
    let mut active = Vec::new();
    let mut terminating = 0;
    for pod in &owned {
        let pod_uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let phase = pod_phase(pod);
        let pod_deleting = pod["metadata"].get("deletionTimestamp").is_some();
        let terminal = phase == "Succeeded" || phase == "Failed";
        if terminal || pod_deleting {
            if !state.counted.contains(&pod_uid) && (terminal || pod_deleting) {
                // A pod deleted before it finished counts as failed, as with
                // real job tracking.
                if phase == "Succeeded" {
                    succeeded += 1;
                } else if terminal || pod_deleting {
                    failed += 1;
                    newly_failed = true;
                }
                state.counted.insert(pod_uid.clone());
            }
            if !terminal {
                terminating += 1;
            }
            release_finalizer(cluster, pod);
        } else {
            active.push(pod.clone());
        }
    }
    if newly_failed {
        let failures = u32::try_from(failed.clamp(1, 20)).unwrap_or(1);
        let base = config.pod_failure_backoff.as_millis() as i64;
        let delay = (base << (failures - 1)).min(config.max_backoff.as_millis() as i64);
        state.backoff_until.insert(uid.clone(), now + delay);
    }

    let finished = condition_true(&job, "Complete") || condition_true(&job, "Failed");
    let mut conditions: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    let mut completion_time = status.get("completionTime").cloned();
    let mut start_time = status.get("startTime").cloned();
    let suspended = spec["suspend"] == true;
    let now_s = rfc3339(now);
    let mut timed = false;

    if !finished && !deleting {
        if start_time.is_none() && !suspended {
            start_time = Some(json!(now_s));
        }
        let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
        let completions = spec["completions"].as_i64().unwrap_or(1);
        let parallelism = spec["parallelism"].as_i64().unwrap_or(1);
        let started_ms = start_time
            .as_ref()
            .and_then(Value::as_str)
            .and_then(parse_rfc3339);
        let deadline = spec["activeDeadlineSeconds"]
            .as_i64()
            .zip(started_ms)
            .map(|(s, t)| t + s * 1000);
        let failure = if failed > backoff_limit {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if deadline.is_some_and(|d| now >= d) && !suspended {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        if let Some((reason, message)) = failure {
            for pod in &active {
                delete_pod(cluster, pod);
            }
            conditions.push(condition("FailureTarget", reason, message, &now_s));
            conditions.push(condition("Failed", reason, message, &now_s));
            cluster.record_event(Kind::Job, &job, "Warning", reason, message, COMPONENT);
            active.clear();
        } else if succeeded >= completions {
            for pod in &active {
                delete_pod(cluster, pod);
            }
            active.clear();
            let msg = "Reached expected number of succeeded pods";
            conditions.push(condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                msg,
                &now_s,
            ));
            conditions.push(condition("Complete", "CompletionsReached", msg, &now_s));
            completion_time = Some(json!(now_s));
            cluster.record_event(
                Kind::Job,
                &job,
                "Normal",
                "Completed",
                "Job completed",
                COMPONENT,
            );
        } else if suspended {
            for pod in &active {
                delete_pod(cluster, pod);
            }
            active.clear();
        } else {
            if deadline.is_some() {
                timed = true;
            }
            let want = parallelism.min(completions - succeeded) - active.len() as i64;
            let backoff = state.backoff_until.get(&uid).copied().unwrap_or(0);
            if want > 0 && now < backoff {
                timed = true;
            } else if want > 0 {
                for _ in 0..want {
                    match create_pod(cluster, &job) {
                        Some(pod) => active.push(pod),
                        None => {
                            // FailedCreate: try again on a later tick, backing off.
                            let delay = config.pod_failure_backoff.as_millis() as i64;
                            state.backoff_until.insert(uid.clone(), now + delay);
                            timed = true;
                            break;
                        }
                    }
                }
            }
        }
    } else if finished {
        // A finished Job's leftover pods are removed; then the TTL applies.
        for pod in &active {
            delete_pod(cluster, pod);
        }
        active.clear();
        if let Some(ttl) = spec["ttlSecondsAfterFinished"].as_i64() {
            let finished_at = completion_time
                .as_ref()
                .and_then(Value::as_str)
                .or_else(|| finished_condition_time(&conditions))
                .and_then(parse_rfc3339)
                .unwrap_or(now);
            if now >= finished_at + ttl * 1000 {
                let opts = DeleteOptions {
                    propagation: Some(Propagation::Background),
                    ..DeleteOptions::default()
                };
                let _ = cluster.delete(Kind::Job, ns, name, &opts);
                state.timed.remove(key);
                return;
            }
            timed = true;
        }
    }

    if timed {
        state.timed.insert(key.clone());
    } else {
        state.timed.remove(key);
    }
    let ready = active.iter().filter(|p| pod_ready(p)).count();
    let mut new_status = serde_json::Map::new();
    if let Some(t) = start_time {
        new_status.insert("startTime".into(), t);
    }
    if let Some(t) = completion_time {
        new_status.insert("completionTime".into(), t);
    }
    if !active.is_empty() {
        new_status.insert("active".into(), json!(active.len()));
    }
    if succeeded > 0 {
        new_status.insert("succeeded".into(), json!(succeeded));
    }
    if failed > 0 {
        new_status.insert("failed".into(), json!(failed));
    }
    new_status.insert("ready".into(), json!(ready));
    new_status.insert("terminating".into(), json!(terminating));
    new_status.insert("uncountedTerminatedPods".into(), json!({}));
    if !conditions.is_empty() {
        new_status.insert("conditions".into(), Value::Array(conditions));
    }
    let new_status = Value::Object(new_status);
    if job["status"] != new_status {
        let _ = cluster.update_status_with(Kind::Job, ns, name, |j| {
            j["status"] = new_status;
        });
    }
}

fn finished_condition_time(conditions: &[Value]) -> Option<&str> {
    conditions
        .iter()
        .find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
        .and_then(|c| c["lastTransitionTime"].as_str())
}

fn condition(ty: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": ty, "status": "True", "reason": reason, "message": message,
           "lastProbeTime": now, "lastTransitionTime": now})
}

/// Creates one pod from the Job's template; records FailedCreate on error.
fn create_pod(cluster: &Cluster, job: &Value) -> Option<Arc<Value>> {
    let (ns, name) = ns_name(job);
    let template = &job["spec"]["template"];
    let mut meta = template["metadata"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    meta.remove("name");
    // Generated names are capped so the random suffix fits in 63 characters.
    let prefix: String = format!("{name}-").chars().take(58).collect();
    meta.insert("generateName".into(), json!(prefix));
    meta.insert(
        "ownerReferences".into(),
        json!([{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                "uid": job["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]),
    );
    meta.insert("finalizers".into(), json!([TRACKING_FINALIZER]));
    let pod = json!({"metadata": meta, "spec": template["spec"]});
    match cluster.create(Kind::Pod, &ns, pod, false) {
        Ok(created) => {
            let pod_name = created["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            cluster.record_event(
                Kind::Job,
                job,
                "Normal",
                "SuccessfulCreate",
                &format!("Created pod: {pod_name}"),
                COMPONENT,
            );
            Some(created)
        }
        Err(err) => {
            cluster.record_event(
                Kind::Job,
                job,
                "Warning",
                "FailedCreate",
                &format!("Error creating: {}", err.message),
                COMPONENT,
            );
            None
        }
    }
}

fn delete_pod(cluster: &Cluster, pod: &Value) {
    let (ns, name) = ns_name(pod);
    let _ = cluster.delete(Kind::Pod, &ns, &name, &DeleteOptions::default());
}

/// The Job is gone: its pods keep no tracking finalizer (kube-controller-manager
/// releases orphans, or a deleted Job's terminating pods would stay forever).
fn release_orphans(cluster: &Cluster, state: &mut State, key: &JobKey) {
    let Some(uid) = state.owner_uid.get(key).cloned() else {
        return;
    };
    let pods = state.pods_by_owner.get(&uid).cloned().unwrap_or_default();
    for (ns, name) in &pods {
        if let Ok(pod) = cluster.get(Kind::Pod, ns, name) {
            if controller_owner(&pod).is_none_or(|(u, _)| u == uid) {
                release_finalizer(cluster, &pod);
            }
        }
    }
    if pods.is_empty() {
        state.owner_uid.remove(key);
        state.pods_by_owner.remove(&uid);
    }
}

fn has_tracking_finalizer(pod: &Value) -> bool {
    pod["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING_FINALIZER))
}

fn release_finalizer(cluster: &Cluster, pod: &Value) {
    if !has_tracking_finalizer(pod) {
        return;
    }
    let (ns, name) = ns_name(pod);
    let _ = cluster.update_status_with(Kind::Pod, &ns, &name, |p| {
        if let Some(meta) = p["metadata"].as_object_mut() {
            if let Some(Value::Array(f)) = meta.get_mut("finalizers") {
                f.retain(|x| x != TRACKING_FINALIZER);
                if f.is_empty() {
                    meta.remove("finalizers");
                }
            }
        }
    });
}
