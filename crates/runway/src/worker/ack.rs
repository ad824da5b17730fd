//! What the pool may do with a delivery it holds. The broker's own handle
//! (lapin's `Acker`) in production, a recording fake in the pool's tests.

use std::future::Future;

use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};

/// A held delivery's settlement. Each consumes the delivery: a delivery is
/// settled once.
pub trait Ack: Send + Sync + 'static {
    /// Done with: the broker forgets the message.
    fn ack(self) -> impl Future<Output = ()> + Send;
    /// Back to the queue, for this or another worker.
    fn requeue(self) -> impl Future<Output = ()> + Send;
    /// Dropped without an answer (a message that names no task).
    fn discard(self) -> impl Future<Output = ()> + Send;
}

impl Ack for lapin::Acker {
    async fn ack(self) {
        // A delivery of a dead channel is redelivered; the stored result answers it.
        if let Err(e) = lapin::Acker::ack(&self, BasicAckOptions::default()).await {
            tracing::warn!(error = %e, "ack failed; the redelivery will find the result");
        }
    }

    async fn requeue(self) {
        let requeue = BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        if let Err(e) = self.nack(requeue).await {
            tracing::debug!(error = %e, "nack failed; the channel's end returns the message");
        }
    }

    async fn discard(self) {
        if let Err(e) = self.reject(BasicRejectOptions { requeue: false }).await {
            tracing::debug!(error = %e, "reject failed");
        }
    }
}
