//! Graceful pod deletion, deletion finished once finalizers are gone, and
//! the garbage collector's view of dependents (pods owned by a Job).

use serde_json::{json, Value};

use super::{ns_name, Cluster, DeleteOptions, Deleted};
use crate::clock::rfc3339;
use crate::status::ApiError;
use crate::store::{Obj, Store, Stored};
use crate::validate::Kind;

impl Cluster {
    /// Graceful pod deletion: scheduled pods get a deletionTimestamp and are
    /// removed by the kubelet once stopped; unscheduled ones go at once.
    pub(super) fn delete_pod(
        &self,
        store: &mut Store,
        pod: &Value,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let (ns, name) = ns_name(pod);
        let default_grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        let mut grace = opts.grace_period_seconds.unwrap_or(default_grace).max(0);
        let scheduled = pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        if !scheduled || finished {
            grace = 0;
        }
        let already = pod["metadata"].get("deletionTimestamp").is_some();
        let current_grace = pod["metadata"]["deletionGracePeriodSeconds"].as_i64();
        if already && current_grace.is_some_and(|g| g <= grace) {
            return Ok(Deleted {
                body: pod.clone(),
                warning: None,
            });
        }
        let has_finalizers = pod["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if grace == 0 && !has_finalizers {
            let removed = store.remove(Kind::Pod, &ns, &name)?;
            let last = removed.object.clone();
            self.commit(removed);
            self.after_removed(store, Kind::Pod, &last);
            return Ok(Deleted {
                body: last.value(),
                warning: None,
            });
        }
        let mut p = pod.clone();
        let at = self.clock.now_ms() + grace * 1000;
        p["metadata"]["deletionTimestamp"] = json!(rfc3339(at));
        p["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        let ev = store.update(Kind::Pod, p, None)?;
        let obj = ev.object.clone();
        self.commit(ev);
        Ok(Deleted {
            body: obj.value(),
            warning: None,
        })
    }

    /// The kubelet's final delete once a terminating pod's containers stopped.
    pub fn finish_pod_deletion(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        let mut store = self.lock();
        let Some(pod) = store.get(Kind::Pod, namespace, name) else {
            return Ok(());
        };
        let mut p = pod.value();
        p["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        if p["metadata"].get("deletionTimestamp").is_none() {
            p["metadata"]["deletionTimestamp"] = json!(self.clock.now_rfc3339());
        }
        self.write(&mut store, Kind::Pod, p, None).map(|_| ())
    }

    pub(super) fn mark_deleting(
        &self,
        store: &mut Store,
        kind: Kind,
        obj: &Value,
        finalizer: Option<&str>,
    ) -> Result<Obj, ApiError> {
        let mut o = obj.clone();
        if o["metadata"].get("deletionTimestamp").is_none() {
            o["metadata"]["deletionTimestamp"] = json!(self.clock.now_rfc3339());
            o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
        if let Some(f) = finalizer {
            let list = o["metadata"]
                .as_object_mut()
                .map(|m| m.entry("finalizers").or_insert_with(|| json!([])));
            if let Some(Value::Array(items)) = list {
                if !items.iter().any(|x| x == f) {
                    items.push(json!(f));
                }
            }
        }
        let ev = store.update(kind, o, None)?;
        let obj = ev.object.clone();
        self.commit(ev);
        Ok(obj)
    }

    /// Pods owned by `uid` (the only dependents the dev cluster creates).
    pub(super) fn dependents(&self, store: &Store, namespace: &str, uid: &str) -> Vec<Obj> {
        if uid.is_empty() {
            return Vec::new();
        }
        store.owned_by(Kind::Pod, namespace, uid)
    }

    /// Garbage collection after an object is gone: a Foreground owner whose
    /// last dependent went is deleted in turn.
    pub(super) fn after_removed(&self, store: &mut Store, kind: Kind, obj: &Stored) {
        if kind != Kind::Pod {
            return;
        }
        let ns = obj.namespace();
        for r in obj.owners().iter().filter(|r| &*r.kind == "Job") {
            let Some(job) = store.get(Kind::Job, ns, &r.name) else {
                continue;
            };
            if job.uid() == &*r.uid
                && job.has_finalizer("foregroundDeletion")
                && self.dependents(store, ns, &r.uid).is_empty()
            {
                let mut j = job.value();
                remove_finalizer(&mut j, "foregroundDeletion");
                let _ = self.write(store, Kind::Job, j, None);
            }
        }
    }
}

pub(super) fn remove_finalizer(obj: &mut Value, name: &str) {
    if let Some(meta) = obj["metadata"].as_object_mut() {
        if let Some(Value::Array(f)) = meta.get_mut("finalizers") {
            f.retain(|x| x != name);
            if f.is_empty() {
                meta.remove("finalizers");
            }
        }
    }
}
