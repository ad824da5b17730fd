//! An in-memory [`ResultStore`] for tests: claims with their holders and
//! expiry on tokio's clock, stored metas, and a switch that makes the store
//! unreachable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::backend::{Claim, Error, ResultStore};

/// Shared state of one in-memory backend (several workers' pools can use one).
#[derive(Debug, Default)]
pub struct MemoryStore {
    claims: Mutex<HashMap<String, (String, Instant)>>,
    results: Mutex<HashMap<String, Vec<String>>>,
    /// STARTED records, by task id: the worker that started it.
    started: Mutex<HashMap<String, String>>,
    /// While set, every call fails as an unreachable Redis would.
    pub down: AtomicBool,
    /// Calls that failed because the store was down.
    pub refused: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    fn up(&self) -> Result<(), Error> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(Error::Url {
                url: "memory://".into(),
                message: "the store is down".into(),
            });
        }
        Ok(())
    }

    /// The worker that recorded the task STARTED, if any.
    pub fn started_by(&self, task_id: &str) -> Option<String> {
        lock(&self.started).get(task_id).cloned()
    }

    /// Every meta stored for `task_id`, in order.
    pub fn results(&self, task_id: &str) -> Vec<String> {
        lock(&self.results)
            .get(task_id)
            .cloned()
            .unwrap_or_default()
    }

    /// The current holder of a claim, expired claims aside.
    fn live_holder(&self, task_id: &str) -> Option<String> {
        let claims = lock(&self.claims);
        claims
            .get(task_id)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(owner, _)| owner.clone())
    }
}

impl ResultStore for std::sync::Arc<MemoryStore> {
    async fn claim(&self, task_id: &str, me: &str, ttl: Duration) -> Result<Claim, Error> {
        self.up()?;
        let mut claims = lock(&self.claims);
        let now = Instant::now();
        match claims.get(task_id) {
            Some((owner, until)) if *until > now && owner != me => Ok(Claim::Other(owner.clone())),
            _ => {
                claims.insert(task_id.to_owned(), (me.to_owned(), now + ttl));
                Ok(Claim::Mine)
            }
        }
    }

    async fn holder(&self, task_id: &str) -> Result<Option<String>, Error> {
        self.up()?;
        Ok(self.live_holder(task_id))
    }

    async fn renew(&self, task_id: &str, ttl: Duration) -> Result<(), Error> {
        self.up()?;
        if let Some(c) = lock(&self.claims).get_mut(task_id) {
            c.1 = Instant::now() + ttl;
        }
        Ok(())
    }

    async fn release(&self, task_id: &str) -> Result<(), Error> {
        self.up()?;
        lock(&self.claims).remove(task_id);
        Ok(())
    }

    async fn exists(&self, task_id: &str) -> Result<bool, Error> {
        self.up()?;
        Ok(lock(&self.results).contains_key(task_id))
    }

    async fn started(&self, task_id: &str, hostname: &str, _pid: u32) -> Result<(), Error> {
        self.up()?;
        lock(&self.started).insert(task_id.to_owned(), hostname.to_owned());
        Ok(())
    }

    async fn store(&self, task_id: &str, meta: &str, _reply_to: Option<&str>) -> Result<(), Error> {
        self.up()?;
        lock(&self.results)
            .entry(task_id.to_owned())
            .or_default()
            .push(meta.to_owned());
        Ok(())
    }
}
