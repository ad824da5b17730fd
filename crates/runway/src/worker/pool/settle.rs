//! Settling a task: storing its result (retried), then acknowledging every
//! delivery that waited on it; or giving the deliveries back when the result
//! cannot be stored.

use std::time::Instant;

use backon::Retryable as _;

use super::{lock, Accepted, Broker, Pool, LATENCY_SAMPLES};
use crate::metrics::StatusLabel;
use crate::results::backend::ResultStore;
use crate::retry::Backoff;
use crate::worker::ack::Ack;
use crate::worker::outcome::meta;
use crate::worker::runner::StepRunner;
use crate::worker::task::Finish;

/// Attempts at storing one result before the task goes back to the queue.
const STORE_RETRIES: usize = 11;

impl<S: StepRunner, R: ResultStore, B: Broker> Pool<S, R, B> {
    /// Stores the result (retrying), then acknowledges `acks` and every
    /// delivery of the task that joined it meanwhile (its run stays in the
    /// ledger until the result is stored, so a redelivery arriving during
    /// the write joins instead of running again). A result that cannot be
    /// stored sends the deliveries back to the queue.
    pub async fn finish(
        &self,
        id: &str,
        reply_to: Option<&str>,
        acks: Vec<B::Ack>,
        finish: &Finish,
        ended: Option<Instant>,
    ) {
        // Only a task that ran has a run of its own in the ledger; a refused
        // delivery claiming a running task's id must not take its deliveries.
        let ran = ended.is_some();
        let (state, meta) = meta(id, finish);
        let stored = (|| self.store.store(id, &meta, reply_to))
            .retry(Backoff::request().with_retries(STORE_RETRIES))
            .sleep(tokio::time::sleep)
            .notify(|e, _| {
                tracing::warn!(task_id = %id, error = %e, "storing the result failed; retrying");
                self.metrics.result_store_retries.inc();
            })
            .await
            .is_ok();
        if let Some(t) = ended {
            self.record_latency(t);
        }
        let mut acks = acks;
        if ran {
            self.registry.remove(id);
        }
        if !stored {
            tracing::error!(task_id = %id, "the result could not be stored; returning the task to the queue");
            if ran {
                acks.extend(lock(&self.ledger).end(id));
            }
            for a in acks {
                a.requeue().await;
            }
            return;
        }
        if let Err(e) = self.store.release(id).await {
            tracing::debug!(task_id = %id, error = %e, "releasing the claim failed; it expires");
        }
        {
            let mut ledger = lock(&self.ledger);
            if ran {
                acks.extend(ledger.finish(id));
            } else {
                ledger.mark_done(id);
            }
        }
        self.metrics
            .tasks
            .get_or_create(&StatusLabel {
                status: state.as_str(),
            })
            .inc();
        tracing::info!(task_id = %id, state = state.as_str(), "task finished");
        for a in acks {
            a.ack().await;
        }
    }

    /// Acknowledges every delivery of a task whose result is stored.
    pub(super) async fn answered(&self, id: &str) {
        self.metrics.tasks_deduplicated.inc();
        self.registry.remove(id);
        let held = lock(&self.ledger).end(id);
        for a in held {
            a.ack().await;
        }
    }

    /// Gives every held delivery of `id` back to the queue.
    pub(super) async fn requeue_all(&self, id: &str) {
        self.registry.remove(id);
        let held = lock(&self.ledger).end(id);
        for a in held {
            a.requeue().await;
        }
    }

    /// A task this worker does not run: FAILURE with Celery's NotRegistered.
    pub(super) async fn refuse_unregistered(&self, msg: &Accepted, ack: B::Ack) {
        self.metrics.tasks_rejected.inc();
        tracing::warn!(task = %msg.task, task_id = %msg.id, "unregistered task");
        let f = Finish::Error {
            exc_type: "NotRegistered".into(),
            exc_module: "celery.exceptions".into(),
            message: format!("'{}'", msg.task),
        };
        self.finish(&msg.id, msg.reply_to.as_deref(), vec![ack], &f, None)
            .await;
    }

    /// A delivery that could not be decoded but names its task: FAILURE
    /// with the reason, so the caller is not left waiting.
    pub async fn refuse(&self, id: &str, reply_to: Option<&str>, ack: B::Ack, finish: &Finish) {
        self.metrics.tasks_rejected.inc();
        self.finish(id, reply_to, vec![ack], finish, None).await;
    }

    fn record_latency(&self, ended: Instant) {
        let secs = ended.elapsed().as_secs_f64();
        self.metrics.result_latency.observe(secs);
        let mut samples = lock(&self.latencies);
        if samples.len() < LATENCY_SAMPLES {
            samples.push(secs);
        }
    }
}
