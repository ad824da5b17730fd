//! DELETE: preconditions, dryRun, and the propagation policies (Orphan, the
//! batch/v1 default, with its Warning; Background; Foreground) over the
//! object's dependents; namespaces take their contents with them.

use serde_json::{json, Value};

use super::{ns_name, Cluster};
use crate::status::{ApiError, Resource};
use crate::store::{ListQuery, Obj, Store};
use crate::validate::Kind;

/// How dependents of a deleted object are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// DeleteOptions, from a JSON body or query parameters.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rev: Option<String>,
    pub dry_run: bool,
}

/// The outcome of a delete: the body to return and an optional `Warning` header.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub body: Value,
    pub warning: Option<String>,
}

const JOB_ORPHAN_WARNING: &str = "299 - \"child pods are preserved by default when jobs are \
    deleted; set propagationPolicy=Background to remove them or set propagationPolicy=Orphan to \
    suppress this warning\"";

impl Cluster {
    /// DELETE with DeleteOptions.
    pub fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let mut store = self.lock();
        self.delete_locked(&mut store, kind, namespace, name, opts)
    }

    fn delete_locked(
        &self,
        store: &mut Store,
        kind: Kind,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let obj = store
            .get(kind, namespace, name)
            .ok_or_else(|| ApiError::not_found(kind.resource(), name))?
            .value();
        check_preconditions(kind, name, &obj, opts)?;
        if opts.dry_run {
            return Ok(Deleted {
                body: obj,
                warning: None,
            });
        }
        match kind {
            Kind::Pod => return self.delete_pod(store, &obj, opts),
            Kind::Namespace => return self.delete_namespace(store, &obj),
            _ => {}
        }
        let policy = opts.propagation.unwrap_or(if kind == Kind::Job {
            Propagation::Orphan
        } else {
            Propagation::Background
        });
        let warning = (kind == Kind::Job && opts.propagation.is_none())
            .then(|| JOB_ORPHAN_WARNING.to_owned());
        let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let dependents = self.dependents(store, namespace, &uid);
        let has_finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let body = match policy {
            Propagation::Orphan if !dependents.is_empty() => {
                self.orphan_dependents(store, kind, &obj, &uid, dependents)?
            }
            Propagation::Foreground if !dependents.is_empty() => {
                self.delete_dependents_first(store, kind, &obj, dependents, opts)?
            }
            _ if has_finalizers => self.mark_deleting(store, kind, &obj, None)?.value(),
            _ => self.remove_now(store, kind, &obj, policy, dependents)?,
        };
        Ok(Deleted { body, warning })
    }

    /// The garbage collector's orphan finalizer: mark, release the
    /// dependents, then finish. The pending object is the response.
    fn orphan_dependents(
        &self,
        store: &mut Store,
        kind: Kind,
        obj: &Value,
        uid: &str,
        dependents: Vec<Obj>,
    ) -> Result<Value, ApiError> {
        let pending = self.mark_deleting(store, kind, obj, Some("orphan"))?;
        for pod in dependents {
            let mut p = pod.value();
            remove_owner(&mut p, uid);
            if let Ok(ev) = store.update(Kind::Pod, p, None) {
                self.commit(ev);
            }
        }
        let mut done = pending.value();
        super::gc::remove_finalizer(&mut done, "orphan");
        self.write(store, kind, done, None)?;
        Ok(pending.value())
    }

    /// Foreground: the owner waits (finalizer `foregroundDeletion`) while
    /// its dependents are deleted; the garbage collector finishes it.
    fn delete_dependents_first(
        &self,
        store: &mut Store,
        kind: Kind,
        obj: &Value,
        dependents: Vec<Obj>,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let pending = self.mark_deleting(store, kind, obj, Some("foregroundDeletion"))?;
        for pod in dependents {
            let grace = DeleteOptions {
                grace_period_seconds: opts.grace_period_seconds,
                ..DeleteOptions::default()
            };
            let _ = self.delete_pod(store, &pod.value(), &grace);
        }
        let (namespace, name) = ns_name(obj);
        Ok(store
            .get(kind, &namespace, &name)
            .map(|o| o.value())
            .unwrap_or_else(|| pending.value()))
    }

    /// No finalizer holds it: gone at once, with its dependents unless
    /// orphaned. A Job answers with a Status, other kinds with the object.
    fn remove_now(
        &self,
        store: &mut Store,
        kind: Kind,
        obj: &Value,
        policy: Propagation,
        dependents: Vec<Obj>,
    ) -> Result<Value, ApiError> {
        let (namespace, name) = ns_name(obj);
        let removed = store.remove(kind, &namespace, &name)?;
        let last = removed.object.clone();
        self.commit(removed);
        if policy != Propagation::Orphan {
            for pod in dependents {
                let _ = self.delete_pod(store, &pod.value(), &DeleteOptions::default());
            }
        }
        if kind != Kind::Job {
            return Ok(last.value());
        }
        let r = kind.resource();
        Ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                  "status": "Success",
                  "details": {"name": name, "group": r.group, "kind": r.plural,
                              "uid": last.uid()}}))
    }

    fn delete_namespace(&self, store: &mut Store, ns_obj: &Value) -> Result<Deleted, ApiError> {
        let (_, ns) = ns_name(ns_obj);
        let pending = self.mark_deleting(store, Kind::Namespace, ns_obj, None)?;
        for kind in [
            Kind::Job,
            Kind::Pod,
            Kind::ConfigMap,
            Kind::Secret,
            Kind::Event,
            Kind::ServiceAccount,
        ] {
            let q = ListQuery {
                kind,
                namespace: Some(&ns),
                at: None,
                after: None,
                limit: 0,
                labels: &[],
            };
            let items = store
                .list(&q, |_| true)
                .map(|p| p.items)
                .unwrap_or_default();
            for item in items {
                if let Ok(ev) = store.remove(kind, &ns, item.name()) {
                    self.commit(ev);
                }
            }
        }
        if let Ok(ev) = store.remove(Kind::Namespace, "", &ns) {
            self.commit(ev);
        }
        Ok(Deleted {
            body: pending.value(),
            warning: None,
        })
    }
}

/// `preconditions.uid` and `preconditions.resourceVersion` must match.
fn check_preconditions(
    kind: Kind,
    name: &str,
    obj: &Value,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    let meta = &obj["metadata"];
    if let Some(uid) = &opts.precondition_uid {
        if meta["uid"].as_str() != Some(uid) {
            return Err(precondition_failed(
                kind.resource(),
                name,
                "UID",
                uid,
                &meta["uid"],
            ));
        }
    }
    if let Some(rv) = &opts.precondition_rev {
        if meta["resourceVersion"].as_str() != Some(rv) {
            return Err(ApiError::conflict(kind.resource(), name));
        }
    }
    Ok(())
}

fn remove_owner(obj: &mut Value, uid: &str) {
    if let Some(meta) = obj["metadata"].as_object_mut() {
        if let Some(Value::Array(refs)) = meta.get_mut("ownerReferences") {
            refs.retain(|r| r["uid"] != uid);
            if refs.is_empty() {
                meta.remove("ownerReferences");
            }
        }
    }
}

fn precondition_failed(
    resource: Resource,
    name: &str,
    what: &str,
    want: &str,
    got: &Value,
) -> ApiError {
    let mut e = ApiError::conflict(resource, name);
    e.message = format!(
        "Precondition failed: {what} in precondition: {want}, {what} in object meta: {}",
        got.as_str().unwrap_or("")
    );
    e
}
