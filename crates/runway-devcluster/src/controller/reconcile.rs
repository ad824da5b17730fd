//! One reconcile of one Job, as named steps: count its pods, then either
//! move it forward (fail it, complete it, or create pods), or, once it
//! finished, clean up and apply its TTL; then write its status.

use serde_json::{json, Value};

use super::pods::{create_pod, delete_pod, release_finalizer, release_orphans};
use super::{condition_true, ControllerConfig, JobKey, PodBits, State, COMPONENT};
use crate::api::{Cluster, DeleteOptions, Propagation};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::store::{Obj, Phase};
use crate::validate::Kind;

/// What one reconcile of a Job reads once.
struct Pass<'a> {
    cluster: &'a Cluster,
    config: &'a ControllerConfig,
    job: &'a Value,
    uid: String,
    now: i64,
    now_s: String,
}

/// The Job's pods as this pass counts them.
#[derive(Debug, Default)]
struct Pods {
    succeeded: i64,
    failed: i64,
    /// A pod failed since the last pass: pod creation backs off.
    newly_failed: bool,
    /// Pods still running (or about to).
    active: Vec<Obj>,
    /// Deleted pods that have not finished yet.
    terminating: i64,
}

/// The status fields this pass decides, beyond the counters.
#[derive(Debug)]
struct Progress {
    conditions: Vec<Value>,
    start_time: Option<Value>,
    completion_time: Option<Value>,
    /// When the earliest pending time-based rule (deadline, back-off, TTL)
    /// falls due, in ms.
    due: Option<i64>,
}

impl Progress {
    fn due_at(&mut self, at: i64) {
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }
}

pub(super) fn reconcile(
    cluster: &Cluster,
    config: &ControllerConfig,
    state: &mut State,
    key: &JobKey,
) {
    let Ok(stored) = cluster.get(Kind::Job, &key.0, &key.1) else {
        state.timed.remove(key);
        release_orphans(cluster, state, key);
        return;
    };
    let now = cluster.clock.now_ms();
    let job = stored.value();
    let pass = Pass {
        cluster,
        config,
        job: &job,
        uid: job["metadata"]["uid"].as_str().unwrap_or("").to_owned(),
        now,
        now_s: rfc3339(now),
    };
    let mut pods = count_pods(&pass, state);
    if pods.newly_failed {
        back_off(&pass, state, pods.failed);
    }
    let status = &job["status"];
    let mut progress = Progress {
        conditions: status["conditions"].as_array().cloned().unwrap_or_default(),
        start_time: status.get("startTime").cloned(),
        completion_time: status.get("completionTime").cloned(),
        due: None,
    };
    let finished = condition_true(&job, "Complete") || condition_true(&job, "Failed");
    let deleting = job["metadata"].get("deletionTimestamp").is_some();
    if !finished && !deleting {
        advance(&pass, state, &mut pods, &mut progress);
    } else if finished && after_finish(&pass, &mut pods, &mut progress) {
        // The TTL deleted the Job.
        state.timed.remove(key);
        return;
    }
    match progress.due {
        Some(at) => state.timed.insert(key.clone(), at),
        None => state.timed.remove(key),
    };
    let finishes = !finished && finished_condition_time(&progress.conditions).is_some();
    if let Some(status) = new_status(&pass, &pods, progress) {
        // The Job as parsed above is the base of the write unless it
        // changed meanwhile.
        // `new_status` compared it with the stored status: it changed.
        let written =
            cluster.update_status_from(Kind::Job, &key.0, &key.1, (stored.rev(), job), |j| {
                j["status"] = status.clone();
                true
            });
        if let (Ok(obj), false) = (written, finishes) {
            state.own_writes.insert(key.clone(), obj.rev());
        }
    }
}

/// Counts finished pods into the Job and releases their tracking finalizer.
fn count_pods(pass: &Pass<'_>, state: &mut State) -> Pods {
    let status = &pass.job["status"];
    let mut pods = Pods {
        succeeded: status["succeeded"].as_i64().unwrap_or(0),
        failed: status["failed"].as_i64().unwrap_or(0),
        ..Pods::default()
    };
    let owned: Vec<Obj> = state
        .pods_by_owner
        .get(&pass.uid)
        .map(|pods| {
            pods.keys()
                .filter_map(|(pns, pname)| pass.cluster.get(Kind::Pod, pns, pname).ok())
                .collect()
        })
        .unwrap_or_default();
    for pod in owned {
        let pod_uid = pod.uid().to_owned();
        let phase = pod.phase();
        let pod_deleting = pod.deleting();
        let terminal = phase != Phase::Other;
        if !terminal && !pod_deleting {
            pods.active.push(pod);
            continue;
        }
        if state.counted.insert(pod_uid) {
            // A pod deleted before it finished counts as failed, as with
            // real job tracking.
            if phase == Phase::Succeeded {
                pods.succeeded += 1;
            } else {
                pods.failed += 1;
                pods.newly_failed = true;
            }
        }
        if !terminal {
            pods.terminating += 1;
        }
        if let Some(released) = release_finalizer(pass.cluster, &pod) {
            // The release's event is not news when it is this pass's pod
            // less the finalizer (a write by anyone else between them is).
            let seen = PodBits {
                tracked: false,
                ..PodBits::of(&pod)
            };
            let owned = state.pods_by_owner.get_mut(&pass.uid);
            if let Some(bits) = owned.and_then(|pods| pods.get_mut(&released.key())) {
                if PodBits::of(&released) == seen {
                    *bits = seen;
                }
            }
        }
    }
    pods
}

/// Pod creation waits `pod_failure_backoff`, doubled per failure up to
/// `max_backoff`, as kube-controller-manager's does.
fn back_off(pass: &Pass<'_>, state: &mut State, failed: i64) {
    let failures = u32::try_from(failed.clamp(1, 20)).unwrap_or(1);
    let base = pass.config.pod_failure_backoff.as_millis() as i64;
    let delay = (base << (failures - 1)).min(pass.config.max_backoff.as_millis() as i64);
    state
        .backoff_until
        .insert(pass.uid.clone(), pass.now + delay);
}

/// A running Job: fails it (backoffLimit, activeDeadlineSeconds), completes
/// it, stops its pods while suspended, or creates the pods it lacks.
fn advance(pass: &Pass<'_>, state: &mut State, pods: &mut Pods, progress: &mut Progress) {
    let spec = &pass.job["spec"];
    let suspended = spec["suspend"] == true;
    if progress.start_time.is_none() && !suspended {
        progress.start_time = Some(json!(pass.now_s));
    }
    let completions = spec["completions"].as_i64().unwrap_or(1);
    let started_ms = progress
        .start_time
        .as_ref()
        .and_then(Value::as_str)
        .and_then(parse_rfc3339);
    let deadline = spec["activeDeadlineSeconds"]
        .as_i64()
        .zip(started_ms)
        .map(|(s, t)| t + s * 1000);
    if let Some((reason, message)) = failure(pass, pods, deadline, suspended) {
        stop_active(pass, pods);
        progress
            .conditions
            .push(condition("FailureTarget", reason, message, &pass.now_s));
        progress
            .conditions
            .push(condition("Failed", reason, message, &pass.now_s));
        record(pass, "Warning", reason, message);
    } else if pods.succeeded >= completions {
        stop_active(pass, pods);
        let msg = "Reached expected number of succeeded pods";
        progress.conditions.push(condition(
            "SuccessCriteriaMet",
            "CompletionsReached",
            msg,
            &pass.now_s,
        ));
        progress.conditions.push(condition(
            "Complete",
            "CompletionsReached",
            msg,
            &pass.now_s,
        ));
        progress.completion_time = Some(json!(pass.now_s));
        record(pass, "Normal", "Completed", "Job completed");
    } else if suspended {
        stop_active(pass, pods);
    } else {
        if let Some(deadline) = deadline {
            progress.due_at(deadline);
        }
        if let Some(at) = create_missing(pass, state, pods, completions) {
            progress.due_at(at);
        }
    }
}

/// Why the Job fails now, if it does: reason and message of its conditions.
fn failure(
    pass: &Pass<'_>,
    pods: &Pods,
    deadline: Option<i64>,
    suspended: bool,
) -> Option<(&'static str, &'static str)> {
    let backoff_limit = pass.job["spec"]["backoffLimit"].as_i64().unwrap_or(6);
    if pods.failed > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some_and(|d| pass.now >= d) && !suspended {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    }
}

/// Creates the pods parallelism and completions still call for, unless
/// creation backs off; `Some(when)` a later tick must look again.
fn create_missing(
    pass: &Pass<'_>,
    state: &mut State,
    pods: &mut Pods,
    completions: i64,
) -> Option<i64> {
    let parallelism = pass.job["spec"]["parallelism"].as_i64().unwrap_or(1);
    let want = parallelism.min(completions - pods.succeeded) - pods.active.len() as i64;
    if want <= 0 {
        return None;
    }
    let backoff = state.backoff_until.get(&pass.uid).copied().unwrap_or(0);
    if pass.now < backoff {
        return Some(backoff);
    }
    for _ in 0..want {
        match create_pod(pass.cluster, pass.job) {
            Some(pod) => {
                // Recorded now: its ADDED event brings nothing this pass did not see.
                let pod_key = pod.key();
                let owned = state.pods_by_owner.entry(pass.uid.clone()).or_default();
                owned.insert(pod_key.clone(), PodBits::of(&pod));
                state.created.insert(pod_key);
                pods.active.push(pod);
            }
            None => {
                // FailedCreate: try again on a later tick, backing off.
                let delay = pass.config.pod_failure_backoff.as_millis() as i64;
                state
                    .backoff_until
                    .insert(pass.uid.clone(), pass.now + delay);
                return Some(pass.now + delay);
            }
        }
    }
    None
}

/// A finished Job's leftover pods are removed; then the TTL applies. True
/// when the TTL deleted the Job.
fn after_finish(pass: &Pass<'_>, pods: &mut Pods, progress: &mut Progress) -> bool {
    stop_active(pass, pods);
    let Some(ttl) = pass.job["spec"]["ttlSecondsAfterFinished"].as_i64() else {
        return false;
    };
    let finished_at = progress
        .completion_time
        .as_ref()
        .and_then(Value::as_str)
        .or_else(|| finished_condition_time(&progress.conditions))
        .and_then(parse_rfc3339)
        .unwrap_or(pass.now);
    if pass.now >= finished_at + ttl * 1000 {
        let opts = DeleteOptions {
            propagation: Some(Propagation::Background),
            ..DeleteOptions::default()
        };
        let (ns, name) = (
            pass.job["metadata"]["namespace"].as_str().unwrap_or(""),
            pass.job["metadata"]["name"].as_str().unwrap_or(""),
        );
        let _ = pass.cluster.delete(Kind::Job, ns, name, &opts);
        return true;
    }
    progress.due_at(finished_at + ttl * 1000);
    false
}

fn stop_active(pass: &Pass<'_>, pods: &mut Pods) {
    for pod in &pods.active {
        delete_pod(pass.cluster, pod);
    }
    pods.active.clear();
}

fn record(pass: &Pass<'_>, type_: &str, reason: &str, message: &str) {
    pass.cluster
        .record_event(Kind::Job, pass.job, type_, reason, message, COMPONENT);
}

/// The status this pass computed, when it differs from the stored one.
fn new_status(pass: &Pass<'_>, pods: &Pods, progress: Progress) -> Option<Value> {
    let ready = pods.active.iter().filter(|p| p.ready()).count();
    let mut status = serde_json::Map::new();
    if let Some(t) = progress.start_time {
        status.insert("startTime".into(), t);
    }
    if let Some(t) = progress.completion_time {
        status.insert("completionTime".into(), t);
    }
    if !pods.active.is_empty() {
        status.insert("active".into(), json!(pods.active.len()));
    }
    if pods.succeeded > 0 {
        status.insert("succeeded".into(), json!(pods.succeeded));
    }
    if pods.failed > 0 {
        status.insert("failed".into(), json!(pods.failed));
    }
    status.insert("ready".into(), json!(ready));
    status.insert("terminating".into(), json!(pods.terminating));
    status.insert("uncountedTerminatedPods".into(), json!({}));
    if !progress.conditions.is_empty() {
        status.insert("conditions".into(), Value::Array(progress.conditions));
    }
    let status = Value::Object(status);
    (pass.job["status"] != status).then_some(status)
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
