//! Settling a task: storing its result (retried; under the claim for a
//! task that ran), then acknowledging every delivery that waited on it; or
//! giving the deliveries back when the result cannot be stored.

use std::time::Instant;

use backon::Retryable as _;

use super::{lock, Accepted, Broker, Pool, LATENCY_SAMPLES};
use crate::metrics::StatusLabel;
use crate::results::backend::{ResultStore, Stored, Token};
use crate::retry::Backoff;
use crate::worker::ack::Ack;
use crate::worker::outcome::meta;
use crate::worker::runner::StepRunner;
use crate::worker::task::Finish;

/// Attempts at storing one result before the task goes back to the queue.
const STORE_RETRIES: usize = 11;

impl<S: StepRunner, R: ResultStore, B: Broker> Pool<S, R, B> {
    /// Stores the result of a step that ran here, under its claim, then
    /// acknowledges every delivery of the task (its run stays in the ledger
    /// until the result is stored, so a redelivery arriving during the write
    /// joins instead of running again). A claim found lapsed stores nothing:
    /// the worker that took the task over stores its result.
    pub(super) async fn settle(
        &self,
        id: &str,
        reply_to: Option<&str>,
        finish: &Finish,
        ended: Instant,
        token: &Token,
    ) {
        let (state, meta) = meta(id, finish);
        let stored = self.store_retrying(id, &meta, reply_to, Some(token)).await;
        self.record_latency(ended);
        self.registry.remove(id);
        match stored {
            Some(Stored::Written) => {
                self.release(id, token).await;
                self.count(state.as_str());
                tracing::info!(task_id = %id, state = state.as_str(), "task finished");
                let acks = lock(&self.ledger).finish(id);
                for a in acks {
                    a.ack().await;
                }
            }
            Some(Stored::AlreadyReady) => {
                tracing::info!(task_id = %id, "a result was stored already; it stays");
                self.release(id, token).await;
                let acks = lock(&self.ledger).finish(id);
                for a in acks {
                    a.ack().await;
                }
            }
            Some(Stored::NotOurs) => self.lost(id).await,
            None => {
                tracing::error!(task_id = %id, "the result could not be stored; returning the task to the queue");
                self.requeue_all(id).await;
            }
        }
    }

    /// Answers a delivery refused before any claim (undecodable, or a task
    /// this worker does not run) with a FAILURE, then acknowledges it. It
    /// never takes the deliveries of a task of the same id running here.
    pub async fn finish(&self, id: &str, reply_to: Option<&str>, ack: B::Ack, finish: &Finish) {
        let (state, meta) = meta(id, finish);
        match self.store_retrying(id, &meta, reply_to, None).await {
            Some(_) => {
                lock(&self.ledger).mark_done(id);
                self.count(state.as_str());
                ack.ack().await;
            }
            None => ack.requeue().await,
        }
    }

    /// Stores with retries; `None` when every attempt failed.
    pub(super) async fn store_retrying(
        &self,
        id: &str,
        meta: &str,
        reply_to: Option<&str>,
        token: Option<&Token>,
    ) -> Option<Stored> {
        (|| self.store.store(id, meta, reply_to, token))
            .retry(Backoff::request().with_retries(STORE_RETRIES))
            .sleep(tokio::time::sleep)
            .notify(|e, _| {
                tracing::warn!(task_id = %id, error = %e, "storing the result failed; retrying");
                self.metrics.result_store_retries.inc();
            })
            .await
            .ok()
    }

    pub(super) fn count(&self, status: &'static str) {
        self.metrics
            .tasks
            .get_or_create(&StatusLabel { status })
            .inc();
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
        self.finish(&msg.id, msg.reply_to.as_deref(), ack, &f).await;
    }

    /// A delivery that could not be decoded but names its task: FAILURE
    /// with the reason, so the caller is not left waiting.
    pub async fn refuse(&self, id: &str, reply_to: Option<&str>, ack: B::Ack, finish: &Finish) {
        self.metrics.tasks_rejected.inc();
        self.finish(id, reply_to, ack, finish).await;
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
