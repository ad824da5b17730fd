//! Whose turn a task is. A worker first takes a concurrency permit, then the
//! task's claim (so a claim is never held while it waits for a permit, where
//! nothing would renew it); another worker's claim is followed, without a
//! permit, until its result is stored or the claim lapses.

use std::time::Duration;

use backon::BackoffBuilder as _;
use tokio::sync::OwnedSemaphorePermit;

use super::{Broker, Pool};
use crate::results::backend::{Claim, ResultStore, Token};
use crate::retry::Backoff;
use crate::worker::runner::StepRunner;

/// What decides whether this worker runs a task it holds.
pub(super) enum Turn {
    /// This worker holds a permit and the claim, and no result is stored.
    Run(OwnedSemaphorePermit, Token),
    /// The result is stored (here or by another worker): acknowledge.
    Answered,
}

impl<S: StepRunner, R: ResultStore, B: Broker> Pool<S, R, B> {
    pub(super) async fn take_turn(&self, id: &str) -> Turn {
        let mut delays = Backoff::request().build();
        loop {
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                // The pool is closing; the deliveries return to the queue.
                return Turn::Answered;
            };
            match self
                .store
                .claim(id, &self.config.hostname, self.config.claim_ttl)
                .await
            {
                Ok(Claim::Mine(token)) => return self.confirm(id, permit, token).await,
                Ok(Claim::Other(owner)) => {
                    drop(permit);
                    tracing::info!(task_id = %id, %owner, "another worker runs this task; waiting for its result");
                    if self.follow(id).await {
                        return Turn::Answered;
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::warn!(task_id = %id, error = %e, "cannot claim the task yet; retrying");
                    tokio::time::sleep(delays.delay()).await;
                }
            }
        }
    }

    /// The claim is ours and the store answers: a stored result means done.
    async fn confirm(&self, id: &str, permit: OwnedSemaphorePermit, token: Token) -> Turn {
        if self.stored(id).await {
            self.release(id, &token).await;
            return Turn::Answered;
        }
        Turn::Run(permit, token)
    }

    pub(super) async fn release(&self, id: &str, token: &Token) {
        if let Err(e) = self.store.release(id, token).await {
            tracing::debug!(task_id = %id, error = %e, "releasing the claim failed; it expires");
        }
    }

    /// Waits while another worker holds the claim: `true` once the result
    /// is stored, `false` when the claim lapsed without one (its worker died).
    pub(super) async fn follow(&self, id: &str) -> bool {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.stored(id).await {
                return true;
            }
            if let Ok(None) = self.store.holder(id).await {
                return self.stored(id).await;
            }
        }
    }

    /// Whether a result is stored, asked until the backend answers (an
    /// unreachable backend is not "no result": that would run a task twice).
    pub(super) async fn stored(&self, id: &str) -> bool {
        let mut delays = Backoff::request().build();
        loop {
            match self.store.exists(id).await {
                Ok(b) => return b,
                Err(e) => {
                    tracing::warn!(task_id = %id, error = %e, "cannot read the result backend; retrying");
                    tokio::time::sleep(delays.delay()).await;
                }
            }
        }
    }
}
