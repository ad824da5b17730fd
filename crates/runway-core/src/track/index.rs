//! A compact index of Jobs, their pods and their events, keyed for lookups by
//! run id. It stores the fields health and debug info need, not whole
//! objects: 100,000 tracked runs fit in well under 200 MB.

mod entries;

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};

use super::health::{self, Diagnosis, WorkerStatus};

pub use entries::*;

/// A change of a Job's derived status, as `WatchRuns` streams it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub run_id: String,
    pub job_name: String,
    pub namespace: String,
    pub step_key: Option<String>,
    pub status: WorkerStatus,
    pub reason: String,
    pub message: String,
    pub resource_version: String,
    pub deleted: bool,
}

/// Which watch a relist belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Job,
    Pod,
    Event,
}

/// The index itself. Not synchronised: the owner wraps it in a lock.
#[derive(Debug, Default)]
pub struct Index {
    /// Ordered, so WatchRuns can page through the current states.
    jobs: BTreeMap<ObjKey, JobEntry>,
    runs: HashMap<Str, Vec<ObjKey>>,
    pods: HashMap<ObjKey, PodEntry>,
    /// Pods per Job, sorted by name (the API lists them in that order).
    job_pods: HashMap<ObjKey, Vec<Str>>,
    pending_events: BTreeMap<ObjKey, Vec<EventSummary>>,
    /// How long a pod may stay Unschedulable before health calls it failed.
    pub unschedulable_grace_secs: i64,
    /// Events applied during a relist of namespace `ns`, to drop the rest at its end.
    relist_events: HashMap<Str, HashSet<ObjKey>>,
}

impl Index {
    pub fn new(unschedulable_grace_secs: i64) -> Index {
        Index {
            unschedulable_grace_secs,
            ..Index::default()
        }
    }

    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    pub fn job(&self, key: &ObjKey) -> Option<&JobEntry> {
        self.jobs.get(key)
    }

    pub fn pod(&self, key: &ObjKey) -> Option<&PodEntry> {
        self.pods.get(key)
    }

    /// The Jobs of a run (run worker and steps), in no particular order.
    pub fn run_jobs(&self, run_id: &str) -> &[ObjKey] {
        self.runs.get(run_id).map(Vec::as_slice).unwrap_or_default()
    }

    /// The run's Job with this name, in whatever namespace it was seen.
    pub fn find_run_job(&self, run_id: &str, job_name: &str) -> Option<(&ObjKey, &JobEntry)> {
        self.run_jobs(run_id)
            .iter()
            .find(|k| &*k.name == job_name)
            .and_then(|k| self.jobs.get_key_value(k))
    }

    /// The Job's pods, sorted by name.
    pub fn pods_of(&self, job: &ObjKey) -> Vec<(ObjKey, &PodEntry)> {
        self.job_pods
            .get(job)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| {
                        let key = ObjKey {
                            namespace: job.namespace.clone(),
                            name: n.clone(),
                        };
                        self.pods.get(&key).map(|p| (key, p))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every tracked Job's key.
    pub fn job_keys(&self) -> impl Iterator<Item = (&ObjKey, &JobEntry)> {
        self.jobs.iter()
    }

    /// Adds or replaces a Job. `now` (Unix seconds) judges Unschedulable grace.
    pub fn apply_job(&mut self, job: &Job, now: i64, out: &mut Vec<Transition>) {
        let Some((key, mut entry)) = JobEntry::from_job(job) else {
            return;
        };
        match self.jobs.get_mut(&key) {
            Some(existing) => {
                if existing.uid != entry.uid {
                    // Same name, new object: the old one was deleted unseen.
                    entry.events = self.pending_events.remove(&key).unwrap_or_default();
                } else {
                    entry.events = std::mem::take(&mut existing.events);
                    entry.reported = existing.reported.take();
                }
                *existing = entry;
            }
            None => {
                entry.events = self.pending_events.remove(&key).unwrap_or_default();
                self.runs
                    .entry(entry.run_id.clone())
                    .or_default()
                    .push(key.clone());
                self.jobs.insert(key.clone(), entry);
            }
        }
        self.report(&key, now, out);
    }

    /// Adds a Job the service itself just created, unless the watch already
    /// delivered it (the watch's copy is never older).
    pub fn insert_created(&mut self, job: &Job, now: i64, out: &mut Vec<Transition>) {
        let Some((key, _)) = JobEntry::from_job(job) else {
            return;
        };
        if !self.jobs.contains_key(&key) {
            self.apply_job(job, now, out);
        }
    }

    pub fn delete_job(&mut self, job: &Job, out: &mut Vec<Transition>) {
        let Some((key, entry)) = JobEntry::from_job(job) else {
            return;
        };
        if self.jobs.get(&key).is_some_and(|e| e.uid == entry.uid) {
            self.remove_job(&key, "was deleted", out);
        }
    }

    /// Drops a Job; `why` completes "Job <name> ..." in the transition.
    fn remove_job(&mut self, key: &ObjKey, why: &str, out: &mut Vec<Transition>) {
        let Some(entry) = self.jobs.remove(key) else {
            return;
        };
        if let Some(keys) = self.runs.get_mut(&entry.run_id) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.runs.remove(&entry.run_id);
            }
        }
        let (status, reason) = entry
            .reported
            .clone()
            .unwrap_or((WorkerStatus::NotFound, boxed("")));
        out.push(Transition {
            run_id: entry.run_id.to_string(),
            job_name: key.name.to_string(),
            namespace: key.namespace.to_string(),
            step_key: entry.step_key.as_deref().map(str::to_owned),
            status,
            reason: reason.to_string(),
            message: format!("Job {} {why}", key.name),
            resource_version: entry.resource_version.to_string(),
            deleted: true,
        });
    }

    pub fn apply_pod(&mut self, pod: &Pod, now: i64, out: &mut Vec<Transition>) {
        let Some((key, mut entry)) = PodEntry::from_pod(pod) else {
            return;
        };
        let job_key = ObjKey {
            namespace: key.namespace.clone(),
            name: entry.job.clone(),
        };
        match self.pods.get_mut(&key) {
            Some(existing) => {
                entry.events = std::mem::take(&mut existing.events);
                *existing = entry;
            }
            None => {
                entry.events = self.pending_events.remove(&key).unwrap_or_default();
                let names = self.job_pods.entry(job_key.clone()).or_default();
                if let Err(at) = names.binary_search(&key.name) {
                    names.insert(at, key.name.clone());
                }
                self.pods.insert(key, entry);
            }
        }
        self.report(&job_key, now, out);
    }

    pub fn delete_pod(&mut self, pod: &Pod, now: i64, out: &mut Vec<Transition>) {
        let Some((key, entry)) = PodEntry::from_pod(pod) else {
            return;
        };
        self.remove_pod(&key, &entry.job, now, out);
    }

    fn remove_pod(&mut self, key: &ObjKey, job: &str, now: i64, out: &mut Vec<Transition>) {
        if self.pods.remove(key).is_none() {
            return;
        }
        let job_key = ObjKey {
            namespace: key.namespace.clone(),
            name: boxed(job),
        };
        if let Some(names) = self.job_pods.get_mut(&job_key) {
            names.retain(|n| *n != key.name);
            if names.is_empty() {
                self.job_pods.remove(&job_key);
            }
        }
        self.report(&job_key, now, out);
    }

    pub fn apply_event(&mut self, event: &Event, now: i64, out: &mut Vec<Transition>) {
        let Some((key, kind, summary)) = EventSummary::from_event(event) else {
            return;
        };
        if let Some(seen) = self.relist_events.get_mut(&key.namespace) {
            seen.insert(key.clone());
        }
        match kind {
            "Job" => {
                if let Some(job) = self.jobs.get_mut(&key) {
                    push_event(&mut job.events, summary);
                    self.report(&key, now, out);
                    return;
                }
            }
            "Pod" => {
                // Pods keep warnings only: that is all debug info and health read.
                if !summary.warning {
                    return;
                }
                if let Some(pod) = self.pods.get_mut(&key) {
                    push_event(&mut pod.events, summary);
                    let job_key = ObjKey {
                        namespace: key.namespace.clone(),
                        name: pod.job.clone(),
                    };
                    self.report(&job_key, now, out);
                    return;
                }
            }
            _ => return,
        }
        // Only Dagster's own objects are worth holding for later.
        if !key.name.starts_with("dagster-") {
            return;
        }
        if self.pending_events.len() >= PENDING_EVENT_OBJECTS
            && !self.pending_events.contains_key(&key)
        {
            self.pending_events.pop_first();
        }
        push_event(self.pending_events.entry(key).or_default(), summary);
    }

    /// A watch of `kind` in `namespace` starts a relist: everything it does
    /// not deliver again before [`Index::end_relist`] is gone.
    pub fn begin_relist(&mut self, kind: Kind, namespace: &str) {
        match kind {
            Kind::Job => self
                .jobs
                .iter_mut()
                .filter(|(k, _)| &*k.namespace == namespace)
                .for_each(|(_, e)| e.mark = false),
            Kind::Pod => self
                .pods
                .iter_mut()
                .filter(|(k, _)| &*k.namespace == namespace)
                .for_each(|(_, e)| e.mark = false),
            Kind::Event => {
                self.relist_events.insert(boxed(namespace), HashSet::new());
            }
        }
    }

    pub fn end_relist(&mut self, kind: Kind, namespace: &str, now: i64, out: &mut Vec<Transition>) {
        match kind {
            Kind::Job => {
                let gone: Vec<ObjKey> = self
                    .jobs
                    .iter()
                    .filter(|(k, e)| &*k.namespace == namespace && !e.mark)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in gone {
                    self.remove_job(
                        &key,
                        "is no longer in the cluster (a fresh list did not return it: it was \
                         deleted, or the API server lost its state)",
                        out,
                    );
                }
            }
            Kind::Pod => {
                let gone: Vec<(ObjKey, Str)> = self
                    .pods
                    .iter()
                    .filter(|(k, e)| &*k.namespace == namespace && !e.mark)
                    .map(|(k, e)| (k.clone(), e.job.clone()))
                    .collect();
                for (key, job) in gone {
                    self.remove_pod(&key, &job, now, out);
                }
            }
            Kind::Event => {
                // Events expire on the server; a relist that no longer has an
                // object's events means they expired.
                if let Some(seen) = self.relist_events.remove(namespace) {
                    for (key, job) in &mut self.jobs {
                        if &*key.namespace == namespace && !seen.contains(key) {
                            job.events.clear();
                        }
                    }
                    for (key, pod) in &mut self.pods {
                        if &*key.namespace == namespace && !seen.contains(key) {
                            pod.events.clear();
                        }
                    }
                }
            }
        }
    }

    /// Re-judges every Job with an Unschedulable pod (the grace period
    /// passing is a transition no watch event announces).
    pub fn tick(&mut self, now: i64, out: &mut Vec<Transition>) {
        let waiting: HashSet<ObjKey> = self
            .pods
            .iter()
            .filter(|(_, p)| p.unschedulable.is_some())
            .map(|(k, p)| ObjKey {
                namespace: k.namespace.clone(),
                name: p.job.clone(),
            })
            .collect();
        for key in waiting {
            self.report(&key, now, out);
        }
    }

    /// The Job's status without a run status to compare with: what
    /// `WatchRuns` reports.
    pub fn observe(&self, key: &ObjKey, now: i64) -> Option<Diagnosis> {
        let job = self.jobs.get(key)?;
        let pods = self.pods_of(key);
        Some(health::observe(
            job,
            &pods,
            now,
            self.unschedulable_grace_secs,
        ))
    }

    /// The Job's status now, as a transition (what `WatchRuns` sends first
    /// with `include_current`).
    pub fn current(&self, key: &ObjKey, now: i64) -> Option<Transition> {
        let observed = self.observe(key, now)?;
        let job = self.jobs.get(key)?;
        Some(Transition {
            run_id: job.run_id.to_string(),
            job_name: key.name.to_string(),
            namespace: key.namespace.to_string(),
            step_key: job.step_key.as_deref().map(str::to_owned),
            status: observed.status,
            reason: observed.reason,
            message: observed.message,
            resource_version: job.resource_version.to_string(),
            deleted: false,
        })
    }

    /// The current transitions of up to `limit` Jobs after `after`, in key
    /// order, and the key to continue from: a reader pages through the
    /// index without copying it whole.
    pub fn current_page(
        &self,
        after: Option<&ObjKey>,
        limit: usize,
        now: i64,
    ) -> (Vec<Transition>, Option<ObjKey>) {
        use std::ops::Bound;
        let start = match after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        let mut last = None;
        for (key, _) in self.jobs.range((start, Bound::Unbounded)).take(limit) {
            if let Some(t) = self.current(key, now) {
                out.push(t);
            }
            last = Some(key.clone());
        }
        (out, last)
    }

    fn report(&mut self, key: &ObjKey, now: i64, out: &mut Vec<Transition>) {
        let Some(t) = self.current(key, now) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(key) else {
            return;
        };
        let current = (t.status, boxed(&t.reason));
        if job.reported.as_ref() == Some(&current) {
            return;
        }
        job.reported = Some(current);
        out.push(t);
    }
}

#[cfg(test)]
mod tests;
