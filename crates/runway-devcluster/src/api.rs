//! The API server's semantics, independent of HTTP: create, read, update,
//! patch and delete with Kubernetes rules (server-set fields, resourceVersion
//! preconditions, finalizers, graceful pod deletion, propagation policies and
//! garbage collection of dependents), plus Events. Every commit is published
//! to the watch fan-out in revision order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use super::clock::{rfc3339, Clock};
use super::patch::{apply_patch, PatchType};
use super::status::{ApiError, Resource};
use super::store::{object_rev, Event, ListPage, ListQuery, Obj, Store, StoreConfig};
use super::validate::{prepare_create, prepare_update, Kind};

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

/// Capacity of the watch fan-out. A watcher that falls this far behind is
/// disconnected (it re-watches from its last revision), as the real API
/// server's cacher terminates slow watchers rather than slowing writers.
/// The ring keeps every event it holds alive (object and previous object),
/// about a gigabyte under load; a smaller ring made the controller and the
/// kubelet fall behind and re-list during bursts, which cost far more.
pub const FANOUT_CAPACITY: usize = 1 << 16;

/// Shared cluster state.
#[derive(Debug)]
pub struct Cluster {
    store: Mutex<Store>,
    events: broadcast::Sender<Arc<Event>>,
    pub clock: Clock,
    rng: Mutex<u64>,
    /// Event objects by (namespace, involved uid, reason, message): their names,
    /// so repeats bump `count` as the real event recorder does.
    event_names: Mutex<HashMap<(String, String, String, String), String>>,
}

impl Cluster {
    pub fn new(config: StoreConfig, clock: Clock, seed: u64) -> Arc<Cluster> {
        let (events, _) = broadcast::channel(FANOUT_CAPACITY);
        let cluster = Arc::new(Cluster {
            store: Mutex::new(Store::new(config)),
            events,
            clock,
            rng: Mutex::new(seed | 1),
            event_names: Mutex::new(HashMap::new()),
        });
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            // A fresh cluster always has these; failure would mean a broken store.
            let _ = cluster.create(
                Kind::Namespace,
                "",
                json!({"metadata": {"name": ns}}),
                false,
            );
        }
        cluster
    }

    /// Subscribes to every future commit. Take it under [`Cluster::lock`] with
    /// a revision read so nothing is missed or duplicated.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Every object of each of `kinds`, and a subscription to every later
    /// commit, taken under one lock so a controller (re)starting from it
    /// misses nothing and sees nothing twice.
    pub fn snapshot_and_subscribe(
        &self,
        kinds: &[Kind],
    ) -> (Vec<Vec<Obj>>, broadcast::Receiver<Arc<Event>>) {
        let store = self.lock();
        let rx = self.subscribe();
        let lists = kinds
            .iter()
            .map(|&kind| {
                let q = ListQuery {
                    kind,
                    namespace: None,
                    at: None,
                    after: None,
                    limit: 0,
                    labels: &[],
                };
                store
                    .list(&q, |_| true)
                    .map(|p| p.items)
                    .unwrap_or_default()
            })
            .collect();
        (lists, rx)
    }

    /// The store, for reads that must be consistent with a subscription.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn revision(&self) -> u64 {
        self.lock().revision()
    }

    /// Drops the change history: older resourceVersions now give 410 Gone.
    pub fn compact(&self) {
        self.lock().compact();
    }

    /// Five characters for `generateName`, from Kubernetes' alphabet.
    pub fn name_suffix(&self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut x = self.next_random();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(x % ALPHABET.len() as u64) as usize];
                x /= ALPHABET.len() as u64;
                char::from(c)
            })
            .collect()
    }

    /// A random RFC 4122 version 4 UID, from the cluster's seeded generator
    /// so that a seed gives the same UIDs every run.
    pub fn new_uid(&self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_random().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next_random().to_be_bytes());
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string()
    }

    fn next_random(&self) -> u64 {
        let mut s = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // xorshift64*: names and uids need to be unpredictable enough to not
        // collide, not cryptographically strong.
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn commit(&self, event: Arc<Event>) {
        // No receivers is fine (no watch open).
        let _ = self.events.send(event);
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Obj, ApiError> {
        self.lock()
            .get(kind, namespace, name)
            .ok_or_else(|| ApiError::not_found(kind.resource(), name))
    }

    pub fn list(
        &self,
        q: &ListQuery<'_>,
        keep: impl FnMut(&Value) -> bool,
    ) -> Result<ListPage, ApiError> {
        self.lock().list(q, keep)
    }

    /// POST: validates, defaults, sets server fields and stores.
    pub fn create(
        &self,
        kind: Kind,
        namespace: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Obj, ApiError> {
        let now = self.clock.now_rfc3339();
        let uid = self.new_uid();
        let suffix = self.name_suffix();
        prepare_create(kind, &mut obj, namespace, &uid, &now, &suffix)?;
        let mut store = self.lock();
        if kind.namespaced() {
            let ns_ok = store
                .get(Kind::Namespace, "", namespace)
                .is_some_and(|ns| ns["metadata"].get("deletionTimestamp").is_none());
            if !ns_ok {
                return Err(ApiError::not_found(Kind::Namespace.resource(), namespace));
            }
        }
        if kind == Kind::Pod {
            let sa = obj["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default");
            if store.get(Kind::ServiceAccount, namespace, sa).is_none() {
                let name = obj["metadata"]["name"].as_str().unwrap_or("");
                return Err(ApiError::forbidden(format!(
                    "pods \"{name}\" is forbidden: error looking up service account \
                     {namespace}/{sa}: serviceaccount \"{sa}\" not found"
                )));
            }
        }
        if kind == Kind::Namespace {
            obj["status"] = json!({"phase": "Active"});
        }
        if dry_run {
            return Ok(Arc::new(obj));
        }
        let event = store.create(kind, obj)?;
        let created = event.object.clone();
        self.commit(event);
        if kind == Kind::Namespace {
            let name = created["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let mut sa = json!({"metadata": {"name": "default"}});
            let uid = self.new_uid();
            let suffix = self.name_suffix();
            if prepare_create(Kind::ServiceAccount, &mut sa, &name, &uid, &now, &suffix).is_ok() {
                if let Ok(ev) = store.create(Kind::ServiceAccount, sa) {
                    self.commit(ev);
                }
            }
        }
        Ok(created)
    }

    /// PUT of the object (`status_only = false`) or of its status subresource.
    pub fn update(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        mut new: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Obj, ApiError> {
        let mut store = self.lock();
        let old = store
            .get(kind, namespace, name)
            .ok_or_else(|| ApiError::not_found(kind.resource(), name))?;
        check_name(kind, &new, namespace, name)?;
        let expect =
            match new["metadata"]["resourceVersion"].as_str() {
                None | Some("") => None,
                Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?),
            };
        prepare_update(kind, &old, &mut new, status_only)?;
        if expect.is_some_and(|e| Some(e) != object_rev(&old)) {
            return Err(ApiError::conflict(kind.resource(), name));
        }
        if dry_run {
            return Ok(Arc::new(new));
        }
        self.write(&mut store, kind, new, None)
    }

    /// PATCH of the object or of its status subresource.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        body: &[u8],
        ty: PatchType,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Obj, ApiError> {
        let mut store = self.lock();
        let old = store
            .get(kind, namespace, name)
            .ok_or_else(|| ApiError::not_found(kind.resource(), name))?;
        let mut new = apply_patch(&old, body, ty)?;
        check_name(kind, &new, namespace, name)?;
        let expect = match (
            new["metadata"]["resourceVersion"].as_str(),
            old["metadata"]["resourceVersion"].as_str(),
        ) {
            (Some(n), Some(o)) if n != o => Some(n.to_owned()),
            _ => None,
        };
        if expect.is_some() {
            return Err(ApiError::conflict(kind.resource(), name));
        }
        prepare_update(kind, &old, &mut new, status_only)?;
        if dry_run {
            return Ok(Arc::new(new));
        }
        self.write(&mut store, kind, new, None)
    }

    /// Commits an update, finishing a deletion once the last finalizer is gone.
    fn write(
        &self,
        store: &mut Store,
        kind: Kind,
        new: Value,
        expect: Option<u64>,
    ) -> Result<Obj, ApiError> {
        let deleting = new["metadata"].get("deletionTimestamp").is_some();
        let finalizers_left = new["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let pod_grace_left = kind == Kind::Pod
            && new["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
                > 0;
        let event = store.update(kind, new, expect)?;
        let obj = event.object.clone();
        self.commit(event);
        if deleting && !finalizers_left && !pod_grace_left {
            let (ns, name) = ns_name(&obj);
            let removed = store.remove(kind, &ns, &name)?;
            let last = removed.object.clone();
            self.commit(removed);
            self.after_removed(store, kind, &last);
            return Ok(last);
        }
        Ok(obj)
    }

    /// Controller-side status write: read-modify-write of `.status` with a
    /// closure, retried internally so controllers never see conflicts.
    pub fn update_status_with(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Obj, ApiError> {
        let mut store = self.lock();
        let old = store
            .get(kind, namespace, name)
            .ok_or_else(|| ApiError::not_found(kind.resource(), name))?;
        let mut new = (*old).clone();
        f(&mut new);
        if new == *old {
            return Ok(old);
        }
        self.write(&mut store, kind, new, None)
    }

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
            .ok_or_else(|| ApiError::not_found(kind.resource(), name))?;
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
        if opts.dry_run {
            return Ok(Deleted {
                body: (*obj).clone(),
                warning: None,
            });
        }
        if kind == Kind::Pod {
            return self.delete_pod(store, &obj, opts);
        }
        let policy = opts.propagation.unwrap_or(if kind == Kind::Job {
            Propagation::Orphan
        } else {
            Propagation::Background
        });
        let warning = (kind == Kind::Job && opts.propagation.is_none())
            .then(|| JOB_ORPHAN_WARNING.to_owned());
        let uid = meta["uid"].as_str().unwrap_or("").to_owned();
        let dependents = self.dependents(store, namespace, &uid);
        let has_finalizers = meta["finalizers"].as_array().is_some_and(|f| !f.is_empty());

        if kind == Kind::Namespace {
            return self.delete_namespace(store, &obj);
        }
        match policy {
            Propagation::Orphan if !dependents.is_empty() => {
                // The garbage collector's orphan finalizer: mark, release the
                // dependents, then finish.
                let pending = self.mark_deleting(store, kind, &obj, Some("orphan"))?;
                for pod in dependents {
                    let mut p = (*pod).clone();
                    remove_owner(&mut p, &uid);
                    if let Ok(ev) = store.update(Kind::Pod, p, None) {
                        self.commit(ev);
                    }
                }
                let mut done = (*pending).clone();
                remove_finalizer(&mut done, "orphan");
                self.write(store, kind, done, None)?;
                Ok(Deleted {
                    body: (*pending).clone(),
                    warning,
                })
            }
            Propagation::Foreground if !dependents.is_empty() => {
                let pending = self.mark_deleting(store, kind, &obj, Some("foregroundDeletion"))?;
                for pod in dependents {
                    let (ns, pname) = ns_name(&pod);
                    let _ = self.delete_pod(
                        store,
                        &pod,
                        &DeleteOptions {
                            grace_period_seconds: opts.grace_period_seconds,
                            ..DeleteOptions::default()
                        },
                    );
                    let _ = (ns, pname);
                }
                let body = store
                    .get(kind, namespace, name)
                    .map(|o| (*o).clone())
                    .unwrap_or_else(|| (*pending).clone());
                Ok(Deleted { body, warning })
            }
            _ if has_finalizers => {
                let pending = self.mark_deleting(store, kind, &obj, None)?;
                Ok(Deleted {
                    body: (*pending).clone(),
                    warning,
                })
            }
            _ => {
                let removed = store.remove(kind, namespace, name)?;
                let last = removed.object.clone();
                self.commit(removed);
                if policy != Propagation::Orphan {
                    for pod in dependents {
                        let _ = self.delete_pod(store, &pod, &DeleteOptions::default());
                    }
                }
                let body = if kind == Kind::Job {
                    let r = kind.resource();
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Success",
                           "details": {"name": name, "group": r.group, "kind": r.plural,
                                       "uid": last["metadata"]["uid"]}})
                } else {
                    (*last).clone()
                };
                Ok(Deleted { body, warning })
            }
        }
    }

    /// Graceful pod deletion: scheduled pods get a deletionTimestamp and are
    /// removed by the kubelet once stopped; unscheduled ones go at once.
    fn delete_pod(
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
                body: (*last).clone(),
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
            body: (*obj).clone(),
            warning: None,
        })
    }

    /// The kubelet's final delete once a terminating pod's containers stopped.
    pub fn finish_pod_deletion(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        let mut store = self.lock();
        let Some(pod) = store.get(Kind::Pod, namespace, name) else {
            return Ok(());
        };
        let mut p = (*pod).clone();
        p["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        if p["metadata"].get("deletionTimestamp").is_none() {
            p["metadata"]["deletionTimestamp"] = json!(self.clock.now_rfc3339());
        }
        self.write(&mut store, Kind::Pod, p, None).map(|_| ())
    }

    fn mark_deleting(
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
    fn dependents(&self, store: &Store, namespace: &str, uid: &str) -> Vec<Obj> {
        if uid.is_empty() {
            return Vec::new();
        }
        store.owned_by(Kind::Pod, namespace, uid)
    }

    /// Garbage collection after an object is gone: a Foreground owner whose
    /// last dependent went is deleted in turn.
    fn after_removed(&self, store: &mut Store, kind: Kind, obj: &Value) {
        if kind != Kind::Pod {
            return;
        }
        let (ns, _) = ns_name(obj);
        let Some(refs) = obj["metadata"]["ownerReferences"].as_array() else {
            return;
        };
        for r in refs {
            if r["kind"] != "Job" {
                continue;
            }
            let (Some(owner), Some(uid)) = (r["name"].as_str(), r["uid"].as_str()) else {
                continue;
            };
            let Some(job) = store.get(Kind::Job, &ns, owner) else {
                continue;
            };
            let foreground = job["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"));
            if job["metadata"]["uid"] == uid
                && foreground
                && self.dependents(store, &ns, uid).is_empty()
            {
                let mut j = (*job).clone();
                remove_finalizer(&mut j, "foregroundDeletion");
                let _ = self.write(store, Kind::Job, j, None);
            }
        }
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
                let (_, name) = ns_name(&item);
                if let Ok(ev) = store.remove(kind, &ns, &name) {
                    self.commit(ev);
                }
            }
        }
        if let Ok(ev) = store.remove(Kind::Namespace, "", &ns) {
            self.commit(ev);
        }
        Ok(Deleted {
            body: (*pending).clone(),
            warning: None,
        })
    }

    /// Records an Event about `obj` (kind `involved_kind`), aggregating repeats
    /// into `count` as the real event recorder does.
    pub fn record_event(
        &self,
        involved_kind: Kind,
        obj: &Value,
        type_: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let (ns, name) = ns_name(obj);
        let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let now = self.clock.now_rfc3339();
        let key = (
            ns.clone(),
            uid.clone(),
            reason.to_owned(),
            message.to_owned(),
        );
        let existing = self
            .event_names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(event_name) = existing {
            let bumped = self.update_status_with(Kind::Event, &ns, &event_name, |e| {
                let count = e["count"].as_i64().unwrap_or(1) + 1;
                e["count"] = json!(count);
                e["lastTimestamp"] = json!(now);
            });
            if bumped.is_ok() {
                return;
            }
        }
        let event_name = format!("{name}.{:016x}", self.next_random());
        let body = json!({
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": {
                "kind": involved_kind.kind_name(), "apiVersion": involved_kind.api_version(),
                "namespace": ns, "name": name, "uid": uid,
                "resourceVersion": obj["metadata"]["resourceVersion"],
            },
            "reason": reason, "message": message, "type": type_,
            "source": {"component": component},
            "reportingComponent": component, "reportingInstance": "",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        if self.create(Kind::Event, &ns, body, false).is_ok() {
            self.event_names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key, event_name);
        }
    }
}

/// The namespace and name of a stored object.
pub fn ns_name(obj: &Value) -> (String, String) {
    let meta = &obj["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("").to_owned(),
        meta["name"].as_str().unwrap_or("").to_owned(),
    )
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

fn remove_finalizer(obj: &mut Value, name: &str) {
    if let Some(meta) = obj["metadata"].as_object_mut() {
        if let Some(Value::Array(f)) = meta.get_mut("finalizers") {
            f.retain(|x| x != name);
            if f.is_empty() {
                meta.remove("finalizers");
            }
        }
    }
}

fn check_name(kind: Kind, obj: &Value, namespace: &str, name: &str) -> Result<(), ApiError> {
    let meta = obj.get("metadata").and_then(Value::as_object);
    let body_name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    if body_name.is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            body_name.unwrap_or("")
        )));
    }
    let body_ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    if kind.namespaced() && body_ns.is_some_and(|n| !n.is_empty() && n != namespace) {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
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

/// Adds `kind`/`apiVersion` to a stored object, as single-object responses
/// and watch events carry them.
/// An object serialized with its `apiVersion` and `kind`, without copying
/// it. Keys come out sorted, as from [`with_type_meta`]'s map.
#[derive(Debug, Clone, Copy)]
pub struct Typed<'a>(pub Kind, pub &'a Value);

impl serde::Serialize for Typed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(obj) = self.1.as_object() else {
            return self.1.serialize(s);
        };
        let mut map = s.serialize_map(None)?;
        let mut head = [
            ("apiVersion", self.0.api_version()),
            ("kind", self.0.kind_name()),
        ]
        .into_iter()
        .peekable();
        for (k, v) in obj {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            while let Some((hk, hv)) = head.next_if(|(hk, _)| *hk < k.as_str()) {
                map.serialize_entry(hk, hv)?;
            }
            map.serialize_entry(k, v)?;
        }
        for (hk, hv) in head {
            map.serialize_entry(hk, hv)?;
        }
        map.end()
    }
}

pub fn with_type_meta(kind: Kind, obj: &Value) -> Value {
    let mut out = Map::with_capacity(obj.as_object().map_or(0, Map::len) + 2);
    out.insert("kind".into(), json!(kind.kind_name()));
    out.insert("apiVersion".into(), json!(kind.api_version()));
    if let Some(o) = obj.as_object() {
        for (k, v) in o {
            if k != "apiVersion" && k != "kind" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod typed_tests {
    use super::*;

    #[test]
    fn uids_are_version_4_and_follow_the_seed() {
        let uids = |seed| {
            let c = Cluster::new(StoreConfig::default(), Clock::virtual_at(0), seed);
            (0..3).map(|_| c.new_uid()).collect::<Vec<_>>()
        };
        let a = uids(42);
        assert_eq!(a, uids(42));
        assert_ne!(a, uids(44));
        for uid in &a {
            let parsed = uuid::Uuid::parse_str(uid).unwrap();
            assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(parsed.hyphenated().to_string(), *uid);
        }
    }

    #[test]
    fn typed_serializes_exactly_like_with_type_meta() {
        let objects = [
            json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {}}),
            json!({"data": {"k": "v"}, "metadata": {"name": "b"}, "type": "Opaque"}),
            json!({"apiVersion": "stale", "kind": "Stale", "metadata": {}}),
            json!({"involvedObject": {"kind": "Pod"}, "message": "m", "reason": "r"}),
        ];
        for kind in [Kind::Job, Kind::Pod, Kind::Secret, Kind::Event] {
            for o in &objects {
                assert_eq!(
                    serde_json::to_string(&Typed(kind, o)).unwrap(),
                    serde_json::to_string(&with_type_meta(kind, o)).unwrap()
                );
            }
        }
    }
}
