//! The API server's semantics, independent of HTTP: create, read, update,
//! patch and delete with Kubernetes rules (server-set fields, resourceVersion
//! preconditions, finalizers, graceful pod deletion, propagation policies and
//! garbage collection of dependents), plus Events. Every commit is published
//! to the watch fan-out in revision order.
//!
//! Layout: `write` (create, update, patch), `delete` (deletion with
//! preconditions and propagation policies), `gc` (graceful pod deletion,
//! finalizers and the garbage collector), `events` (the event recorder),
//! `typed` (objects with their type meta, for responses and watch events).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::clock::Clock;
use super::status::ApiError;
use super::store::{Event, ListPage, ListQuery, Obj, Store, StoreConfig, Stored};
use super::validate::Kind;

mod delete;
mod events;
mod gc;
mod typed;
mod write;

pub use delete::{DeleteOptions, Deleted, Propagation};
pub use typed::with_type_meta;
pub use write::{PatchRequest, Patched};

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
    /// Event names by a hash of (namespace, involved uid, reason, message),
    /// so repeats bump `count` as the real event recorder does. A hash, not
    /// the four strings: one entry per Event ever recorded, and a hit is
    /// checked against the stored Event.
    event_names: Mutex<HashMap<u64, Vec<Box<str>>>>,
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
        keep: impl FnMut(&Stored) -> bool,
    ) -> Result<ListPage, ApiError> {
        self.lock().list(q, keep)
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

#[cfg(test)]
mod tests;
