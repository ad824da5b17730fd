//! The step pods' logs, whose serialized DagsterEvents are the task's result.

use serde_json::Value;

use super::run_log::{api_error, Run};
use super::step_job::StepJob;
use crate::cluster::JobApi;
use runway_core::dagster::events::events_from_log;
use runway_core::dagster::serdes::Meta;

/// The events in the logs of the Job's pods; `None` when its pods cannot be
/// listed (the error is recorded and the task ends, as the Python task does).
pub async fn collect<K: JobApi>(
    run: &Run<'_, K>,
    job: &StepJob,
    events: &mut Vec<Value>,
) -> Option<Vec<String>> {
    let pods = pod_names(run, job).await?;
    events.push(
        run.engine(
            "Retrieving logs from Kubernetes Job pods",
            &[("Pod names", Meta::text(pods.join("\n")))],
            None,
            None,
        )
        .await,
    );
    let mut logs = String::new();
    for pod in &pods {
        match run.ctx.kube.pod_log(&job.namespace, pod).await {
            Ok(l) => {
                logs.push_str(&l);
                logs.push('\n');
            }
            Err(e) => {
                run.engine(
                    &format!(
                        "Encountered unexpected error while fetching pod logs for Kubernetes job \
                         {}, Pod name {pod} for step {}. Will attempt to continue \
                         with other pods.",
                        job.name, run.step_key
                    ),
                    &[("Step key", Meta::text(&run.step_key))],
                    None,
                    Some(api_error(&e)),
                )
                .await;
            }
        }
    }
    Some(events_from_log(&logs))
}

/// The watch index already knows the Job's pods; the API is asked only when
/// its pod events have not arrived yet.
async fn pod_names<K: JobApi>(run: &Run<'_, K>, job: &StepJob) -> Option<Vec<String>> {
    let ctx = run.ctx;
    let known = ctx.jobs.pods(&job.namespace, &job.name);
    if !known.is_empty() {
        return Some(known);
    }
    match ctx.kube.job_pod_names(&job.namespace, &job.name).await {
        Ok(p) => Some(p),
        Err(e) => {
            run.engine(
                &format!(
                    "Encountered unexpected error retreiving Pods for Kubernetes job {} \
                     for step {}, exiting.",
                    job.name, run.step_key
                ),
                &[("Step key", Meta::text(&run.step_key))],
                None,
                Some(api_error(&e)),
            )
            .await;
            None
        }
    }
}
