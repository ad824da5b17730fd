//! Publishing task messages as Celery 5.7 does, with publisher confirms: the
//! queue declared as Celery declares it, the message persistent, with its
//! priority, sent through the default exchange to the queue (Celery rewrites
//! direct-exchange publishes that way, dagster-compat.md §g.2).

use std::collections::HashSet;
use std::sync::Mutex;

use lapin::options::ConfirmSelectOptions;
use lapin::{BasicProperties, Channel, Connection};
use thiserror::Error;

use crate::broker::amqp::{self, headers_table, publish_confirmed, PublishError};
use crate::broker::connect::{connect, BrokerTls};
use runway_core::celery::message::Encoded;
use runway_core::celery::topology::queue_spec;

#[derive(Debug, Error)]
pub enum Error {
    #[error("broker {broker}: {source}")]
    Connect {
        broker: String,
        source: lapin::Error,
    },
    #[error("declaring queue {queue}: {source}")]
    Declare { queue: String, source: lapin::Error },
    #[error("publishing to {queue}: {source}")]
    Publish { queue: String, source: PublishError },
}

/// One connection and confirm-mode channel, reopened when they break.
/// Publishes on it run concurrently; each waits for its own confirm, so the
/// number of callers in flight is the confirm window.
#[derive(Debug)]
pub struct Publisher {
    url: String,
    tls: BrokerTls,
    channel: tokio::sync::Mutex<Option<(Connection, Channel)>>,
    declared: Mutex<HashSet<String>>,
}

impl Publisher {
    pub fn new(url: &str, tls: BrokerTls) -> Publisher {
        Publisher {
            url: url.to_owned(),
            tls,
            channel: tokio::sync::Mutex::new(None),
            declared: Mutex::default(),
        }
    }

    async fn channel(&self) -> Result<Channel, Error> {
        let mut slot = self.channel.lock().await;
        if let Some((conn, ch)) = slot.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let err = |source| Error::Connect {
            broker: crate::telemetry::redact_url(&self.url),
            source,
        };
        let conn = connect(&self.url, &self.tls, "runway-publisher")
            .await
            .map_err(err)?;
        let ch = conn.create_channel().await.map_err(err)?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(err)?;
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *slot = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn forget(&self) {
        if let Some((conn, _)) = self.channel.lock().await.take() {
            let _ = conn.close(320, "reconnecting".into()).await;
        }
    }

    /// Declares `queue` (once per connection) and publishes; retried once on
    /// a fresh connection when the first attempt fails.
    pub async fn publish(&self, queue: &str, msg: &Encoded) -> Result<(), Error> {
        match self.try_publish(queue, msg).await {
            Ok(()) => Ok(()),
            Err(Error::Publish {
                source: PublishError::Nacked,
                queue,
            }) => Err(Error::Publish {
                queue,
                source: PublishError::Nacked,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "publish failed; retrying on a new connection");
                self.forget().await;
                self.try_publish(queue, msg).await
            }
        }
    }

    async fn try_publish(&self, queue: &str, msg: &Encoded) -> Result<(), Error> {
        let ch = self.channel().await?;
        let known = self
            .declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(queue);
        if !known {
            amqp::declare(&ch, &queue_spec(queue))
                .await
                .map_err(|source| Error::Declare {
                    queue: queue.to_owned(),
                    source,
                })?;
            self.declared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(queue.to_owned());
        }
        publish_confirmed(&ch, "", queue, msg.body.as_bytes(), properties(msg))
            .await
            .map_err(|source| Error::Publish {
                queue: queue.to_owned(),
                source,
            })
    }
}

/// The AMQP properties kombu sets on a task message.
pub fn properties(msg: &Encoded) -> BasicProperties {
    BasicProperties::default()
        .with_content_type(msg.content_type.into())
        .with_content_encoding(msg.content_encoding.into())
        .with_correlation_id(msg.correlation_id.as_str().into())
        .with_reply_to(msg.reply_to.as_str().into())
        .with_delivery_mode(if msg.persistent { 2 } else { 1 })
        .with_priority(msg.priority)
        .with_headers(headers_table(&msg.headers))
}

/// A random uuid4, as Celery's task ids are.
pub fn uuid4() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid4s_have_the_version_and_variant_bits() {
        let a = uuid4();
        let b = uuid4();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
