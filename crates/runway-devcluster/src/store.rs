//! The dev cluster's storage: one global revision shared by every kind, as
//! etcd gives the real API server, current objects by key, and a bounded log
//! of changes that serves watch resumption and lists at an older revision.
//! Synchronous and pure: the server wraps it in a lock and fans events out.
//!
//! Layout: `list` (lists at the current revision or a snapshot, paginated),
//! `index` (the label and owner indexes that keep lists and the garbage
//! collector from scanning every object).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};

use super::status::ApiError;
use super::validate::Kind;

/// A stored object (wire JSON without `kind`/`apiVersion`, as lists return
/// them, and its indexed fields).
pub type Obj = Arc<Stored>;

/// What a change did to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct Event {
    pub rev: u64,
    pub kind: Kind,
    pub ty: EventType,
    /// The object after the change; for a delete, the final object stamped
    /// with the deletion revision.
    pub object: Obj,
    /// The object before the change (none for a create).
    pub prev: Option<Obj>,
}

/// Where an object lives: kind, namespace (empty for cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    kind: u8,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Key {
        Key {
            kind: kind as u8,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn of(kind: Kind, obj: &Stored) -> Key {
        Key::new(kind, obj.namespace(), obj.name())
    }
}

/// Store settings.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    /// How many changes the log keeps; older revisions are compacted (410 Gone).
    pub history: usize,
    /// The first revision handed out. A large value (about 10^12) catches
    /// clients that treat resourceVersion as a small number.
    pub first_revision: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            history: 100_000,
            first_revision: 1,
        }
    }
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Obj>,
    /// The revision the list was served at.
    pub rev: u64,
    /// The key to continue after, when `limit` cut the list.
    pub next: Option<Key>,
    pub remaining: u64,
}

/// What to list.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery<'a> {
    pub kind: Kind,
    /// `None`: all namespaces.
    pub namespace: Option<&'a str>,
    /// Serve at this revision (a snapshot); `None`: the current one.
    pub at: Option<u64>,
    /// Start strictly after this key (pagination).
    pub after: Option<&'a Key>,
    /// At most this many matching items; 0 means no limit.
    pub limit: usize,
    /// `key=value` label terms every item must satisfy (on top of the
    /// caller's filter). Current-revision lists read only the objects the
    /// label index holds for the rarest term instead of the whole kind.
    pub labels: &'a [(&'a str, &'a str)],
}

#[derive(Debug)]
pub struct Store {
    rev: u64,
    objects: BTreeMap<Key, Obj>,
    log: VecDeque<Arc<Event>>,
    /// Revisions at or below this are no longer in the log.
    compacted: u64,
    history: usize,
    /// Current objects by label key, then value: Dagster and the Job
    /// controller list pods by `job-name=` or `dagster/run-id=`, and a scan of
    /// every pod per list made those lists grow with the cluster.
    by_label: HashMap<String, HashMap<String, KeySet>>,
    /// Current objects by the uid of each of their owner references, for the
    /// garbage collector's dependents.
    by_owner: HashMap<String, KeySet>,
}

impl Store {
    pub fn new(config: StoreConfig) -> Store {
        let start = config.first_revision.max(1) - 1;
        Store {
            rev: start,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            compacted: start,
            history: config.history.max(1),
            by_label: HashMap::new(),
            by_owner: HashMap::new(),
        }
    }

    /// The current revision.
    pub fn revision(&self) -> u64 {
        self.rev
    }

    /// The oldest revision a watch or list can still start from.
    pub fn compacted_revision(&self) -> u64 {
        self.compacted
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Obj> {
        self.objects.get(&Key::new(kind, namespace, name)).cloned()
    }

    /// Stores a new object. The caller has validated and defaulted it.
    pub fn create(&mut self, kind: Kind, obj: Value) -> Result<Arc<Event>, ApiError> {
        self.create_stored(kind, Stored::new(&obj))
    }

    /// [`Store::create`] of an object built before the lock was taken.
    pub fn create_stored(&mut self, kind: Kind, built: Stored) -> Result<Arc<Event>, ApiError> {
        let key = Key::new(kind, built.namespace(), built.name());
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(kind.resource(), &key.name));
        }
        let rev = self.next_rev();
        let obj = Arc::new(built.at(rev));
        self.index(&key, &obj);
        self.objects.insert(key, obj.clone());
        Ok(self.record(rev, kind, EventType::Added, obj, None))
    }

    /// Replaces an object. With `expect_rev`, a stale write is a 409 Conflict.
    pub fn update(
        &mut self,
        kind: Kind,
        mut obj: Value,
        expect_rev: Option<u64>,
    ) -> Result<Arc<Event>, ApiError> {
        self.update_in_place(kind, &mut obj, expect_rev)
    }

    /// [`Store::update`] that leaves the caller the object as stored (with
    /// its new resourceVersion), to change again without parsing it.
    pub fn update_in_place(
        &mut self,
        kind: Kind,
        obj: &mut Value,
        expect_rev: Option<u64>,
    ) -> Result<Arc<Event>, ApiError> {
        let key = Key::new(kind, str_at(obj, "namespace"), str_at(obj, "name"));
        let prev = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind.resource(), &key.name))?;
        if let Some(expected) = expect_rev {
            if prev.rev() != expected {
                return Err(ApiError::conflict(kind.resource(), &key.name));
            }
        }
        let built = Stored::next(obj, Some(&prev));
        let event = self.replace_stored(kind, prev, built);
        stamp(obj, event.rev);
        Ok(event)
    }

    /// Commits `built`, a new version of `prev` (the current object, as the
    /// caller checked under the lock) built before the lock was taken.
    pub fn replace_stored(&mut self, kind: Kind, prev: Obj, built: Stored) -> Arc<Event> {
        let key = Key::new(kind, prev.namespace(), prev.name());
        let rev = self.next_rev();
        let obj = Arc::new(built.at(rev));
        if !prev.same_index(&obj) {
            self.unindex(&key, &prev);
            self.index(&key, &obj);
        }
        self.objects.insert(key, obj.clone());
        self.record(rev, kind, EventType::Modified, obj, Some(prev))
    }

    /// Removes an object for good (finalizers and grace are the caller's).
    pub fn remove(
        &mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Event>, ApiError> {
        let key = Key::new(kind, namespace, name);
        let prev = self
            .objects
            .remove(&key)
            .ok_or_else(|| ApiError::not_found(kind.resource(), name))?;
        self.unindex(&key, &prev);
        let rev = self.next_rev();
        let last = Arc::new(prev.restamped(rev));
        Ok(self.record(rev, kind, EventType::Deleted, last, Some(prev)))
    }

    /// Every change after `rev`, oldest first; 410 Expired when compacted.
    pub fn events_after(&self, rev: u64) -> Result<Vec<Arc<Event>>, ApiError> {
        if rev < self.compacted {
            return Err(too_old(rev, self.compacted));
        }
        let skip = self.log.partition_point(|e| e.rev <= rev);
        Ok(self.log.iter().skip(skip).cloned().collect())
    }

    /// Forgets the log up to the current revision: any older resourceVersion
    /// now gives 410 Gone.
    pub fn compact(&mut self) {
        self.log.clear();
        self.compacted = self.rev;
    }

    fn next_rev(&mut self) -> u64 {
        self.rev += 1;
        self.rev
    }

    fn record(
        &mut self,
        rev: u64,
        kind: Kind,
        ty: EventType,
        object: Obj,
        prev: Option<Obj>,
    ) -> Arc<Event> {
        let event = Arc::new(Event {
            rev,
            kind,
            ty,
            object,
            prev,
        });
        self.log.push_back(event.clone());
        while self.log.len() > self.history {
            if let Some(old) = self.log.pop_front() {
                self.compacted = old.rev;
            }
        }
        event
    }
}

/// The revision stamped on a stored object.
pub fn object_rev(obj: &Value) -> Option<u64> {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
}

/// A `metadata` string field of an object about to be stored.
fn str_at<'v>(obj: &'v Value, field: &str) -> &'v str {
    obj["metadata"][field].as_str().unwrap_or("")
}

/// Writes the revision a commit gave into the caller's copy of the object.
pub fn stamp(obj: &mut Value, rev: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(rev.to_string()));
    }
}

fn too_old(rev: u64, compacted: u64) -> ApiError {
    ApiError::expired(format!("too old resource version: {rev} ({compacted})"))
}

mod index;
mod keyset;
mod list;
mod meta;
mod stored;
mod version;

use keyset::KeySet;

pub use stored::{Owner, Phase, Stored};

#[cfg(test)]
mod tests;
