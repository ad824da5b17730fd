//! The Job controller's writes to pods: creating them from the template,
//! deleting them, and releasing the job-tracking finalizer.

use serde_json::{json, Value};

use super::{JobKey, State, COMPONENT, TRACKING_FINALIZER};
use crate::api::{ns_name, Cluster, DeleteOptions};
use crate::store::{Obj, Stored};
use crate::validate::Kind;

/// The uid and name of the Job controlling `obj`, if any.
pub(super) fn controller_owner(obj: &Stored) -> Option<(String, String)> {
    obj.owners()
        .iter()
        .find(|r| &*r.kind == "Job" && r.controller)
        .map(|r| (r.uid.to_string(), r.name.to_string()))
}

/// Creates one pod from the Job's template; records FailedCreate on error.
pub(super) fn create_pod(cluster: &Cluster, job: &Value) -> Option<Obj> {
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
            let pod_name = created.name().to_owned();
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

pub(super) fn delete_pod(cluster: &Cluster, pod: &Stored) {
    let _ = cluster.delete(
        Kind::Pod,
        pod.namespace(),
        pod.name(),
        &DeleteOptions::default(),
    );
}

/// The Job is gone: its pods keep no tracking finalizer (kube-controller-manager
/// releases orphans, or a deleted Job's terminating pods would stay forever).
pub(super) fn release_orphans(cluster: &Cluster, state: &mut State, key: &JobKey) {
    let Some(uid) = state.owner_uid.get(key).cloned() else {
        return;
    };
    let pods: Vec<JobKey> = state
        .pods_by_owner
        .get(&uid)
        .map(|pods| pods.keys().cloned().collect())
        .unwrap_or_default();
    for (ns, name) in &pods {
        if let Ok(pod) = cluster.get(Kind::Pod, ns, name) {
            if controller_owner(&pod).is_none_or(|(u, _)| u == uid) {
                let _ = release_finalizer(cluster, &pod);
            }
        }
    }
    if pods.is_empty() {
        state.owner_uid.remove(key);
        state.pods_by_owner.remove(&uid);
    }
}

pub(super) fn has_tracking_finalizer(pod: &Stored) -> bool {
    pod.has_finalizer(TRACKING_FINALIZER)
}

/// Removes the job-tracking finalizer from `pod`; the pod as written, when
/// it had one.
pub(super) fn release_finalizer(cluster: &Cluster, pod: &Stored) -> Option<Obj> {
    if !has_tracking_finalizer(pod) {
        return None;
    }
    let written = cluster.update_status_with(Kind::Pod, pod.namespace(), pod.name(), |p| {
        let Some(meta) = p["metadata"].as_object_mut() else {
            return false;
        };
        let Some(Value::Array(f)) = meta.get_mut("finalizers") else {
            return false;
        };
        let before = f.len();
        f.retain(|x| x != TRACKING_FINALIZER);
        let changed = f.len() != before;
        if f.is_empty() {
            meta.remove("finalizers");
        }
        changed
    });
    written.ok().filter(|w| w.rev() != pod.rev())
}
