//! `get_run_worker_debug_info`'s text, block for block as dagster-k8s writes
//! it (§e.3), from the index plus the container logs the caller fetched.

use std::collections::HashMap;

use super::index::{ContainerState, ContainerSummary, JobEntry, ObjKey, PodEntry};

/// A container's log tail, or why it could not be read.
pub type LogResult = Result<String, String>;

/// The containers whose logs debug info reads: running or terminated now, or
/// before (dagster-k8s's `_has_container_logs`).
pub fn containers_with_logs(pod: &PodEntry) -> Vec<&str> {
    pod.spec_containers
        .iter()
        .filter(|name| {
            pod.containers
                .iter()
                .find(|c| c.name == **name)
                .is_some_and(has_logs)
        })
        .map(|n| &**n)
        .collect()
}

fn has_logs(c: &ContainerSummary) -> bool {
    matches!(
        c.state,
        ContainerState::Running | ContainerState::Terminated { .. }
    ) || c.ran_before
}

fn container_status(c: &ContainerSummary) -> String {
    match &c.state {
        ContainerState::Running if c.ready => "Ready".into(),
        ContainerState::Running => "Running but not ready".into(),
        ContainerState::Terminated {
            exit_code,
            reason,
            message,
        } => match message {
            Some(m) if !m.is_empty() => {
                format!("Terminated with exit code {exit_code}: {reason}: {m}")
            }
            _ => format!("Terminated with exit code {exit_code}: {reason}"),
        },
        ContainerState::Waiting { reason, message } => match message {
            Some(m) if !m.is_empty() => format!("Waiting: {reason}: {m}"),
            _ => format!("Waiting: {reason}"),
        },
        ContainerState::Unknown => "None".into(),
    }
}

/// One pod's block. `logs` maps container name to its fetched tail.
pub fn pod_block(
    name: &str,
    pod: &PodEntry,
    include_logs: bool,
    log_lines: u32,
    logs: &HashMap<String, LogResult>,
) -> String {
    let mut status = format!("Pod status: {}", pod.phase);
    if let Some(m) = pod.message.as_deref().filter(|m| !m.is_empty()) {
        status.push_str(": ");
        status.push_str(m);
    }
    for c in &pod.containers {
        status.push_str(&format!(
            "\nContainer '{}' status: {}",
            c.name,
            container_status(c)
        ));
    }
    let mut warnings = Vec::new();
    let mut log_strs = Vec::new();
    if include_logs {
        for container in &pod.spec_containers {
            let with_logs = pod
                .containers
                .iter()
                .find(|c| c.name == *container)
                .is_some_and(has_logs);
            let text = match logs.get(&**container) {
                Some(Ok(text)) if with_logs => {
                    let text = text.strip_suffix('\n').unwrap_or(text);
                    if text.contains("exec format error") {
                        warnings.push(format!(
                            "Logs for container '{container}' contained `exec format error`, which usually means that your Docker image was built using the wrong architecture.\nTry rebuilding your docker image with the `--platform linux/amd64` flag set."
                        ));
                    }
                    if text.is_empty() {
                        format!("No logs for container '{container}'.")
                    } else {
                        format!("Last {log_lines} log lines for container '{container}':\n{text}")
                    }
                }
                Some(Err(e)) if with_logs => {
                    format!("Failure fetching pod logs for container '{container}': {e}")
                }
                _ => format!("No logs for container '{container}'."),
            };
            log_strs.push(text);
        }
    }
    let warning_events: Vec<String> = pod
        .events
        .iter()
        .filter(|e| e.warning)
        .map(|e| {
            let count = if e.count > 1 {
                format!(" (x{})", e.count)
            } else {
                String::new()
            };
            format!("{}: {}{count}", e.reason, e.message)
        })
        .collect();
    let warning_str = if warning_events.is_empty() {
        "No warning events for pod.".to_owned()
    } else {
        format!("Warning events for pod:\n{}", warning_events.join("\n"))
    };
    let mut out = format!("Debug information for pod {name}:\n\n{status}");
    for w in warnings {
        out.push_str("\n\n");
        out.push_str(&w);
    }
    for l in log_strs {
        out.push_str("\n\n");
        out.push_str(&l);
    }
    out.push_str("\n\n");
    out.push_str(&warning_str);
    out
}

/// Python's `datetime.isoformat()` of a UTC time given as RFC 3339.
fn isoformat(rfc3339: &str) -> String {
    match rfc3339.strip_suffix('Z') {
        Some(base) => format!("{base}+00:00"),
        None => rfc3339.to_owned(),
    }
}

fn or_none(n: u32) -> String {
    if n == 0 {
        "None".into()
    } else {
        n.to_string()
    }
}

/// The job block dagster-k8s writes when the Job has no pods.
pub fn job_block(job_name: &str, job: Option<&JobEntry>) -> String {
    let Some(job) = job else {
        return format!("Debug information for job {job_name}:\n\nCould not find job {job_name}");
    };
    let mut out = format!(
        "Debug information for job {job_name}:\n\nJob status:\n - start_time: {}\n - active={}\n - succeeded={}\n - failed={}",
        job.start_time.as_deref().map(isoformat).unwrap_or_else(|| "None".into()),
        or_none(job.active),
        or_none(job.succeeded),
        or_none(job.failed),
    );
    for e in &job.events {
        out.push_str(&format!("\n\n{}: {}", e.reason, e.message));
    }
    out
}

/// The whole text. `pod_blocks` are the blocks of the Job's pods, in name order.
pub fn debug_text(job_name: &str, job: Option<&JobEntry>, pods: &[(ObjKey, String)]) -> String {
    if let Some((first, _)) = pods.first() {
        let blocks: Vec<&str> = pods.iter().map(|(_, b)| b.as_str()).collect();
        format!(
            "{}\nFor more information about the failure, try running `kubectl describe pod {}`, `kubectl logs {}`, or `kubectl describe job {job_name}` in your cluster.",
            blocks.join("\n"),
            first.name,
            first.name
        )
    } else {
        format!(
            "\n\n{}\n\nFor more information about the failure, try running `kubectl describe job {job_name}` in your cluster.",
            job_block(job_name, job)
        )
    }
}
