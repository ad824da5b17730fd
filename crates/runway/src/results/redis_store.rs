//! The Redis result store, byte-compatible with Celery 5.7 (`SETEX
//! celery-task-meta-<id>` then `PUBLISH` on the same key), and the fenced
//! claims that let one worker at a time run a task.
//!
//! A claim's value is its holder's token (`<node> <uuid>`). Renewing,
//! releasing and writing under a claim are compare-and-set Lua scripts: a
//! worker whose claim lapsed (a long pause, a frozen VM) can neither extend
//! nor drop another worker's claim, nor store its result over theirs. A
//! ready result (SUCCESS, FAILURE, REVOKED) is never replaced.

use std::sync::Arc;
use std::time::Duration;

use super::backend::{Claim, Error, Stored, Token};
use runway_core::celery::result::redis_key;

/// `SET NX PX` the claim to our token, or say whose it is.
const CLAIM: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return ARGV[1] end
return redis.call('GET', KEYS[1])
";

/// Extends the claim only while it is ours.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// Drops the claim only while it is ours.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Writes a meta under the claim (ARGV[1], empty: unfenced) unless a ready
/// result is stored already: 1 written, 0 the claim is not ours, 2 ready.
const STORE: &str = r"
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local cur = redis.call('GET', KEYS[2])
if cur then
  local ok, m = pcall(cjson.decode, cur)
  if ok and type(m) == 'table' then
    local s = m['status']
    if s == 'SUCCESS' or s == 'FAILURE' or s == 'REVOKED' then return 2 end
  end
end
redis.call('SETEX', KEYS[2], ARGV[3], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1
";

fn claim_key(task_id: &str) -> String {
    format!("runway-claim-{task_id}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The scripts, loaded once (EVALSHA, EVAL when Redis forgot them).
#[derive(Debug)]
struct Scripts {
    claim: redis::Script,
    renew: redis::Script,
    release: redis::Script,
    store: redis::Script,
}

/// The Redis result store. One multiplexed connection, reopened when it breaks.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    // Shared: with TLS parameters a client is a few hundred bytes.
    client: Arc<redis::Client>,
    conn: Arc<tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>>,
    scripts: Arc<Scripts>,
    pub expires: Duration,
    /// Whether Redis answered the last call (for `/ready`).
    pub reachable: Arc<crate::ops::Reachable>,
}

impl RedisBackend {
    pub fn new(client: redis::Client, expires: Duration) -> RedisBackend {
        RedisBackend {
            client: Arc::new(client),
            conn: Default::default(),
            scripts: Arc::new(Scripts {
                claim: redis::Script::new(CLAIM),
                renew: redis::Script::new(RENEW),
                release: redis::Script::new(RELEASE),
                store: redis::Script::new(STORE),
            }),
            expires,
            reachable: Arc::new(crate::ops::Reachable::new("redis")),
        }
    }

    /// Notes whether a call reached Redis; a reply that is an error from
    /// Redis itself (a script error) still means it answered.
    fn note<T>(&self, r: &redis::RedisResult<T>) {
        match r {
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                self.reachable.failed(e)
            }
            _ => self.reachable.ok(),
        }
    }

    async fn conn(&self) -> Result<redis::aio::MultiplexedConnection, Error> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self.client.get_multiplexed_async_connection().await;
        self.note(&c);
        let c = c?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs a command; a failed one drops the connection, so the next call
    /// reconnects instead of reusing a broken one.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        let mut c = self.conn().await?;
        let r = cmd.query_async(&mut c).await;
        self.note(&r);
        if r.is_err() {
            *self.conn.lock().await = None;
        }
        Ok(r?)
    }

    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, Error> {
        let mut c = self.conn().await?;
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        let r = inv.invoke_async(&mut c).await;
        self.note(&r);
        if r.is_err() {
            *self.conn.lock().await = None;
        }
        Ok(r?)
    }

    /// The stored meta of a task, if any.
    pub async fn get(&self, task_id: &str) -> Result<Option<String>, Error> {
        self.query(redis::cmd("GET").arg(redis_key(task_id))).await
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), Error> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }

    pub async fn claim(&self, task_id: &str, me: &str, ttl: Duration) -> Result<Claim, Error> {
        let token = Token::new(me);
        let ms = millis(ttl).to_string();
        let key = claim_key(task_id);
        let holder: Option<String> = self
            .eval(&self.scripts.claim, &[&key], &[token.as_str(), &ms])
            .await?;
        Ok(match holder {
            Some(h) if h == token.as_str() => Claim::Mine(token),
            Some(h) => Claim::Other(Token::owner_of(&h).to_owned()),
            // The holder's claim expired between SET and GET: try again.
            None => Claim::Other(String::new()),
        })
    }

    pub async fn holder(&self, task_id: &str) -> Result<Option<String>, Error> {
        let v: Option<String> = self
            .query(redis::cmd("GET").arg(claim_key(task_id)))
            .await?;
        Ok(v.map(|h| Token::owner_of(&h).to_owned()))
    }

    pub async fn holds(&self, task_id: &str, token: &Token) -> Result<bool, Error> {
        let v: Option<String> = self
            .query(redis::cmd("GET").arg(claim_key(task_id)))
            .await?;
        Ok(v.as_deref() == Some(token.as_str()))
    }

    pub async fn renew(&self, task_id: &str, token: &Token, ttl: Duration) -> Result<bool, Error> {
        let ms = millis(ttl).to_string();
        let n: i64 = self
            .eval(
                &self.scripts.renew,
                &[&claim_key(task_id)],
                &[token.as_str(), &ms],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn release(&self, task_id: &str, token: &Token) -> Result<(), Error> {
        let _: i64 = self
            .eval(
                &self.scripts.release,
                &[&claim_key(task_id)],
                &[token.as_str()],
            )
            .await?;
        Ok(())
    }

    /// Writes `meta` (fenced by `token` when given) unless a ready result
    /// is there already.
    pub async fn set(
        &self,
        task_id: &str,
        meta: &str,
        token: Option<&Token>,
    ) -> Result<Stored, Error> {
        let keys = [claim_key(task_id), redis_key(task_id)];
        let expires = self.expires.as_secs().max(1).to_string();
        let fence = token.map_or("", Token::as_str);
        let n: i64 = self
            .eval(
                &self.scripts.store,
                &[&keys[0], &keys[1]],
                &[fence, meta, &expires],
            )
            .await?;
        Ok(match n {
            1 => Stored::Written,
            2 => Stored::AlreadyReady,
            _ => Stored::NotOurs,
        })
    }
}
