//! Revocations: the task ids `celery.pidbox` revoked, and the signals that
//! stop the steps running here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Task ids revoked through `celery.pidbox`, kept as Celery keeps them (a
/// bounded set), and the running tasks to stop.
#[derive(Debug, Default)]
pub struct Revocations {
    inner: Mutex<RevokedInner>,
}

#[derive(Debug, Default)]
struct RevokedInner {
    ids: HashSet<String>,
    order: VecDeque<String>,
    /// Revoked with `terminate` (their `task-revoked` event says so).
    terminated: HashSet<String>,
    running: HashMap<String, watch::Sender<bool>>,
}

/// Celery's `REVOKES_MAX`.
const REVOKES_MAX: usize = 50_000;

impl Revocations {
    /// Revokes `id`: a running step is stopped (its Job deleted, REVOKED
    /// stored once it ended); a later delivery is answered REVOKED. `true`
    /// when the task was running here.
    pub fn revoke(&self, id: &str, terminate: bool) -> bool {
        let mut g = lock(&self.inner);
        if g.ids.insert(id.to_owned()) {
            g.order.push_back(id.to_owned());
            if g.order.len() > REVOKES_MAX {
                if let Some(old) = g.order.pop_front() {
                    g.ids.remove(&old);
                    g.terminated.remove(&old);
                }
            }
        }
        if terminate {
            g.terminated.insert(id.to_owned());
        }
        match g.running.get(id) {
            Some(tx) => {
                tx.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// Whether `id` was revoked with `terminate`.
    pub fn terminated(&self, id: &str) -> bool {
        lock(&self.inner).terminated.contains(id)
    }

    /// The revoked ids, oldest first (`inspect revoked`).
    pub fn ids(&self) -> Vec<String> {
        lock(&self.inner).order.iter().cloned().collect()
    }

    pub fn is_revoked(&self, id: &str) -> bool {
        lock(&self.inner).ids.contains(id)
    }

    /// A running task's revocation signal; `None` when the id is already revoked.
    pub fn running(self: &Arc<Self>, id: &str) -> RevokeWait {
        let (tx, rx) = watch::channel(false);
        let mut g = lock(&self.inner);
        if g.ids.contains(id) {
            tx.send_replace(true);
        }
        g.running.insert(id.to_owned(), tx);
        RevokeWait {
            revocations: self.clone(),
            id: id.to_owned(),
            rx,
        }
    }
}

#[derive(Debug)]
pub struct RevokeWait {
    revocations: Arc<Revocations>,
    id: String,
    pub rx: watch::Receiver<bool>,
}

impl Drop for RevokeWait {
    fn drop(&mut self) {
        lock(&self.revocations.inner).running.remove(&self.id);
    }
}
