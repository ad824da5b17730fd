//! An in-memory [`ResultStore`] for tests: fenced claims with their tokens
//! and expiry on tokio's clock, stored metas (a ready result is never
//! replaced), STARTED records, and a switch that makes the store
//! unreachable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::backend::{Claim, Error, ResultStore, Stored, Token};
use runway_core::celery::result::is_ready;

/// Shared state of one in-memory backend (several workers' pools can use one).
#[derive(Debug, Default)]
pub struct MemoryStore {
    claims: Mutex<HashMap<String, (Token, Instant)>>,
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

    /// Takes a task's claim for `node` as a worker that then freezes would.
    pub fn claim_for(&self, task_id: &str, node: &str, ttl: Duration) -> Token {
        let token = Token::new(node);
        lock(&self.claims).insert(task_id.to_owned(), (token.clone(), Instant::now() + ttl));
        token
    }

    /// Lets a claim lapse, as it does when its holder stops renewing it.
    pub fn expire_claim(&self, task_id: &str) {
        lock(&self.claims).remove(task_id);
    }

    fn live(&self, task_id: &str) -> Option<Token> {
        lock(&self.claims)
            .get(task_id)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone())
    }

    fn write(&self, task_id: &str, meta: &str, token: Option<&Token>) -> Stored {
        if token.is_some_and(|t| self.live(task_id).as_ref() != Some(t)) {
            return Stored::NotOurs;
        }
        let mut results = lock(&self.results);
        let list = results.entry(task_id.to_owned()).or_default();
        if list.last().is_some_and(|m| is_ready(m)) {
            return Stored::AlreadyReady;
        }
        list.push(meta.to_owned());
        Stored::Written
    }
}

impl ResultStore for std::sync::Arc<MemoryStore> {
    async fn claim(&self, task_id: &str, me: &str, ttl: Duration) -> Result<Claim, Error> {
        self.up()?;
        if let Some(t) = self.live(task_id) {
            return Ok(Claim::Other(Token::owner_of(t.as_str()).to_owned()));
        }
        Ok(Claim::Mine(self.claim_for(task_id, me, ttl)))
    }

    async fn holder(&self, task_id: &str) -> Result<Option<String>, Error> {
        self.up()?;
        Ok(self
            .live(task_id)
            .map(|t| Token::owner_of(t.as_str()).to_owned()))
    }

    async fn holds(&self, task_id: &str, token: &Token) -> Result<bool, Error> {
        self.up()?;
        Ok(self.live(task_id).as_ref() == Some(token))
    }

    async fn renew(&self, task_id: &str, token: &Token, ttl: Duration) -> Result<bool, Error> {
        self.up()?;
        let mut claims = lock(&self.claims);
        match claims.get_mut(task_id) {
            Some((t, until)) if t == token && *until > Instant::now() => {
                *until = Instant::now() + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, task_id: &str, token: &Token) -> Result<(), Error> {
        self.up()?;
        let mut claims = lock(&self.claims);
        if claims.get(task_id).is_some_and(|(t, _)| t == token) {
            claims.remove(task_id);
        }
        Ok(())
    }

    async fn exists(&self, task_id: &str) -> Result<bool, Error> {
        self.up()?;
        Ok(lock(&self.results)
            .get(task_id)
            .and_then(|l| l.last())
            .is_some_and(|m| is_ready(m)))
    }

    async fn started(
        &self,
        task_id: &str,
        token: &Token,
        hostname: &str,
        _pid: u32,
    ) -> Result<Stored, Error> {
        self.up()?;
        if self.live(task_id).as_ref() != Some(token) {
            return Ok(Stored::NotOurs);
        }
        if lock(&self.results)
            .get(task_id)
            .and_then(|l| l.last())
            .is_some_and(|m| is_ready(m))
        {
            return Ok(Stored::AlreadyReady);
        }
        lock(&self.started).insert(task_id.to_owned(), hostname.to_owned());
        Ok(Stored::Written)
    }

    async fn store(
        &self,
        task_id: &str,
        meta: &str,
        _reply_to: Option<&str>,
        token: Option<&Token>,
    ) -> Result<Stored, Error> {
        self.up()?;
        Ok(self.write(task_id, meta, token))
    }
}
