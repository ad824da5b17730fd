//! Result backends, byte-compatible with Celery 5.7: Redis
//! (`SETEX celery-task-meta-<id>` then `PUBLISH`, in one MULTI) and `rpc://`
//! (a reply to the task's `reply_to` queue, correlated by task id).

use std::future::Future;
use std::time::Duration;

use lapin::types::FieldTable;
use lapin::BasicProperties;
use thiserror::Error;
use tokio::sync::watch;

use crate::broker::amqp::{publish_confirmed, PublishError};
use runway_core::celery::result::{is_ready, redis_key, started_meta};

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

/// Parses `--result-backend`.
pub fn parse(url: &str) -> Result<BackendUrl, Error> {
    let bad = |m: &str| Error::Url {
        url: url.to_owned(),
        message: m.to_owned(),
    };
    if url.starts_with("rpc://") {
        return Ok(BackendUrl::Rpc);
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://") {
        let client = redis::Client::open(url).map_err(|e| bad(&e.to_string()))?;
        return Ok(BackendUrl::Redis(client));
    }
    Err(bad(
        "expected redis://host:port/db or rpc:// (the backends dagster-celery-k8s uses)",
    ))
}

#[derive(Debug, Clone)]
pub enum BackendUrl {
    Redis(redis::Client),
    Rpc,
}

/// The Redis result store. One multiplexed connection, reopened when it breaks.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    client: redis::Client,
    conn: std::sync::Arc<tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>>,
    pub expires: Duration,
}

impl RedisBackend {
    pub fn new(client: redis::Client, expires: Duration) -> RedisBackend {
        RedisBackend {
            client,
            conn: Default::default(),
            expires,
        }
    }

    async fn conn(&self) -> Result<redis::aio::MultiplexedConnection, Error> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self.client.get_multiplexed_async_connection().await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn forget(&self) {
        *self.conn.lock().await = None;
    }

    /// Runs a command; a failed one drops the connection, so the next call
    /// reconnects instead of reusing a broken one.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        let mut c = self.conn().await?;
        let r = cmd.query_async(&mut c).await;
        if r.is_err() {
            self.forget().await;
        }
        Ok(r?)
    }

    async fn query_pipe<T: redis::FromRedisValue>(&self, p: &redis::Pipeline) -> Result<T, Error> {
        let mut c = self.conn().await?;
        let r = p.query_async(&mut c).await;
        if r.is_err() {
            self.forget().await;
        }
        Ok(r?)
    }

    /// The stored meta of a task, if any.
    pub async fn get(&self, task_id: &str) -> Result<Option<String>, Error> {
        self.query(redis::cmd("GET").arg(redis_key(task_id))).await
    }

    async fn set(&self, task_id: &str, meta: &str) -> Result<(), Error> {
        let key = redis_key(task_id);
        self.query_pipe(
            redis::pipe()
                .atomic()
                .cmd("SETEX")
                .arg(&key)
                .arg(self.expires.as_secs().max(1))
                .arg(meta)
                .ignore()
                .cmd("PUBLISH")
                .arg(&key)
                .arg(meta)
                .ignore(),
        )
        .await
    }
}

/// Who runs a task, when several workers hold deliveries of it (after a
/// broker restart every unacknowledged delivery comes back, maybe to another
/// worker while the first still runs the step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker runs it.
    Mine,
    /// Another worker runs it; this one waits for the result.
    Other(String),
}

fn claim_key(task_id: &str) -> String {
    format!("runway-claim-{task_id}")
}

impl RedisBackend {
    async fn claim(&self, task_id: &str, me: &str, ttl: Duration) -> Result<Claim, Error> {
        let key = claim_key(task_id);
        let (_, owner): (Option<String>, Option<String>) = self
            .query_pipe(
                redis::pipe()
                    .cmd("SET")
                    .arg(&key)
                    .arg(me)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl.as_secs().max(1))
                    .cmd("GET")
                    .arg(&key),
            )
            .await?;
        Ok(match owner {
            Some(owner) if owner != me => Claim::Other(owner),
            _ => Claim::Mine,
        })
    }

    async fn holder(&self, task_id: &str) -> Result<Option<String>, Error> {
        self.query(redis::cmd("GET").arg(claim_key(task_id))).await
    }

    async fn renew(&self, task_id: &str, ttl: Duration) -> Result<(), Error> {
        self.query(
            redis::cmd("EXPIRE")
                .arg(claim_key(task_id))
                .arg(ttl.as_secs().max(1)),
        )
        .await
    }

    async fn release(&self, task_id: &str) -> Result<(), Error> {
        self.query(redis::cmd("DEL").arg(claim_key(task_id))).await
    }
}

/// What the worker needs of a result backend: the claim that lets one
/// worker run a task while others holding deliveries of it wait, and the
/// result itself.
pub trait ResultStore: Send + Sync + 'static {
    /// Claims a task for `me` for `ttl` (renewed while it runs).
    fn claim(
        &self,
        task_id: &str,
        me: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Claim, Error>> + Send;
    /// The worker holding the claim, if any.
    fn holder(&self, task_id: &str) -> impl Future<Output = Result<Option<String>, Error>> + Send;
    fn renew(&self, task_id: &str, ttl: Duration)
        -> impl Future<Output = Result<(), Error>> + Send;
    /// Drops the claim once the result is stored.
    fn release(&self, task_id: &str) -> impl Future<Output = Result<(), Error>> + Send;
    /// Whether a result (a ready state) is already stored: a redelivered
    /// task that was done.
    fn exists(&self, task_id: &str) -> impl Future<Output = Result<bool, Error>> + Send;
    /// Records that the task's step started here (Celery's STARTED state).
    fn started(
        &self,
        task_id: &str,
        hostname: &str,
        pid: u32,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Stores once. Callers retry: every write is idempotent by task id.
    fn store(
        &self,
        task_id: &str,
        meta: &str,
        reply_to: Option<&str>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

impl ResultStore for Backend {
    // `rpc://` has no shared store: every worker claims, and only one
    // worker's own redeliveries are joined.
    async fn claim(&self, task_id: &str, me: &str, ttl: Duration) -> Result<Claim, Error> {
        match self {
            Backend::Redis(r) => r.claim(task_id, me, ttl).await,
            Backend::Rpc(_) => Ok(Claim::Mine),
        }
    }

    async fn holder(&self, task_id: &str) -> Result<Option<String>, Error> {
        match self {
            Backend::Redis(r) => r.holder(task_id).await,
            Backend::Rpc(_) => Ok(None),
        }
    }

    async fn renew(&self, task_id: &str, ttl: Duration) -> Result<(), Error> {
        match self {
            Backend::Redis(r) => r.renew(task_id, ttl).await,
            Backend::Rpc(_) => Ok(()),
        }
    }

    async fn release(&self, task_id: &str) -> Result<(), Error> {
        match self {
            Backend::Redis(r) => r.release(task_id).await,
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

    async fn started(&self, task_id: &str, hostname: &str, pid: u32) -> Result<(), Error> {
        match self {
            Backend::Redis(r) => r.set(task_id, &started_meta(task_id, hostname, pid)).await,
            // Only the publisher reads rpc:// replies, and it waits for the result.
            Backend::Rpc(_) => Ok(()),
        }
    }

    async fn store(&self, task_id: &str, meta: &str, reply_to: Option<&str>) -> Result<(), Error> {
        match self {
            Backend::Redis(r) => r.set(task_id, meta).await,
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
                Ok(())
            }
        }
    }
}
