//! What the index keeps per object: a Job's, a pod's and an event's few
//! fields that health and debug info read, not whole objects.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};

use crate::track::health::WorkerStatus;

/// Events kept per object: the newest ones win.
pub(super) const EVENTS_PER_OBJECT: usize = 8;
/// Events whose object the index has not seen yet (a pod's first event can
/// arrive on the event watch before the pod does on the pod watch).
pub(super) const PENDING_EVENT_OBJECTS: usize = 4096;

pub(super) type Str = Box<str>;

pub(super) fn boxed(s: &str) -> Str {
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

pub(super) fn push_event(events: &mut Vec<EventSummary>, event: EventSummary) {
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
    pub(super) mark: bool,
}

pub(super) fn count(v: Option<i32>) -> u32 {
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
    pub(super) mark: bool,
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
