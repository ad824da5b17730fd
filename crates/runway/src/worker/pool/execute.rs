//! Running a step this worker holds the claim of: STARTED recorded under
//! the claim, the claim renewed while the step runs, and the step given up
//! the moment the claim turns out to be another's.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::{unix_now, Accepted, Broker, Pool};
use crate::results::backend::{ResultStore, Stored, Token};
use crate::worker::outcome::task_event;
use crate::worker::revoke::RevokeWait;
use crate::worker::runner::{Fence, StepRunner};
use crate::worker::task::Finish;

impl<S: StepRunner, R: ResultStore, B: Broker> Pool<S, R, B> {
    /// Runs the step under its permit and claim, then settles its result.
    pub(super) async fn run(&self, msg: Accepted, permit: OwnedSemaphorePermit, token: Token) {
        let pid = std::process::id();
        // STARTED in the backend before the step's first side effect: a
        // Python worker revoking the task then leaves its state to this one.
        match self
            .store
            .started(&msg.id, &token, &self.config.hostname, pid)
            .await
        {
            Ok(Stored::Written) => {}
            Ok(Stored::AlreadyReady) => {
                // Revoked (or finished) before its step could start here.
                drop(permit);
                self.release(&msg.id, &token).await;
                self.answered(&msg.id).await;
                return;
            }
            Ok(Stored::NotOurs) => {
                drop(permit);
                self.lost(&msg.id).await;
                return;
            }
            Err(e) => tracing::warn!(task_id = %msg.id, error = %e, "recording STARTED failed"),
        }
        self.metrics.tasks_in_flight.inc();
        self.processed.fetch_add(1, Ordering::Relaxed);
        self.registry.start(&msg.id, unix_now(), pid);
        let revoke = self.revocations.running(&msg.id);
        tracing::info!(task_id = %msg.id, "received");
        self.events
            .task("task-started", vec![("uuid", msg.id.clone().into())]);
        let started = Instant::now();
        let job_done = OnceLock::new();
        let finish = self.run_fenced(&msg, revoke, &job_done, &token).await;
        self.metrics.tasks_in_flight.dec();
        drop(permit);
        if finish == Finish::ClaimLost {
            self.lost(&msg.id).await;
            return;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let terminated = self.revocations.terminated(&msg.id);
        task_event(&self.events, &msg.id, &finish, elapsed, terminated);
        // The result's latency counts from the step Job's end as the watch saw it.
        let ended = job_done.get().copied().unwrap_or_else(Instant::now);
        self.settle(&msg.id, msg.reply_to.as_deref(), &finish, ended, &token)
            .await;
    }

    /// The step, with the claim renewed at a third of its lifetime; the
    /// step is dropped (its waits abandoned, nothing more written) as soon
    /// as a renewal finds the claim is another worker's.
    async fn run_fenced(
        &self,
        msg: &Accepted,
        revoke: RevokeWait,
        job_done: &OnceLock<Instant>,
        token: &Token,
    ) -> Finish {
        let fence = self.fence(&msg.id, token);
        let exec = self.runner.run(&msg.kwargs, revoke, job_done, &fence);
        tokio::pin!(exec);
        let mut renew = tokio::time::interval(self.config.claim_ttl / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = renew.tick() => {
                    match self.store.renew(&msg.id, token, self.config.claim_ttl).await {
                        Ok(true) => {}
                        Ok(false) => return Finish::ClaimLost,
                        Err(e) => tracing::warn!(task_id = %msg.id, error = %e, "renewing the claim failed"),
                    }
                }
                f = &mut exec => return f,
            }
        }
    }

    /// The task's fence: does `token` still hold its claim? An unreachable
    /// store is not taken as lost; the fenced result write decides then.
    fn fence(&self, id: &str, token: &Token) -> Fence {
        let (store, id, token) = (self.store.clone(), id.to_owned(), token.clone());
        Fence::new(move || {
            let (store, id, token) = (store.clone(), id.clone(), token.clone());
            Box::pin(async move { store.holds(&id, &token).await.unwrap_or(true) })
        })
    }

    /// Another worker took the task over while this one could not renew its
    /// claim: nothing is stored from here, and the deliveries held are
    /// answered by that worker's result.
    pub(super) async fn lost(&self, id: &str) {
        self.metrics.claims_lost.inc();
        tracing::warn!(task_id = %id, "the task's claim lapsed and another worker took it over; its result is theirs");
        self.registry.remove(id);
        if self.follow(id).await || self.stored(id).await {
            self.answered(id).await;
        } else {
            self.requeue_all(id).await;
        }
    }
}
