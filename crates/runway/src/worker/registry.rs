//! The tasks this worker holds, as `inspect active`, `reserved`, `scheduled`
//! and `query_task` report them: scheduled while a task waits for its ETA,
//! reserved from then (or from its delivery) until its step starts, active
//! until its result is settled.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use runway_core::celery::control::shapes::TaskInfo;

/// Where a held task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Scheduled,
    Reserved,
    Active,
}

impl State {
    /// The word `query_task` answers with.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Scheduled => "scheduled",
            State::Reserved => "reserved",
            State::Active => "active",
        }
    }
}

#[derive(Debug)]
struct Held {
    seq: u64,
    info: TaskInfo,
    /// The ETA it waits for (as its message gave it), while it waits.
    eta: Option<String>,
}

/// Held tasks by id, in arrival order.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<(u64, HashMap<String, Held>)>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, (u64, HashMap<String, Held>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A task taken on, waiting for its turn.
    pub fn reserve(&self, info: TaskInfo) {
        let mut g = self.lock();
        g.0 += 1;
        let seq = g.0;
        g.1.insert(
            info.id.clone(),
            Held {
                seq,
                info,
                eta: None,
            },
        );
    }

    /// A task held until `eta`; [`Registry::due`] makes it reserved.
    pub fn schedule(&self, id: &str, eta: &str) {
        if let Some(h) = self.lock().1.get_mut(id) {
            h.eta = Some(eta.to_owned());
        }
    }

    /// Its ETA came: it waits for its turn like any other.
    pub fn due(&self, id: &str) {
        if let Some(h) = self.lock().1.get_mut(id) {
            h.eta = None;
        }
    }

    /// The scheduled tasks and their ETAs, in arrival order.
    pub fn scheduled(&self) -> Vec<(String, TaskInfo)> {
        let g = self.lock();
        let mut held: Vec<&Held> = g.1.values().filter(|h| h.eta.is_some()).collect();
        held.sort_by_key(|h| h.seq);
        held.into_iter()
            .map(|h| (h.eta.clone().unwrap_or_default(), h.info.clone()))
            .collect()
    }

    /// Its step started (unix seconds) in this process.
    pub fn start(&self, id: &str, time_start: f64, pid: u32) {
        if let Some(h) = self.lock().1.get_mut(id) {
            h.info.time_start = Some(time_start);
            h.info.worker_pid = Some(pid);
        }
    }

    /// It is settled (stored and acknowledged, or given back).
    pub fn remove(&self, id: &str) {
        self.lock().1.remove(id);
    }

    fn list(&self, state: State) -> Vec<TaskInfo> {
        let g = self.lock();
        let mut held: Vec<&Held> = g.1.values().filter(|h| state_of(h) == state).collect();
        held.sort_by_key(|h| h.seq);
        held.into_iter().map(|h| h.info.clone()).collect()
    }

    pub fn active(&self) -> Vec<TaskInfo> {
        self.list(State::Active)
    }

    pub fn reserved(&self) -> Vec<TaskInfo> {
        self.list(State::Reserved)
    }

    /// Where `id` stands here, if it is held.
    pub fn query(&self, id: &str) -> Option<(State, TaskInfo)> {
        self.lock().1.get(id).map(|h| (state_of(h), h.info.clone()))
    }

    /// The step Jobs of the active tasks.
    pub fn running_jobs(&self) -> Vec<String> {
        self.active()
            .into_iter()
            .filter_map(|t| t.step_job)
            .collect()
    }
}

fn state_of(held: &Held) -> State {
    if held.info.time_start.is_some() {
        State::Active
    } else if held.eta.is_some() {
        State::Scheduled
    } else {
        State::Reserved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runway_core::celery::control::shapes::DeliveryInfo;

    fn info(id: &str) -> TaskInfo {
        TaskInfo {
            id: id.into(),
            name: "execute_step_k8s_job".into(),
            kwargs: Default::default(),
            kwargsrepr: "{}".into(),
            hostname: "w@h".into(),
            time_start: None,
            acknowledged: false,
            delivery_info: DeliveryInfo {
                exchange: String::new(),
                routing_key: "dagster".into(),
                priority: None,
                redelivered: false,
            },
            worker_pid: None,
            step_job: Some(format!("dagster-step-{id}")),
        }
    }

    #[test]
    fn tasks_move_from_reserved_to_active_and_leave() {
        let r = Registry::default();
        r.reserve(info("b"));
        r.reserve(info("a"));
        assert_eq!(
            r.reserved()
                .iter()
                .map(|t| t.id.as_str())
                .collect::<Vec<_>>(),
            ["b", "a"]
        );
        r.start("a", 1.5, 7);
        assert_eq!(r.active()[0].worker_pid, Some(7));
        assert_eq!(r.query("a").map(|(s, _)| s.as_str()), Some("active"));
        assert_eq!(r.query("b").map(|(s, _)| s.as_str()), Some("reserved"));
        assert_eq!(r.running_jobs(), ["dagster-step-a"]);
        r.remove("a");
        assert!(r.query("a").is_none() && r.active().is_empty());
    }

    #[test]
    fn a_task_waiting_for_its_eta_is_scheduled_not_reserved() {
        let r = Registry::default();
        r.reserve(info("later"));
        r.schedule("later", "2999-01-01T00:00:00+00:00");
        assert!(r.reserved().is_empty());
        assert_eq!(r.scheduled()[0].0, "2999-01-01T00:00:00+00:00");
        assert_eq!(r.query("later").map(|(s, _)| s.as_str()), Some("scheduled"));
        r.due("later");
        assert!(r.scheduled().is_empty());
        assert_eq!(r.reserved().len(), 1);
    }
}
