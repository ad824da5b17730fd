//! The dev cluster's storage: one global revision shared by every kind, as
//! etcd gives the real API server, current objects by key, and a bounded log
//! of changes that serves watch resumption and lists at an older revision.
//! Synchronous and pure: the server wraps it in a lock and fans events out.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};

use super::status::ApiError;
use super::validate::Kind;

/// A stored object (wire JSON without `kind`/`apiVersion`, as lists return them).
pub type Obj = Arc<Value>;

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

    fn of(kind: Kind, obj: &Value) -> Key {
        let meta = &obj["metadata"];
        Key::new(
            kind,
            meta["namespace"].as_str().unwrap_or(""),
            meta["name"].as_str().unwrap_or(""),
        )
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
    by_label: HashMap<String, HashMap<String, BTreeSet<Key>>>,
    /// Current objects by the uid of each of their owner references, for the
    /// garbage collector's dependents.
    by_owner: HashMap<String, BTreeSet<Key>>,
}

/// What no label index entry holds.
static NO_KEYS: BTreeSet<Key> = BTreeSet::new();

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
    pub fn create(&mut self, kind: Kind, mut obj: Value) -> Result<Arc<Event>, ApiError> {
        let key = Key::of(kind, &obj);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(kind.resource(), &key.name));
        }
        let rev = self.next_rev();
        stamp(&mut obj, rev);
        let obj = Arc::new(obj);
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
        let key = Key::of(kind, &obj);
        let prev = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind.resource(), &key.name))?;
        if let Some(expected) = expect_rev {
            if object_rev(&prev) != Some(expected) {
                return Err(ApiError::conflict(kind.resource(), &key.name));
            }
        }
        let rev = self.next_rev();
        stamp(&mut obj, rev);
        let obj = Arc::new(obj);
        let (old, new) = (&prev["metadata"], &obj["metadata"]);
        if old["labels"] != new["labels"] || old["ownerReferences"] != new["ownerReferences"] {
            self.unindex(&key, &prev);
            self.index(&key, &obj);
        }
        self.objects.insert(key, obj.clone());
        Ok(self.record(rev, kind, EventType::Modified, obj, Some(prev)))
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
        let mut last = (*prev).clone();
        stamp(&mut last, rev);
        Ok(self.record(rev, kind, EventType::Deleted, Arc::new(last), Some(prev)))
    }

    /// Objects of a kind in key order (namespace/name, as etcd returns them),
    /// filtered by `keep`, at the current revision or a snapshot.
    pub fn list(
        &self,
        q: &ListQuery<'_>,
        mut keep: impl FnMut(&Value) -> bool,
    ) -> Result<ListPage, ApiError> {
        let at = q.at.unwrap_or(self.rev);
        if at > self.rev {
            return Err(ApiError::timeout(format!(
                "Too large resource version: {at}, current: {}",
                self.rev
            )));
        }
        let lo = Key {
            kind: q.kind as u8,
            namespace: q.namespace.unwrap_or("").to_owned(),
            name: String::new(),
        };
        let in_scope =
            |k: &Key| k.kind == q.kind as u8 && q.namespace.is_none_or(|ns| k.namespace == ns);
        let start = match q.after {
            Some(after) if *after >= lo => std::ops::Bound::Excluded(after.clone()),
            _ => std::ops::Bound::Included(lo),
        };
        let range = (start, std::ops::Bound::Unbounded);
        let snapshot;
        let source: Box<dyn Iterator<Item = (&Key, &Obj)>> = if at != self.rev {
            snapshot = self.snapshot(q.kind, at)?;
            Box::new(snapshot.range(range))
        } else if let Some(keys) = self.rarest(q.labels) {
            Box::new(
                keys.range(range)
                    .filter_map(|k| self.objects.get_key_value(k)),
            )
        } else {
            Box::new(self.objects.range(range))
        };
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0u64;
        for (key, obj) in source {
            if !in_scope(key) {
                break;
            }
            if !has_labels(obj, q.labels) || !keep(obj) {
                continue;
            }
            if q.limit > 0 && items.len() == q.limit {
                remaining += 1;
                continue;
            }
            if q.limit > 0 && items.len() + 1 == q.limit {
                next = Some(key.clone());
            }
            items.push(obj.clone());
        }
        if remaining == 0 {
            next = None;
        }
        Ok(ListPage {
            items,
            rev: at,
            next,
            remaining,
        })
    }

    /// Current objects of `kind` in `namespace` with an owner reference to
    /// `uid`, in key order.
    pub fn owned_by(&self, kind: Kind, namespace: &str, uid: &str) -> Vec<Obj> {
        let lo = Key::new(kind, namespace, "");
        self.by_owner
            .get(uid)
            .into_iter()
            .flat_map(|keys| keys.range(&lo..))
            .take_while(|k| k.kind == kind as u8 && k.namespace == namespace)
            .filter_map(|k| self.objects.get(k).cloned())
            .collect()
    }

    /// The index entry of the term with the fewest objects; `None` when
    /// there are no terms (scan the kind).
    fn rarest(&self, terms: &[(&str, &str)]) -> Option<&BTreeSet<Key>> {
        terms
            .iter()
            .map(|(k, v)| {
                self.by_label
                    .get(*k)
                    .and_then(|values| values.get(*v))
                    .unwrap_or(&NO_KEYS)
            })
            .min_by_key(|keys| keys.len())
    }

    fn index(&mut self, key: &Key, obj: &Value) {
        for (k, v) in labels_of(obj) {
            self.by_label
                .entry(k.to_owned())
                .or_default()
                .entry(v.to_owned())
                .or_default()
                .insert(key.clone());
        }
        for uid in owner_uids(obj) {
            self.by_owner
                .entry(uid.to_owned())
                .or_default()
                .insert(key.clone());
        }
    }

    fn unindex(&mut self, key: &Key, obj: &Value) {
        for (k, v) in labels_of(obj) {
            if let Some(values) = self.by_label.get_mut(k) {
                if let Some(keys) = values.get_mut(v) {
                    keys.remove(key);
                    if keys.is_empty() {
                        values.remove(v);
                    }
                }
                if values.is_empty() {
                    self.by_label.remove(k);
                }
            }
        }
        for uid in owner_uids(obj) {
            if let Some(keys) = self.by_owner.get_mut(uid) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_owner.remove(uid);
                }
            }
        }
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

    /// The objects of `kind` as they were at `rev`, undoing later changes.
    fn snapshot(&self, kind: Kind, rev: u64) -> Result<BTreeMap<Key, Obj>, ApiError> {
        if rev < self.compacted {
            return Err(too_old(rev, self.compacted));
        }
        let mut map: BTreeMap<Key, Obj> = self
            .objects
            .iter()
            .filter(|(k, _)| k.kind == kind as u8)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for event in self.log.iter().rev().take_while(|e| e.rev > rev) {
            if event.kind as u8 != kind as u8 {
                continue;
            }
            let key = Key::of(kind, &event.object);
            match &event.prev {
                Some(prev) => {
                    map.insert(key, prev.clone());
                }
                None => {
                    map.remove(&key);
                }
            }
        }
        Ok(map)
    }
}

/// String-valued labels; anything else is equal to no selector value.
fn labels_of(obj: &Value) -> impl Iterator<Item = (&str, &str)> {
    obj["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
}

fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
}

fn has_labels(obj: &Value, terms: &[(&str, &str)]) -> bool {
    let labels = &obj["metadata"]["labels"];
    terms.iter().all(|(k, v)| labels[*k].as_str() == Some(*v))
}

/// The revision stamped on a stored object.
pub fn object_rev(obj: &Value) -> Option<u64> {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
}

fn stamp(obj: &mut Value, rev: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(rev.to_string()));
    }
}

fn too_old(rev: u64, compacted: u64) -> ApiError {
    ApiError::expired(format!("too old resource version: {rev} ({compacted})"))
}

#[cfg(test)]
mod tests;
