//! Reading task results as they land in the Redis backend: one pattern
//! subscription on `celery-task-meta-*` (the channel the backend PUBLISHes
//! each meta on) for every watcher, and a GET after registering so a result
//! stored before the watch began is not missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::watch;

use super::backend::RedisBackend;
use crate::retry::Backoff;
use backon::BackoffBuilder as _;

const PREFIX: &str = "celery-task-meta-";

/// A task's result, once stored, and how many watch it.
type Watched = (watch::Sender<Option<String>>, usize);

/// The watchers of task results.
#[derive(Debug)]
pub struct Results {
    client: redis::Client,
    store: RedisBackend,
    waiting: Mutex<HashMap<String, Watched>>,
    /// Subscribed (and caught up after each reconnection).
    pub subscribed: watch::Sender<bool>,
}

/// One watcher; dropping it unregisters.
#[derive(Debug)]
pub struct ResultWait {
    results: Arc<Results>,
    id: String,
    pub rx: watch::Receiver<Option<String>>,
}

impl Drop for ResultWait {
    fn drop(&mut self) {
        let mut w = self
            .results
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(e) = w.get_mut(&self.id) {
            e.1 -= 1;
            if e.1 == 0 {
                w.remove(&self.id);
            }
        }
    }
}

impl Results {
    pub fn new(client: redis::Client) -> Arc<Results> {
        Arc::new(Results {
            store: RedisBackend::new(client.clone(), Duration::from_secs(86_400)),
            client,
            waiting: Mutex::default(),
            subscribed: watch::Sender::new(false),
        })
    }

    fn deliver(&self, id: &str, meta: String) {
        let w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((tx, _)) = w.get(id) {
            tx.send_replace(Some(meta));
        }
    }

    /// Registers, then reads what is already stored.
    pub async fn wait(self: &Arc<Self>, id: &str) -> Result<ResultWait, super::backend::Error> {
        let rx = {
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let e = w
                .entry(id.to_owned())
                .or_insert_with(|| (watch::Sender::new(None), 0));
            e.1 += 1;
            e.0.subscribe()
        };
        let wait = ResultWait {
            results: self.clone(),
            id: id.to_owned(),
            rx,
        };
        if let Some(meta) = self.store.get(id).await? {
            self.deliver(id, meta);
        }
        Ok(wait)
    }

    /// Keeps the subscription up until `stop`; after each reconnection every
    /// watcher's key is read again.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut delays = Backoff::reconnect().build();
        loop {
            let sub = async {
                let mut ps = self.client.get_async_pubsub().await?;
                ps.psubscribe(format!("{PREFIX}*")).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            let mut ps = tokio::select! {
                _ = crate::stop::stopped(&mut stop) => return,
                r = sub => match r {
                    Ok(ps) => ps,
                    Err(e) => {
                        tracing::warn!(error = %e, "Redis subscription failed; retrying");
                        tokio::time::sleep(delays.delay()).await;
                        continue;
                    }
                },
            };
            delays = Backoff::reconnect().build();
            let ids: Vec<String> = self
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned()
                .collect();
            for id in ids {
                if let Ok(Some(meta)) = self.store.get(&id).await {
                    self.deliver(&id, meta);
                }
            }
            self.subscribed.send_replace(true);
            let mut messages = ps.on_message();
            loop {
                tokio::select! {
                    _ = crate::stop::stopped(&mut stop) => return,
                    m = messages.next() => match m {
                        Some(m) => {
                            let channel = m.get_channel_name().to_owned();
                            if let (Some(id), Ok(meta)) = (channel.strip_prefix(PREFIX), m.get_payload::<String>()) {
                                self.deliver(id, meta);
                            }
                        }
                        None => break,
                    },
                }
            }
            self.subscribed.send_replace(false);
            tracing::warn!("Redis subscription lost; resubscribing");
        }
    }
}
