//! Writes: create (server-set fields, the namespace and service account
//! checks, a namespace's default service account), update (with its
//! resourceVersion precondition) and patch (unknown fields handled as
//! `fieldValidation` says; server-side apply creating what does not exist
//! yet), of objects and of their status subresource.

use std::sync::Arc;

use serde_json::{json, Value};

use super::Cluster;
use crate::patch::{apply_patch, PatchType};
use crate::status::ApiError;
use crate::store::{stamp, Event, Obj, Store, Stored};
use crate::validate::fields::{self, FieldValidation};
use crate::validate::{prepare_create, prepare_update, Kind};

/// A PATCH request, as the API server takes it.
#[derive(Debug, Clone, Copy)]
pub struct PatchRequest<'a> {
    pub body: &'a [u8],
    pub ty: PatchType,
    /// To the status subresource.
    pub status_only: bool,
    /// `dryRun=All`: everything but the commit.
    pub dry_run: bool,
    /// What to do with fields the schema does not declare.
    pub fields: FieldValidation,
}

/// What a PATCH did.
#[derive(Debug, Clone)]
pub struct Patched {
    pub object: Obj,
    /// Server-side apply created the object (201 rather than 200).
    pub created: bool,
    /// `Warning` texts: the unknown fields dropped under `Warn`.
    pub warnings: Vec<String>,
}

impl Cluster {
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
        if kind == Kind::Namespace {
            obj["status"] = json!({"phase": "Active"});
        }
        // Serialized before the lock: see `store/version.rs`.
        let built = Stored::new(&obj);
        let mut store = self.lock();
        if kind.namespaced() {
            let ns_ok = store
                .get(Kind::Namespace, "", namespace)
                .is_some_and(|ns| !ns.deleting());
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
        if dry_run {
            return Ok(Arc::new(built));
        }
        let event = store.create_stored(kind, built)?;
        let created = event.object.clone();
        self.commit(event);
        if kind == Kind::Namespace {
            let name = created.name().to_owned();
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
        let old_rev = old.rev();
        let old = old.value();
        check_name(kind, &new, namespace, name)?;
        let expect =
            match new["metadata"]["resourceVersion"].as_str() {
                None | Some("") => None,
                Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?),
            };
        prepare_update(kind, &old, &mut new, status_only)?;
        if expect.is_some_and(|e| e != old_rev) {
            return Err(ApiError::conflict(kind.resource(), name));
        }
        if dry_run {
            return Ok(Arc::new(Stored::new(&new)));
        }
        self.write(&mut store, kind, new, None)
    }

    /// PATCH of the object or of its status subresource. Server-side apply
    /// of an object that does not exist creates it, as on a real server.
    pub fn patch(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        req: &PatchRequest<'_>,
    ) -> Result<Patched, ApiError> {
        let mut store = self.lock();
        let Some(old) = store.get(kind, namespace, name).map(|o| o.value()) else {
            drop(store);
            if req.ty == PatchType::Apply && !req.status_only {
                return self.create_by_apply(kind, namespace, name, req);
            }
            return Err(ApiError::not_found(kind.resource(), name));
        };
        let mut new = apply_patch(&old, req.body, req.ty)?;
        check_name(kind, &new, namespace, name)?;
        let warnings = check_fields(kind, namespace, name, &mut new, req)?;
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
        prepare_update(kind, &old, &mut new, req.status_only)?;
        let object = if req.dry_run {
            Arc::new(Stored::new(&new))
        } else {
            self.write(&mut store, kind, new, None)?
        };
        Ok(Patched {
            object,
            created: false,
            warnings,
        })
    }

    /// The applied configuration becomes the object, named by the URL when
    /// it names nothing itself.
    fn create_by_apply(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        req: &PatchRequest<'_>,
    ) -> Result<Patched, ApiError> {
        let mut obj = apply_patch(&json!({}), req.body, PatchType::Apply)?;
        check_name(kind, &obj, namespace, name)?;
        let warnings = check_fields(kind, namespace, name, &mut obj, req)?;
        if let Some(meta) = obj
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        {
            meta.insert("name".into(), json!(name));
        }
        let object = self.create(kind, namespace, obj, req.dry_run)?;
        Ok(Patched {
            object,
            created: true,
            warnings,
        })
    }

    /// Commits an update, finishing a deletion once the last finalizer is gone.
    pub(super) fn write(
        &self,
        store: &mut Store,
        kind: Kind,
        mut new: Value,
        expect: Option<u64>,
    ) -> Result<Obj, ApiError> {
        self.write_in_place(store, kind, &mut new, expect)
    }

    /// [`Cluster::write`], leaving `new` as stored.
    fn write_in_place(
        &self,
        store: &mut Store,
        kind: Kind,
        new: &mut Value,
        expect: Option<u64>,
    ) -> Result<Obj, ApiError> {
        let event = store.update_in_place(kind, new, expect)?;
        self.finish_write(store, kind, new, event)
    }

    /// Publishes a committed update, then finishes a deletion once `new` (the
    /// object as written) has no finalizer and no grace period left.
    fn finish_write(
        &self,
        store: &mut Store,
        kind: Kind,
        new: &Value,
        event: Arc<Event>,
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
        let obj = event.object.clone();
        self.commit(event);
        if deleting && !finalizers_left && !pod_grace_left {
            let removed = store.remove(kind, obj.namespace(), obj.name())?;
            let last = removed.object.clone();
            self.commit(removed);
            self.after_removed(store, kind, &last);
            return Ok(last);
        }
        Ok(obj)
    }

    /// Controller-side status write: read-modify-write of `.status` with a
    /// closure, retried internally so controllers never see conflicts. The
    /// closure says whether it changed anything: an unchanged object is not
    /// written (no new revision, no watch event), as a real controller skips
    /// an update that would change nothing.
    pub fn update_status_with(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        f: impl FnMut(&mut Value) -> bool,
    ) -> Result<Obj, ApiError> {
        self.modify(kind, namespace, name, None, f)
            .map(|(obj, _)| obj)
    }

    /// [`Cluster::update_status_with`] on `base`, the object as the caller
    /// parsed it at a revision: used as is when the object has not changed
    /// since (parsing it again was a good part of a Job reconcile).
    pub fn update_status_from(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        base: (u64, Value),
        f: impl FnMut(&mut Value) -> bool,
    ) -> Result<Obj, ApiError> {
        self.modify(kind, namespace, name, Some(base), f)
            .map(|(obj, _)| obj)
    }

    /// [`Cluster::update_status_from`] that also gives back the object as
    /// stored after the write, with its revision: the base of the writer's
    /// next change (the kubelet writes each pod's status several times).
    pub fn update_status_kept(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        base: Option<(u64, Value)>,
        f: impl FnMut(&mut Value) -> bool,
    ) -> Result<(u64, Value), ApiError> {
        self.modify(kind, namespace, name, base, f)
            .map(|(obj, value)| (obj.rev(), value))
    }

    /// Parses and changes the object outside the store's lock (the parse was
    /// most of the time the lock was held, and the kubelet's pod tasks, the
    /// controller and the server's handlers queued on it), then commits under
    /// the lock if nobody wrote the object meanwhile; otherwise again on the
    /// newer version.
    fn modify(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        mut base: Option<(u64, Value)>,
        mut f: impl FnMut(&mut Value) -> bool,
    ) -> Result<(Obj, Value), ApiError> {
        loop {
            let old = self.get(kind, namespace, name)?;
            let mut new = match base.take() {
                Some((rev, value)) if rev == old.rev() => value,
                _ => old.value(),
            };
            if !f(&mut new) {
                return Ok((old, new));
            }
            let built = Stored::next(&new, Some(&old));
            let mut store = self.lock();
            let current = store.get(kind, namespace, name);
            if current.is_some_and(|c| Arc::ptr_eq(&c, &old)) {
                let event = store.replace_stored(kind, old, built);
                let rev = event.rev;
                let obj = self.finish_write(&mut store, kind, &new, event)?;
                drop(store);
                stamp(&mut new, rev);
                return Ok((obj, new));
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

/// Unknown fields of a patched object: as `fieldValidation` says, or, for
/// server-side apply, always refused as structured-merge-diff refuses them.
fn check_fields(
    kind: Kind,
    namespace: &str,
    name: &str,
    obj: &mut Value,
    req: &PatchRequest<'_>,
) -> Result<Vec<String>, ApiError> {
    let directive = if req.ty == PatchType::Apply {
        FieldValidation::Strict
    } else {
        req.fields
    };
    fields::check(kind, obj, directive).map_err(|unknown| {
        if req.ty == PatchType::Apply {
            unknown.apply_error(kind, namespace, name)
        } else {
            ApiError::bad_request(unknown.decoding_error())
        }
    })
}
