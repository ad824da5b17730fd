//! A compact index of Jobs, their pods and their events, keyed for lookups by
//! run id. It stores the fields health and debug info need, not whole
//! objects: 100,000 tracked runs fit in well under 200 MB.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};

use super::health::{self, Diagnosis, WorkerStatus};

/// Events kept per object: the newest ones win.
const EVENTS_PER_OBJECT: usize = 8;
/// Events whose object the index has not seen yet (a pod's first event can
/// arrive on the event watch before the pod does on the pod watch).
const PENDING_EVENT_OBJECTS: usize = 4096;

type Str = Box<str>;

fn boxed(s: &str) -> Str {
    s.into()
}

/// Namespace and name, the identity of an object in the index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    pub namespace: Str,
    pub name: Str,
}

impl ObjKey {
    pub fn new(namespace: &str, name: &str) -> ObjKey {
        ObjKey {
            namespace: boxed(namespace),
            name: boxed(name),
        }
    }
}

/// A Job condition that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub complete: bool,
    pub reason: Str,
    pub message: Str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    /// The Event object's own name: a repeated event updates it in place.
    pub id: Str,
    pub warning: bool,
    pub reason: Str,
    pub message: Str,
    pub count: u32,
}

impl EventSummary {
    pub fn from_event(event: &Event) -> Option<(ObjKey, &str, EventSummary)> {
        let object = &event.involved_object;
        let kind = object.kind.as_deref()?;
        let name = object.name.as_deref()?;
        let namespace = object
            .namespace
            .as_deref()
            .or(event.metadata.namespace.as_deref())?;
        Some((
            ObjKey::new(namespace, name),
            kind,
            EventSummary {
                id: boxed(event.metadata.name.as_deref().unwrap_or_default()),
                warning: event.type_.as_deref() == Some("Warning"),
                reason: boxed(event.reason.as_deref().unwrap_or_default()),
                message: boxed(event.message.as_deref().unwrap_or_default()),
                count: event.count.and_then(|c| u32::try_from(c).ok()).unwrap_or(1),
            },
        ))
    }
}

fn push_event(events: &mut Vec<EventSummary>, event: EventSummary) {
    if let Some(existing) = events.iter_mut().find(|e| e.id == event.id) {
        *existing = event;
        return;
    }
    if events.len() >= EVENTS_PER_OBJECT {
        events.remove(0);
    }
    events.push(event);
}

/// What the index keeps of a Job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEntry {
    pub uid: Str,
    pub resource_version: Str,
    pub run_id: Str,
    /// The `dagster/op` label of step Jobs.
    pub step_key: Option<Str>,
    pub image: Str,
    /// `status.startTime` as RFC 3339.
    pub start_time: Option<Str>,
    pub active: u32,
    pub ready: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub finished: Option<Finished>,
    pub deleting: bool,
    pub events: Vec<EventSummary>,
    /// The status last reported as a transition.
    pub reported: Option<(WorkerStatus, Str)>,
    /// Seen by the current relist (see [`Index::begin_relist`]).
    mark: bool,
}

fn count(v: Option<i32>) -> u32 {
    v.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

impl JobEntry {
    /// `None` for a Job without the `dagster/run-id` label: not ours.
    pub fn from_job(job: &Job) -> Option<(ObjKey, JobEntry)> {
        let meta = &job.metadata;
        let labels = meta.labels.as_ref()?;
        let run_id = labels.get("dagster/run-id")?;
        let key = ObjKey::new(meta.namespace.as_deref()?, meta.name.as_deref()?);
        let status = job.status.as_ref();
        let finished = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|conds| {
                conds
                    .iter()
                    .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
            })
            .map(|c| Finished {
                complete: c.type_ == "Complete",
                reason: boxed(c.reason.as_deref().unwrap_or_default()),
                message: boxed(c.message.as_deref().unwrap_or_default()),
            });
        let image = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.as_deref())
            .unwrap_or_default();
        Some((
            key,
            JobEntry {
                uid: boxed(meta.uid.as_deref().unwrap_or_default()),
                resource_version: boxed(meta.resource_version.as_deref().unwrap_or_default()),
                run_id: boxed(run_id),
                step_key: labels.get("dagster/op").map(|s| boxed(s)),
                image: boxed(image),
                start_time: status
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| boxed(&t.0.to_string())),
                active: count(status.and_then(|s| s.active)),
                ready: count(status.and_then(|s| s.ready)),
                succeeded: count(status.and_then(|s| s.succeeded)),
                failed: count(status.and_then(|s| s.failed)),
                finished,
                deleting: meta.deletion_timestamp.is_some(),
                events: Vec::new(),
                reported: None,
                mark: true,
            },
        ))
    }
}

/// A container's state, as debug info prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Waiting {
        reason: Str,
        message: Option<Str>,
    },
    Running,
    Terminated {
        exit_code: i32,
        reason: Str,
        message: Option<Str>,
    },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub name: Str,
    pub ready: bool,
    pub state: ContainerState,
    /// It ran before (logs exist even while it waits again).
    pub ran_before: bool,
}

impl ContainerSummary {
    fn from_status(status: &ContainerStatus) -> ContainerSummary {
        let state = match status.state.as_ref() {
            Some(s) if s.running.is_some() => ContainerState::Running,
            Some(s) if s.terminated.is_some() => {
                let t = s.terminated.as_ref();
                ContainerState::Terminated {
                    exit_code: t.map(|t| t.exit_code).unwrap_or_default(),
                    reason: boxed(t.and_then(|t| t.reason.as_deref()).unwrap_or("None")),
                    message: t.and_then(|t| t.message.as_deref()).map(boxed),
                }
            }
            Some(s) if s.waiting.is_some() => {
                let w = s.waiting.as_ref();
                ContainerState::Waiting {
                    reason: boxed(w.and_then(|w| w.reason.as_deref()).unwrap_or("None")),
                    message: w.and_then(|w| w.message.as_deref()).map(boxed),
                }
            }
            _ => ContainerState::Unknown,
        };
        let ran_before = status
            .last_state
            .as_ref()
            .is_some_and(|s| s.running.is_some() || s.terminated.is_some());
        ContainerSummary {
            name: boxed(&status.name),
            ready: status.ready,
            state,
            ran_before,
        }
    }
}

/// What the index keeps of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEntry {
    pub job: Str,
    pub phase: Str,
    pub message: Option<Str>,
    /// The pod's spec container names, in order (logs are read per container).
    pub spec_containers: Vec<Str>,
    pub containers: Vec<ContainerSummary>,
    /// `PodScheduled=False` with reason Unschedulable: since when (Unix
    /// seconds) and why.
    pub unschedulable: Option<(i64, Str)>,
    pub events: Vec<EventSummary>,
    mark: bool,
}

impl PodEntry {
    /// `None` for a pod that belongs to no Job.
    pub fn from_pod(pod: &Pod) -> Option<(ObjKey, PodEntry)> {
        let meta = &pod.metadata;
        let labels = meta.labels.as_ref()?;
        let job = labels
            .get("batch.kubernetes.io/job-name")
            .or_else(|| labels.get("job-name"))?;
        let key = ObjKey::new(meta.namespace.as_deref()?, meta.name.as_deref()?);
        let status = pod.status.as_ref();
        let unschedulable = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
            .map(|c| {
                (
                    c.last_transition_time
                        .as_ref()
                        .map(|t| t.0.as_second())
                        .unwrap_or_default(),
                    boxed(c.message.as_deref().unwrap_or_default()),
                )
            });
        Some((
            key,
            PodEntry {
                job: boxed(job),
                phase: boxed(status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending")),
                message: status.and_then(|s| s.message.as_deref()).map(boxed),
                spec_containers: pod
                    .spec
                    .as_ref()
                    .map(|s| s.containers.iter().map(|c| boxed(&c.name)).collect())
                    .unwrap_or_default(),
                containers: status
                    .and_then(|s| s.container_statuses.as_ref())
                    .map(|cs| cs.iter().map(ContainerSummary::from_status).collect())
                    .unwrap_or_default(),
                unschedulable,
                events: Vec::new(),
                mark: true,
            },
        ))
    }
}

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
    jobs: HashMap<ObjKey, JobEntry>,
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
            self.remove_job(&key, out);
        }
    }

    fn remove_job(&mut self, key: &ObjKey, out: &mut Vec<Transition>) {
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
            message: format!("Job {} was deleted", key.name),
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
                    self.remove_job(&key, out);
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
