//! Result backends, byte-compatible with Celery 5.7: Redis (`redis.rs`:
//! `SETEX celery-task-meta-<id>` then `PUBLISH`, under a fenced claim) and
//! `rpc://` (a reply to the task's `reply_to` queue, correlated by task id).

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use lapin::types::FieldTable;
use lapin::BasicProperties;
use thiserror::Error;
use tokio::sync::watch;

pub use super::redis_store::RedisBackend;
use super::redis_url;
use crate::broker::amqp::{publish_confirmed, PublishError};
use crate::tls::Verify;
use runway_core::celery::result::{is_ready, started_meta};

#[derive(Debug, Error)]
pub enum Error {
    #[error("result backend URL {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("rpc:// reply: {0}")]
    Publish(#[from] PublishError),
    #[error("rpc:// reply: the broker is not connected")]
    NoChannel,
    #[error("task {0} has no reply_to: an rpc:// result cannot be delivered")]
    NoReplyTo(String),
}

/// Where results go.
#[derive(Debug, Clone)]
pub enum Backend {
    Redis(RedisBackend),
    /// Replies go out on the worker's current publishing channel.
    Rpc(watch::Receiver<Option<lapin::Channel>>),
}

/// Parses `--result-backend`; `ca_file` is `--redis-ca-file` (for `rediss://`).
pub fn parse(url: &str, ca_file: Option<&Path>) -> Result<BackendUrl, Error> {
    let bad = |m: String| Error::Url {
        url: crate::telemetry::redact_url(url),
        message: m,
    };
    if url.starts_with("rpc://") {
        return Ok(BackendUrl::Rpc);
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://") {
        let target = redis_url::target(url, ca_file).map_err(|e| bad(e.to_string()))?;
        return redis_client(&target)
            .map(|c| BackendUrl::Redis(Box::new(c)))
            .map_err(|e| bad(e.to_string()));
    }
    Err(bad(
        "expected redis://host:port/db, rediss://host:port/db or rpc:// (the backends \
         dagster-celery-k8s uses)"
            .to_owned(),
    ))
}

/// The redis crate's client: `#insecure` is its spelling of "check
/// nothing", and a CA is handed over as PEM.
fn redis_client(t: &redis_url::Target) -> Result<redis::Client, Box<dyn std::error::Error>> {
    let Some(tls) = &t.tls else {
        return Ok(redis::Client::open(t.url.as_str())?);
    };
    if tls.verify == Verify::Nothing {
        let url = match t.url.split_once('#') {
            Some((base, _)) => format!("{base}#insecure"),
            None => format!("{}#insecure", t.url),
        };
        return Ok(redis::Client::open(url.as_str())?);
    }
    match &tls.ca {
        None => Ok(redis::Client::open(t.url.as_str())?),
        Some(path) => {
            // Checked now, so a bad CA fails at start-up, not per connection.
            crate::tls::read_pem(path)?;
            let pem = std::fs::read(path)?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            Ok(redis::Client::build_with_tls(t.url.as_str(), certs)?)
        }
    }
}

#[derive(Debug, Clone)]
pub enum BackendUrl {
    // Boxed: with TLS parameters a client is a few hundred bytes.
    Redis(Box<redis::Client>),
    Rpc,
}

/// A claim this worker holds: the value it set (`<node> <uuid>`), which
/// only it can renew, release or write under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(node: &str) -> Token {
        Token(format!("{node} {}", uuid::Uuid::new_v4()))
    }

    /// A token for a backend without claims (`rpc://`).
    pub fn unfenced() -> Token {
        Token(String::new())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The node name of a stored claim value.
    pub fn owner_of(value: &str) -> &str {
        value.split_once(' ').map_or(value, |(node, _)| node)
    }
}

/// Who runs a task, when several workers hold deliveries of it (after a
/// broker restart every unacknowledged delivery comes back, maybe to another
/// worker while the first still runs the step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker runs it, under this token.
    Mine(Token),
    /// Another worker runs it (this node name); this one waits for the result.
    Other(String),
}

/// What a write under a claim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Written,
    /// The claim is no longer this worker's: it lapsed and another took the
    /// task over. Nothing was written.
    NotOurs,
    /// A ready result (SUCCESS, FAILURE, REVOKED) is stored already and is
    /// never replaced.
    AlreadyReady,
}

/// What the worker needs of a result backend: the claim that lets one
/// worker run a task while others holding deliveries of it wait, and the
/// result itself, written only under the claim.
pub trait ResultStore: Clone + Send + Sync + 'static {
    /// Claims a task for `me` for `ttl` (renewed while it runs).
    fn claim(
        &self,
        task_id: &str,
        me: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Claim, Error>> + Send;
    /// The node holding the claim, if any.
    fn holder(&self, task_id: &str) -> impl Future<Output = Result<Option<String>, Error>> + Send;
    /// Whether `token` still holds the claim.
    fn holds(
        &self,
        task_id: &str,
        token: &Token,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Extends the claim; `false` when it is no longer ours.
    fn renew(
        &self,
        task_id: &str,
        token: &Token,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Drops the claim once the result is stored (only while it is ours).
    fn release(
        &self,
        task_id: &str,
        token: &Token,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Whether a result (a ready state) is already stored: a redelivered
    /// task that was done.
    fn exists(&self, task_id: &str) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Records, under the claim, that the task's step started here
    /// (Celery's STARTED state).
    fn started(
        &self,
        task_id: &str,
        token: &Token,
        hostname: &str,
        pid: u32,
    ) -> impl Future<Output = Result<Stored, Error>> + Send;
    /// Stores the result under the claim (`None`: unfenced, for deliveries
    /// refused before any claim). Callers retry: writes are idempotent.
    fn store(
        &self,
        task_id: &str,
        meta: &str,
        reply_to: Option<&str>,
        token: Option<&Token>,
    ) -> impl Future<Output = Result<Stored, Error>> + Send;
}

impl ResultStore for Backend {
    // `rpc://` has no shared store: every worker claims, and only one
    // worker's own redeliveries are joined.
    async fn claim(&self, task_id: &str, me: &str, ttl: Duration) -> Result<Claim, Error> {
        match self {
            Backend::Redis(r) => r.claim(task_id, me, ttl).await,
            Backend::Rpc(_) => Ok(Claim::Mine(Token::unfenced())),
        }
    }

    async fn holder(&self, task_id: &str) -> Result<Option<String>, Error> {
        match self {
            Backend::Redis(r) => r.holder(task_id).await,
            Backend::Rpc(_) => Ok(None),
        }
    }

    async fn holds(&self, task_id: &str, token: &Token) -> Result<bool, Error> {
        match self {
            Backend::Redis(r) => r.holds(task_id, token).await,
            Backend::Rpc(_) => Ok(true),
        }
    }

    async fn renew(&self, task_id: &str, token: &Token, ttl: Duration) -> Result<bool, Error> {
        match self {
            Backend::Redis(r) => r.renew(task_id, token, ttl).await,
            Backend::Rpc(_) => Ok(true),
        }
    }

    async fn release(&self, task_id: &str, token: &Token) -> Result<(), Error> {
        match self {
            Backend::Redis(r) => r.release(task_id, token).await,
            Backend::Rpc(_) => Ok(()),
        }
    }

    async fn exists(&self, task_id: &str) -> Result<bool, Error> {
        match self {
            Backend::Redis(r) => Ok(r.get(task_id).await?.is_some_and(|m| is_ready(&m))),
            // Replies are consumed by their caller: nothing to look up.
            Backend::Rpc(_) => Ok(false),
        }
    }

    async fn started(
        &self,
        task_id: &str,
        token: &Token,
        hostname: &str,
        pid: u32,
    ) -> Result<Stored, Error> {
        match self {
            Backend::Redis(r) => {
                let meta = started_meta(task_id, hostname, pid);
                r.set(task_id, &meta, Some(token)).await
            }
            // Only the publisher reads rpc:// replies, and it waits for the result.
            Backend::Rpc(_) => Ok(Stored::Written),
        }
    }

    async fn store(
        &self,
        task_id: &str,
        meta: &str,
        reply_to: Option<&str>,
        token: Option<&Token>,
    ) -> Result<Stored, Error> {
        match self {
            Backend::Redis(r) => r.set(task_id, meta, token).await,
            Backend::Rpc(ch) => {
                let reply_to = reply_to.ok_or_else(|| Error::NoReplyTo(task_id.to_owned()))?;
                let ch = ch.borrow().clone().ok_or(Error::NoChannel)?;
                let props = BasicProperties::default()
                    .with_correlation_id(task_id.into())
                    .with_content_type("application/json".into())
                    .with_content_encoding("utf-8".into())
                    .with_delivery_mode(1)
                    .with_headers(FieldTable::default());
                publish_confirmed(&ch, "", reply_to, meta.as_bytes(), props).await?;
                Ok(Stored::Written)
            }
        }
    }
}
