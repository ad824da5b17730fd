//! One AMQP session of the worker: a consuming channel with the task
//! queues declared as Celery declares them (consumers added and cancelled
//! at run time by `add_consumer` / `cancel_consumer`), a confirm-mode
//! publishing channel, and the worker's mailbox on `celery.pidbox`.

use std::collections::BTreeMap;

use futures::StreamExt as _;
use lapin::message::Delivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::Connection;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::AmqpBroker;
use crate::broker::amqp;
use crate::broker::connect::connect;
use crate::results::backend::ResultStore;
use crate::worker::pool::Pool;
use crate::worker::runner::StepRunner;
use runway_core::celery::topology::queue_spec;

/// What the consumers hand the session loop.
#[derive(Debug)]
pub enum Incoming {
    Delivery(String, Box<Delivery>),
    /// A consumer failed: the session reconnects.
    Failed(lapin::Error),
}

/// A connected session.
#[derive(Debug)]
pub struct Session {
    pub conn: Connection,
    pub consume: lapin::Channel,
    /// The mailbox's channel (its consumer, and the replies); `None` when
    /// another process holds this node name's mailbox.
    pub control: Option<lapin::Channel>,
    pub pidbox: Option<lapin::Consumer>,
    /// Consumer tag per consumed queue.
    pub tags: BTreeMap<String, String>,
    pub incoming: mpsc::Receiver<Incoming>,
    tx: mpsc::Sender<Incoming>,
    forwarders: Vec<JoinHandle<()>>,
}

impl Session {
    /// Connects, declares and starts consuming the broker's current queues;
    /// the publishing channel goes to the broker for parked copies, results
    /// and events.
    pub async fn open<S: StepRunner, R: ResultStore>(
        pool: &Pool<S, R, AmqpBroker>,
    ) -> Result<Session, lapin::Error> {
        let broker = &pool.broker;
        let conn = connect(
            &broker.config.broker_url,
            &broker.config.broker_tls,
            "runway-worker",
        )
        .await?;
        let consume = conn.create_channel().await?;
        consume
            .basic_qos(broker.config.prefetch, BasicQosOptions::default())
            .await?;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let (control, pidbox) = open_mailbox(&conn, &pool.config.hostname).await?;
        if pool.events.publishing() {
            amqp::declare_celeryev(&publish).await?;
        }
        let capacity = usize::from(broker.config.prefetch).max(1) * 2;
        let (tx, incoming) = mpsc::channel(capacity);
        let mut session = Session {
            conn,
            consume,
            control,
            pidbox,
            tags: BTreeMap::new(),
            incoming,
            tx,
            forwarders: Vec::new(),
        };
        for q in broker.queues() {
            session.add_queue(&q, &pool.config.hostname).await?;
        }
        broker.publish_tx.send_replace(Some(publish));
        Ok(session)
    }

    /// Declares `queue` as Celery does and consumes it (a no-op when it is
    /// consumed already).
    pub async fn add_queue(&mut self, queue: &str, hostname: &str) -> Result<(), lapin::Error> {
        if self.tags.contains_key(queue) {
            return Ok(());
        }
        amqp::declare(&self.consume, &queue_spec(queue)).await?;
        let tag = format!("{hostname}-{queue}");
        let mut consumer = self
            .consume
            .basic_consume(
                queue.into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.tags.insert(queue.to_owned(), tag);
        let tx = self.tx.clone();
        let queue = queue.to_owned();
        self.forwarders.push(tokio::spawn(async move {
            while let Some(d) = consumer.next().await {
                let sent = match d {
                    Ok(d) => {
                        tx.send(Incoming::Delivery(queue.clone(), Box::new(d)))
                            .await
                    }
                    Err(e) => {
                        let _ = tx.send(Incoming::Failed(e)).await;
                        return;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        }));
        Ok(())
    }

    /// Stops consuming `queue`; `false` when it was not consumed.
    pub async fn cancel_queue(&mut self, queue: &str) -> Result<bool, lapin::Error> {
        let Some(tag) = self.tags.remove(queue) else {
            return Ok(false);
        };
        self.consume
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await?;
        Ok(true)
    }

    /// Stops every consumer (the first phase of a shutdown).
    pub async fn cancel_all(&mut self) {
        let queues: Vec<String> = self.tags.keys().cloned().collect();
        for q in queues {
            let _ = self.cancel_queue(&q).await;
        }
    }

    /// Closes the connection; what was not acknowledged returns to the queue.
    pub async fn close(self, code: u16, why: &str) {
        for f in &self.forwarders {
            f.abort();
        }
        let _ = self.conn.close(code, why.into()).await;
    }
}

/// The worker's mailbox and its consumer. Another process consuming the
/// same node name's mailbox (405 RESOURCE_LOCKED) leaves this worker
/// without remote control, as Celery warns and goes on.
async fn open_mailbox(
    conn: &Connection,
    hostname: &str,
) -> Result<(Option<lapin::Channel>, Option<lapin::Consumer>), lapin::Error> {
    let control = conn.create_channel().await?;
    let queue = match amqp::declare_mailbox(&control, hostname).await {
        Ok(q) => q,
        Err(e) if is_resource_locked(&e) => {
            tracing::error!(node = %hostname, "a node with this name already uses the remote-control mailbox; give each worker its own --hostname");
            return Ok((None, None));
        }
        Err(e) => return Err(e),
    };
    let consumer = control
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((Some(control), Some(consumer)))
}

fn is_resource_locked(e: &lapin::Error) -> bool {
    e.to_string().contains("RESOURCE_LOCKED")
}
