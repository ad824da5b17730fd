//! Run worker health: dagster-k8s's rules on the Job counters (§e.2), plus
//! the pod-level diagnosis they miss (a pod that cannot pull its image keeps
//! a Dagster run STARTING until the start timeout).

use super::index::{ContainerState, JobEntry, ObjKey, PodEntry};

/// Dagster's `WorkerStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkerStatus {
    Running,
    NotFound,
    Failed,
    Success,
    Unknown,
}

/// How health is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthMode {
    /// dagster-k8s's rules plus the pod-level diagnosis.
    #[default]
    Diagnose,
    /// dagster-k8s's exact answers.
    DagsterCompat,
}

/// A health answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub status: WorkerStatus,
    pub message: String,
    pub reason: String,
    pub transient: bool,
}

/// A Job's status judged on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub status: WorkerStatus,
    pub reason: String,
    pub message: String,
}

/// Container waiting reasons after which the container will not start
/// without someone changing something.
const FAILING_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why the Job's pods cannot do their work, if they cannot.
pub fn diagnose_pods(
    job: &JobEntry,
    pods: &[(ObjKey, &PodEntry)],
    now: i64,
    grace_secs: i64,
) -> Option<(String, String)> {
    for (key, pod) in pods {
        for c in &pod.containers {
            match &c.state {
                ContainerState::Waiting { reason, message }
                    if FAILING_WAITING.contains(&&**reason) =>
                {
                    let detail = message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    return Some((
                        reason.to_string(),
                        format!(
                            "Pod {} container '{}' is waiting: {reason}{detail}",
                            key.name, c.name
                        ),
                    ));
                }
                ContainerState::Terminated {
                    exit_code, reason, ..
                } if &**reason == "OOMKilled" => {
                    return Some((
                        "OOMKilled".into(),
                        format!(
                            "Pod {} container '{}' was OOMKilled (exit code {exit_code}): it used more memory than its limit",
                            key.name, c.name
                        ),
                    ));
                }
                _ => {}
            }
        }
        if let Some((since, message)) = &pod.unschedulable {
            let waited = now.saturating_sub(*since);
            if waited >= grace_secs {
                return Some((
                    "Unschedulable".into(),
                    format!(
                        "Pod {} could not be scheduled for {waited}s: {message}",
                        key.name
                    ),
                ));
            }
        }
    }
    if pods.is_empty() && job.active == 0 && job.succeeded == 0 {
        if let Some(e) = job
            .events
            .iter()
            .rev()
            .find(|e| e.warning && &*e.reason == "FailedCreate")
        {
            return Some((
                "FailedCreate".into(),
                format!("Job could not create its pod: {}", e.message),
            ));
        }
    }
    None
}

/// A Job's status without a run status (what `WatchRuns` reports).
pub fn observe(
    job: &JobEntry,
    pods: &[(ObjKey, &PodEntry)],
    now: i64,
    grace_secs: i64,
) -> Diagnosis {
    if job.succeeded > 0 || job.finished.as_ref().is_some_and(|f| f.complete) {
        return Diagnosis {
            status: WorkerStatus::Success,
            reason: "Complete".into(),
            message: String::new(),
        };
    }
    let pod_problem = diagnose_pods(job, pods, now, grace_secs);
    if let Some(f) = job.finished.as_ref().filter(|f| !f.complete) {
        let (reason, message) = match pod_problem {
            Some((reason, message)) => (reason, format!("K8s job failed: {message}")),
            None => (
                f.reason.to_string(),
                format!("K8s job failed: {}: {}", f.reason, f.message),
            ),
        };
        return Diagnosis {
            status: WorkerStatus::Failed,
            reason,
            message,
        };
    }
    if let Some((reason, message)) = pod_problem {
        return Diagnosis {
            status: WorkerStatus::Failed,
            reason,
            message,
        };
    }
    let reason = if pods.iter().any(|(_, p)| &*p.phase == "Running") {
        "Running"
    } else {
        "Pending"
    };
    Diagnosis {
        status: WorkerStatus::Running,
        reason: reason.into(),
        message: String::new(),
    }
}

/// What the health question needs besides the Job.
#[derive(Debug, Clone, Copy)]
pub struct HealthQuery<'a> {
    pub job_name: &'a str,
    /// The Dagster run status ("STARTED", ...).
    pub run_status: &'a str,
    pub mode: HealthMode,
    /// CeleryK8sRunLauncher's rules in compat mode.
    pub celery: bool,
    /// The watches have delivered their first full list.
    pub synced: bool,
    pub now: i64,
    pub grace_secs: i64,
}

fn answer(status: WorkerStatus, message: impl Into<String>, reason: &str) -> Health {
    Health {
        status,
        message: message.into(),
        reason: reason.into(),
        transient: false,
    }
}

/// `check_run_worker_health`, from the index.
pub fn health(job: Option<(&JobEntry, Vec<(ObjKey, &PodEntry)>)>, q: &HealthQuery<'_>) -> Health {
    let Some((job, pods)) = job else {
        if !q.synced {
            return Health {
                transient: true,
                ..answer(
                    WorkerStatus::Unknown,
                    "Runway's watch of the cluster has not synced yet",
                    "NotSynced",
                )
            };
        }
        return match (q.mode, q.celery) {
            (HealthMode::DagsterCompat, true) => answer(
                WorkerStatus::Unknown,
                format!("K8s job {} could not be found", q.job_name),
                "NotFound",
            ),
            (HealthMode::DagsterCompat, false) => answer(
                WorkerStatus::Unknown,
                format!("Job {} could not be found", q.job_name),
                "NotFound",
            ),
            (HealthMode::Diagnose, _) => answer(
                WorkerStatus::NotFound,
                format!("Job {} could not be found", q.job_name),
                "NotFound",
            ),
        };
    };
    if q.mode == HealthMode::DagsterCompat {
        return compat(job, q);
    }
    let pod_problem = diagnose_pods(job, &pods, q.now, q.grace_secs);
    let with_cause = |base: &str, fallback: &str| match &pod_problem {
        Some((reason, message)) => (reason.clone(), format!("{base}: {message}")),
        None => (fallback.to_owned(), base.to_owned()),
    };
    let run_in_progress = matches!(q.run_status, "STARTED" | "CANCELING");
    if run_in_progress && job.active == 0 && (job.failed > 0 || job.succeeded > 0) {
        let (reason, message) = with_cause(
            "Run has not completed but K8s job has no active pods",
            "NoActivePods",
        );
        return answer(WorkerStatus::Failed, message, &reason);
    }
    if job.succeeded > 0 {
        return answer(WorkerStatus::Success, "", "");
    }
    if job.failed > 0 && job.active == 0 {
        let fallback = job
            .finished
            .as_ref()
            .filter(|f| !f.complete && !f.reason.is_empty())
            .map(|f| f.reason.to_string())
            .unwrap_or_else(|| "JobFailed".into());
        let (reason, message) = with_cause("K8s job failed", &fallback);
        return answer(WorkerStatus::Failed, message, &reason);
    }
    if let Some((reason, message)) = pod_problem {
        return answer(WorkerStatus::Failed, message, &reason);
    }
    answer(WorkerStatus::Running, "", "")
}

fn compat(job: &JobEntry, q: &HealthQuery<'_>) -> Health {
    if q.celery {
        if job.failed > 0 {
            return answer(WorkerStatus::Failed, "K8s job failed", "JobFailed");
        }
        return answer(WorkerStatus::Running, "", "");
    }
    let run_in_progress = matches!(q.run_status, "STARTED" | "CANCELING");
    if run_in_progress && job.active == 0 && (job.failed > 0 || job.succeeded > 0) {
        return answer(
            WorkerStatus::Failed,
            "Run has not completed but K8s job has no active pods",
            "NoActivePods",
        );
    }
    if job.succeeded > 0 {
        return answer(WorkerStatus::Success, "", "");
    }
    if job.failed > 0 && job.active == 0 {
        return answer(WorkerStatus::Failed, "K8s job failed", "JobFailed");
    }
    answer(WorkerStatus::Running, "", "")
}
