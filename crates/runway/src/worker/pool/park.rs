//! Parking: a long step's held deliveries are acknowledged only once a copy
//! of the message is safely back on the broker, before RabbitMQ's consumer
//! timeout would close the channel under them.

use std::future::Future;
use std::sync::Arc;

use super::{lock, Pool};
use crate::broker::amqp::PublishError;
use crate::results::backend::ResultStore;
use crate::worker::ack::Ack;
use crate::worker::runner::StepRunner;

/// What it takes to publish a delivery again.
#[derive(Debug, Clone)]
pub struct Parked {
    pub queue: String,
    pub properties: lapin::BasicProperties,
    pub body: Vec<u8>,
}

/// The broker as the pool sees it: how its deliveries are settled, and
/// where a parked copy goes.
pub trait Broker: Send + Sync + 'static {
    type Ack: Ack;
    /// A delivery starts (`true`) or stops waiting for its ETA.
    fn scheduled(&self, held: bool);
    /// Publishes `copy` (with confirm) where it comes back to its queue
    /// after the ack deadline.
    fn park(&self, copy: &Parked) -> impl Future<Output = Result<(), PublishError>> + Send;
}

pub(super) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<S: StepRunner, R: ResultStore, B: Broker> Pool<S, R, B> {
    /// Every `ack_deadline`, the task's held deliveries are acknowledged once
    /// a copy of the message is safely parked, whence it returns to the queue
    /// after the deadline. Whoever receives it then joins the running copy
    /// (same worker), waits on the claim (another worker), or takes the task
    /// over (its worker died): the Job is reused by name and the result
    /// stored once.
    pub(super) async fn park_loop(self: Arc<Self>, id: String, copy: Parked) {
        let mut every = tokio::time::interval(self.config.ack_deadline);
        every.tick().await;
        loop {
            every.tick().await;
            let held = lock(&self.ledger).take_held(&id);
            if held.is_empty() {
                continue;
            }
            // Settled in a task of its own: this loop is aborted the moment
            // the run ends, and deliveries already taken out of the ledger
            // dropped mid-publish would stay unacknowledged until the channel
            // closes (the chaos suite saw one left in its queue).
            let settle = tokio::spawn(self.clone().park_held(id.clone(), copy.clone(), held));
            let _ = settle.await;
        }
    }

    /// Acknowledges `held` once a copy is parked, or gives them back.
    async fn park_held(self: Arc<Self>, id: String, copy: Parked, held: Vec<B::Ack>) {
        match self.broker.park(&copy).await {
            Ok(()) => {
                self.metrics.tasks_parked.inc();
                tracing::info!(task_id = %id, queue = %copy.queue, "parked a copy; acknowledging the held deliveries");
                for a in held {
                    a.ack().await;
                }
            }
            Err(e) => {
                tracing::warn!(task_id = %id, error = %e, "parking failed; keeping the deliveries");
                let returned = lock(&self.ledger).give_back(&id, held);
                // The run ended meanwhile: the redelivery finds its result.
                if let Err(orphans) = returned {
                    for a in orphans {
                        a.requeue().await;
                    }
                }
            }
        }
    }
}
