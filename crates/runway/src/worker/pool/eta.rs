//! Celery's `eta` (and `countdown`, which the client turns into an eta) and
//! `expires`. A task due later waits here, holding its delivery but neither
//! a concurrency permit nor a claim, and widening the prefetch window so it
//! does not starve the consumer; its delivery is parked like a long step's
//! before RabbitMQ's consumer timeout. A task past its `expires` is stored
//! REVOKED ("expired") and acknowledged without running.

use std::time::Duration;

use serde_json::Value;

use super::{lock, Accepted, Broker, Pool};
use crate::results::backend::ResultStore;
use crate::worker::ack::Ack;
use crate::worker::outcome::{meta, task_event};
use crate::worker::runner::StepRunner;
use crate::worker::task::Finish;
use runway_core::celery::message::header_time;

/// Long waits are slept in steps, so a far-off ETA (year 2999) never
/// overflows the timer.
const SLEEP_STEP: Duration = Duration::from_secs(3600);

/// Narrows the prefetch window again however the wait ends (the task may be
/// dropped at shutdown while it waits).
struct Scheduled<'a, B: Broker>(&'a B);

impl<B: Broker> Drop for Scheduled<'_, B> {
    fn drop(&mut self) {
        self.0.scheduled(false);
    }
}

/// The wall clock as of a task's arrival, advanced by the monotonic clock
/// (so the ETA wait and the expiry check agree, and a paused test clock
/// drives both).
pub(super) struct Arrival {
    wall: jiff::Timestamp,
    at: tokio::time::Instant,
}

impl Arrival {
    pub fn now() -> Arrival {
        Arrival {
            wall: jiff::Timestamp::now(),
            at: tokio::time::Instant::now(),
        }
    }

    fn wall_now(&self) -> jiff::Timestamp {
        let elapsed = jiff::SignedDuration::try_from(self.at.elapsed()).unwrap_or_default();
        self.wall.checked_add(elapsed).unwrap_or(self.wall)
    }
}

fn header_at(msg: &Accepted, name: &str) -> Option<(String, jiff::Timestamp)> {
    let text = msg.headers.get(name).and_then(Value::as_str)?;
    match header_time(text) {
        Some(at) => Some((text.to_owned(), at)),
        None => {
            tracing::warn!(task_id = %msg.id, header = name, value = %runway_core::text::clip(text, 64), "unreadable time header; ignored");
            None
        }
    }
}

impl<S: StepRunner, R: ResultStore, B: Broker> Pool<S, R, B> {
    /// Waits for the task's ETA, as `inspect scheduled` shows.
    pub(super) async fn until_eta(&self, msg: &Accepted, arrival: &Arrival) {
        let Some((text, eta)) = header_at(msg, "eta") else {
            return;
        };
        if eta <= arrival.wall_now() {
            return;
        }
        self.registry.schedule(&msg.id, &text);
        self.broker.scheduled(true);
        let _widened = Scheduled(&self.broker);
        tracing::info!(task_id = %msg.id, %eta, "task scheduled for its ETA");
        let mut left =
            Duration::try_from(eta.duration_since(arrival.wall_now())).unwrap_or_default();
        while !left.is_zero() {
            let step = left.min(SLEEP_STEP);
            tokio::time::sleep(step).await;
            left -= step;
        }
        self.registry.due(&msg.id);
    }

    /// Whether the task's `expires` has passed.
    pub(super) fn expired(&self, msg: &Accepted, arrival: &Arrival) -> bool {
        header_at(msg, "expires").is_some_and(|(_, at)| at <= arrival.wall_now())
    }

    /// Stores REVOKED with `TaskRevokedError('expired')`, sends
    /// `task-revoked` with `expired: true`, and acknowledges the deliveries.
    pub(super) async fn expire(&self, msg: &Accepted) {
        tracing::info!(task_id = %msg.id, "task expired before it ran; revoking it");
        let finish = Finish::Expired;
        let (state, stored) = meta(&msg.id, &finish);
        let written = self
            .store_retrying(&msg.id, &stored, msg.reply_to.as_deref(), None)
            .await;
        if written.is_none() {
            self.requeue_all(&msg.id).await;
            return;
        }
        self.revocations.revoke(&msg.id, false);
        self.count(state.as_str());
        task_event(&self.events, &msg.id, &finish, 0.0, false);
        self.registry.remove(&msg.id);
        let held = lock(&self.ledger).finish(&msg.id);
        for a in held {
            a.ack().await;
        }
    }
}
