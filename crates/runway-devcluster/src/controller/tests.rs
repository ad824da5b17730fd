//! Which pod events queue their Job.

use serde_json::{json, Value};

use super::{observe, State, TRACKING_FINALIZER};
use crate::store::{EventType, Stored};
use crate::validate::Kind;

fn pod(phase: &str, ready: bool, deleting: bool, tracked: bool, node: &str) -> Stored {
    let mut meta = json!({
        "name": "run-1-abcde", "namespace": "default", "uid": "pod-uid",
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "run-1",
                             "uid": "job-uid", "controller": true}],
    });
    if tracked {
        meta["finalizers"] = json!([TRACKING_FINALIZER]);
    }
    if deleting {
        meta["deletionTimestamp"] = json!("2026-12-07T00:00:00Z");
    }
    let ready = if ready { "True" } else { "False" };
    Stored::new(&json!({
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "dagster", "image": "x"}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]},
    }))
}

/// Whether `ty` of `next`, after `first` was seen, queues the Job.
fn queues(first: &Stored, ty: EventType, next: &Stored) -> bool {
    let mut state = State::default();
    observe(&mut state, Kind::Pod, EventType::Added, first);
    let job = ("default".to_owned(), "run-1".to_owned());
    assert!(state.dirty.remove(&job), "a new pod queues its Job");
    observe(&mut state, Kind::Pod, ty, next);
    state.dirty.contains(&job)
}

#[test]
fn an_update_the_job_cannot_see_does_not_queue_it() {
    let pending = pod("Pending", false, false, true, "");
    // The scheduler's binding, then a container running but not ready.
    assert!(!queues(
        &pending,
        EventType::Modified,
        &pod("Pending", false, false, true, "node-1")
    ));
    assert!(!queues(
        &pending,
        EventType::Modified,
        &pod("Running", false, false, true, "node-1")
    ));
}

#[test]
fn every_field_the_job_reads_queues_it_when_it_changes() {
    let running = pod("Running", false, false, true, "node-1");
    let changed: [(&str, Stored); 5] = [
        ("ready", pod("Running", true, false, true, "node-1")),
        ("succeeded", pod("Succeeded", false, false, true, "node-1")),
        ("failed", pod("Failed", false, false, true, "node-1")),
        ("deleting", pod("Running", false, true, true, "node-1")),
        (
            "finalizer released",
            pod("Running", false, false, false, "node-1"),
        ),
    ];
    for (what, next) in &changed {
        assert!(queues(&running, EventType::Modified, next), "{what}");
    }
    // A delete and a re-add always queue it, whatever they carry.
    assert!(queues(&running, EventType::Deleted, &running));
    assert!(queues(&running, EventType::Added, &running));
}

/// A pod with no controlling Job queues nothing (it is an orphan to release).
#[test]
fn an_orphan_queues_no_job() {
    let mut state = State::default();
    let mut orphan: Value = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u",
                                                 "finalizers": [TRACKING_FINALIZER]}});
    observe(
        &mut state,
        Kind::Pod,
        EventType::Modified,
        &Stored::new(&orphan),
    );
    assert!(state.dirty.is_empty());
    assert_eq!(state.orphans.len(), 1);
    orphan["metadata"]["finalizers"] = json!([]);
    let mut state = State::default();
    observe(
        &mut state,
        Kind::Pod,
        EventType::Modified,
        &Stored::new(&orphan),
    );
    assert!(state.dirty.is_empty() && state.orphans.is_empty());
}

fn job_at(rev: u64) -> Stored {
    Stored::new(&json!({"metadata": {"name": "run-1", "namespace": "default", "uid": "job-uid"}}))
        .at(rev)
}

/// The event of the controller's own status write queues nothing; any other
/// version of the Job, and a delete, still do.
#[test]
fn only_the_controllers_own_status_write_is_not_queued_again() {
    let key = ("default".to_owned(), "run-1".to_owned());
    let mut state = State::default();
    state.own_writes.insert(key.clone(), 7);
    observe(&mut state, Kind::Job, EventType::Modified, &job_at(7));
    assert!(state.dirty.is_empty() && state.own_writes.is_empty());

    state.own_writes.insert(key.clone(), 7);
    observe(&mut state, Kind::Job, EventType::Modified, &job_at(8));
    assert!(state.dirty.remove(&key), "someone else's write queues it");
    assert!(state.own_writes.is_empty());

    state.own_writes.insert(key.clone(), 7);
    observe(&mut state, Kind::Job, EventType::Deleted, &job_at(7));
    assert!(state.dirty.contains(&key), "a delete queues it");
}

/// A pod the controller created and recorded is not news when it is added;
/// the same pod added again later (a delete and a new pod of that name) is.
#[test]
fn the_add_of_a_pod_the_controller_created_does_not_queue_its_job() {
    let key = ("default".to_owned(), "run-1".to_owned());
    let pending = pod("Pending", false, false, true, "");
    let mut state = State::default();
    state
        .pods_by_owner
        .entry("job-uid".to_owned())
        .or_default()
        .insert(pending.key(), super::PodBits::of(&pending));
    state.created.insert(pending.key());
    observe(&mut state, Kind::Pod, EventType::Added, &pending);
    assert!(state.dirty.is_empty() && state.created.is_empty());
    observe(&mut state, Kind::Pod, EventType::Added, &pending);
    assert!(state.dirty.contains(&key));
}

/// Observes every event committed since the last call.
fn observe_all(
    state: &mut State,
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<crate::store::Event>>,
) {
    while let Ok(e) = rx.try_recv() {
        observe(state, e.kind, e.ty, &e.object);
    }
}

/// The pass that counts a finished pod releases its tracking finalizer; the
/// event of that release is not news to the Job (the pass saw it), while the
/// Job's finishing write still queues the pass that applies its TTL.
#[test]
fn the_controllers_own_finalizer_release_does_not_queue_the_job() {
    use crate::clock::Clock;
    use crate::store::StoreConfig;

    let cluster = crate::api::Cluster::new(StoreConfig::default(), Clock::virtual_at(0), 3);
    let mut rx = cluster.subscribe();
    let job = json!({"metadata": {"name": "run-1", "namespace": "default"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "dagster", "image": "x"}]}}}});
    cluster.create(Kind::Job, "default", job, false).unwrap();
    let config = super::ControllerConfig::default();
    let mut state = State::default();
    let key = ("default".to_owned(), "run-1".to_owned());
    let pass = |state: &mut State| {
        for key in std::mem::take(&mut state.dirty) {
            super::reconcile(&cluster, &config, state, &key);
        }
    };

    observe_all(&mut state, &mut rx);
    pass(&mut state);
    let pods = state.pods_by_owner.values().flat_map(|p| p.keys().cloned());
    let (ns, name) = pods
        .collect::<Vec<_>>()
        .pop()
        .expect("the pass created a pod");
    observe_all(&mut state, &mut rx);
    cluster
        .update_status_with(Kind::Pod, &ns, &name, |p| {
            p["status"]["phase"] = json!("Succeeded");
            true
        })
        .unwrap();
    observe_all(&mut state, &mut rx);
    assert!(state.dirty.contains(&key), "the pod's success is news");
    pass(&mut state);
    let released = cluster.get(Kind::Pod, &ns, &name).unwrap();
    assert!(!released.has_finalizer(TRACKING_FINALIZER));

    // Pod events alone (the release) do not queue the Job.
    let mut job_events = 0;
    while let Ok(e) = rx.try_recv() {
        observe(&mut state, e.kind, e.ty, &e.object);
        match e.kind {
            Kind::Pod => assert!(state.dirty.is_empty(), "the release queued the Job"),
            Kind::Job => job_events += 1,
            _ => {}
        }
    }
    assert_eq!(job_events, 1, "the finishing status write");
    assert!(state.dirty.contains(&key), "it queues the pass for the TTL");
}
