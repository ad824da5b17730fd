//! Container logs written by the kubelet and read through `pods/{name}/log`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// One container's log: timestamped lines, and whether it can still grow.
#[derive(Debug, Default)]
pub struct ContainerLog {
    pub lines: Vec<(i64, String)>,
    pub closed: bool,
}

/// All container logs, keyed by (namespace, pod, container).
#[derive(Debug, Default)]
pub struct LogStore {
    logs: Mutex<HashMap<(String, String, String), ContainerLog>>,
    /// Wakes `follow=true` readers when any log grows or closes.
    pub changed: Arc<Notify>,
}

impl LogStore {
    fn with<R>(
        &self,
        f: impl FnOnce(&mut HashMap<(String, String, String), ContainerLog>) -> R,
    ) -> R {
        let mut guard = self
            .logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    pub fn append(&self, ns: &str, pod: &str, container: &str, ts_ms: i64, line: String) {
        self.with(|m| {
            m.entry((ns.into(), pod.into(), container.into()))
                .or_default()
                .lines
                .push((ts_ms, line));
        });
        self.changed.notify_waiters();
    }

    /// Starts a container's (empty) log: from now on `/log` reads it.
    pub fn open(&self, ns: &str, pod: &str, container: &str) {
        self.with(|m| {
            m.entry((ns.into(), pod.into(), container.into()))
                .or_default();
        });
        self.changed.notify_waiters();
    }

    /// Marks a container's log complete (the process exited).
    pub fn close(&self, ns: &str, pod: &str, container: &str) {
        self.with(|m| {
            m.entry((ns.into(), pod.into(), container.into()))
                .or_default()
                .closed = true;
        });
        self.changed.notify_waiters();
    }

    /// Lines from index `from` on, and whether the log is closed.
    pub fn read_from(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        from: usize,
    ) -> Option<(Vec<(i64, String)>, bool)> {
        self.with(|m| {
            m.get(&(ns.into(), pod.into(), container.into()))
                .map(|l| (l.lines.get(from..).unwrap_or(&[]).to_vec(), l.closed))
        })
    }

    /// Forgets a pod's logs (the pod was deleted).
    pub fn remove_pod(&self, ns: &str, pod: &str) {
        self.with(|m| m.retain(|(n, p, _), _| !(n == ns && p == pod)));
    }
}
