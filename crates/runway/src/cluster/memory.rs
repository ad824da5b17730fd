//! An in-memory [`JobApi`] for tests: Jobs by namespace and name (a second
//! create of a name is 409, as on a real API server), their pods and logs,
//! and a count of every create.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use k8s_openapi::api::batch::v1::Job;

use super::{Error, JobApi};

/// Each Job's pods: (namespace, Job name) to (pod name, log) pairs.
type PodsByJob = BTreeMap<(String, String), Vec<(String, String)>>;

/// Jobs, pods and logs kept in memory.
#[derive(Debug, Default)]
pub struct MemoryJobs {
    jobs: Mutex<BTreeMap<(String, String), Job>>,
    /// Pod names per (namespace, Job), and each pod's log.
    pods: Mutex<PodsByJob>,
    /// Every create call, accepted or 409.
    pub creates: AtomicUsize,
    /// Every create the store accepted.
    pub created: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_owned(), name.to_owned())
}

impl MemoryJobs {
    /// Gives a Job a pod with this log (the simulated kubelet's work).
    pub fn add_pod(&self, namespace: &str, job: &str, pod: &str, log: &str) {
        lock(&self.pods)
            .entry(key(namespace, job))
            .or_default()
            .push((pod.to_owned(), log.to_owned()));
    }

    pub fn job_names(&self) -> Vec<String> {
        lock(&self.jobs).keys().map(|(_, n)| n.clone()).collect()
    }

    fn log_of(&self, namespace: &str, pod: &str) -> Option<String> {
        lock(&self.pods)
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .flat_map(|(_, pods)| pods.iter())
            .find(|(name, _)| name == pod)
            .map(|(_, log)| log.clone())
    }
}

impl JobApi for std::sync::Arc<MemoryJobs> {
    async fn create_job(&self, namespace: &str, job: &serde_json::Value) -> Result<Job, Error> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        let parsed: Job =
            serde_json::from_value(job.clone()).map_err(|e| Error::Config(e.to_string()))?;
        let name = parsed.metadata.name.clone().unwrap_or_default();
        let mut jobs = lock(&self.jobs);
        if jobs.contains_key(&key(namespace, &name)) {
            return Err(Error::AlreadyExists { kind: "Job", name });
        }
        jobs.insert(key(namespace, &name), parsed.clone());
        self.created.fetch_add(1, Ordering::SeqCst);
        Ok(parsed)
    }

    async fn get_job(&self, namespace: &str, name: &str) -> Result<Option<Job>, Error> {
        Ok(lock(&self.jobs).get(&key(namespace, name)).cloned())
    }

    async fn delete_job(&self, namespace: &str, name: &str) -> Result<bool, Error> {
        Ok(lock(&self.jobs).remove(&key(namespace, name)).is_some())
    }

    async fn job_pod_names(&self, namespace: &str, job: &str) -> Result<Vec<String>, Error> {
        Ok(lock(&self.pods)
            .get(&key(namespace, job))
            .map(|p| p.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default())
    }

    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<bool, Error> {
        let mut pods = lock(&self.pods);
        let mut found = false;
        for ((ns, _), list) in pods.iter_mut() {
            if ns == namespace {
                let before = list.len();
                list.retain(|(p, _)| p != name);
                found |= list.len() != before;
            }
        }
        Ok(found)
    }

    async fn pod_log_tail(
        &self,
        namespace: &str,
        pod: &str,
        _container: &str,
        lines: u32,
    ) -> Result<String, Error> {
        let log = self.log_of(namespace, pod).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        let from = all.len().saturating_sub(lines as usize);
        Ok(all[from..].join("\n"))
    }

    async fn pod_log(&self, namespace: &str, pod: &str) -> Result<String, Error> {
        self.log_of(namespace, pod).ok_or_else(|| Error::Api {
            code: 404,
            reason: "NotFound".into(),
            message: format!("pods \"{pod}\" not found"),
        })
    }
}
