//! The state of one WatchRuns stream: the index's current states a page at a
//! time (with `include_current`), then live transitions, each through the
//! request's filter; the stream's permit and gauge go when it is dropped.

use std::sync::Arc;

use tokio::sync::{broadcast, watch, OwnedSemaphorePermit};
use tonic::Status;

use super::{worker_status, PAGE};
use crate::cluster;
use crate::cluster::tracker::Stamped;
use crate::stop::stopped;
use runway_proto as proto;

pub(super) fn to_proto(s: &Stamped) -> proto::RunTransition {
    let t = &s.transition;
    proto::RunTransition {
        run_id: t.run_id.clone(),
        job_name: t.job_name.clone(),
        namespace: t.namespace.clone(),
        status: worker_status(t.status) as i32,
        reason: t.reason.clone(),
        message: t.message.clone(),
        observed_at_micros: s.observed_at_micros,
        resource_version: t.resource_version.clone(),
        step_key: t.step_key.clone().unwrap_or_default(),
        deleted: t.deleted,
    }
}

#[derive(Debug, Clone)]
pub(super) struct Filter {
    pub(super) runs: std::collections::HashSet<String>,
    pub(super) namespace: String,
    pub(super) steps: bool,
}

impl Filter {
    fn admits(&self, t: &runway_core::track::Transition) -> bool {
        (self.runs.is_empty() || self.runs.contains(&t.run_id))
            && (self.namespace.is_empty() || self.namespace == t.namespace)
            && (self.steps || t.step_key.is_none())
    }
}

/// The paging through the index's current states of an `include_current`
/// stream.
pub(super) struct Current {
    pub(super) tracker: Arc<cluster::Tracker>,
    pub(super) after: Option<runway_core::track::index::ObjKey>,
    pub(super) page: std::vec::IntoIter<Stamped>,
}

pub(super) struct StreamState {
    pub(super) current: Option<Current>,
    pub(super) rx: broadcast::Receiver<Arc<Stamped>>,
    pub(super) filter: Filter,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) metrics: Arc<crate::metrics::Metrics>,
    pub(super) done: bool,
    pub(super) _permit: OwnedSemaphorePermit,
}

impl StreamState {
    /// The next current state the filter admits, a page at a time.
    pub(super) fn next_current(&mut self) -> Option<Stamped> {
        let cur = self.current.as_mut()?;
        loop {
            if let Some(s) = cur.page.next() {
                return Some(s);
            }
            let (page, next) = {
                let index = cur.tracker.read();
                index.current_page(cur.after.as_ref(), PAGE, cluster::tracker::now_secs())
            };
            let Some(next) = next else {
                self.current = None;
                return None;
            };
            cur.after = Some(next);
            let filter = &self.filter;
            cur.page = page
                .into_iter()
                .filter(|t| filter.admits(t))
                .map(|transition| Stamped {
                    transition,
                    observed_at_micros: 0,
                })
                .collect::<Vec<_>>()
                .into_iter();
        }
    }

    /// The next live transition the filter admits; an error ends the stream.
    pub(super) async fn next_live(&mut self) -> Option<Result<proto::RunTransition, Status>> {
        loop {
            let next = tokio::select! {
                _ = stopped(&mut self.stop) => None,
                next = self.rx.recv() => Some(next),
            };
            let Some(next) = next else {
                self.done = true;
                return Some(Err(Status::unavailable("runway serve is shutting down; reconnect to another replica with include_current=true")));
            };
            match next {
                Ok(s) if self.filter.admits(&s.transition) => return Some(Ok(to_proto(&s))),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.done = true;
                    self.metrics.watch_streams_cut.inc();
                    return Some(Err(Status::resource_exhausted(format!(
                        "this WatchRuns consumer fell {n} transitions behind the server's buffer and was cut off; read faster, or reconnect with include_current=true to resynchronise"
                    ))));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        self.metrics.watch_streams.dec();
    }
}
