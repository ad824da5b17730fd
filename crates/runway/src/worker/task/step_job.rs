//! The step's Job: rendered with the parity-tested builder, announced,
//! created (a 409 reuses the Job), waited on through the shared watch, and
//! deleted the way dagster-k8s deletes it.

use std::time::Duration;

use tokio::sync::watch;

use serde_json::{Map, Value};

use super::run_log::{api_error, py_str, Run};
use super::{Ctx, Finish};
use crate::cluster::tracker::add_managed_by;
use crate::cluster::{self, JobApi};
use crate::worker::revoke::RevokeWait;
use crate::worker::wait::{JobWait, RunWait};
use runway_core::dagster::serdes::{Meta, QUEUE_WAIT_MARKER};
use runway_core::dagster::step::StepTask;
use runway_core::dagster::Env;
use runway_core::track::health::WorkerStatus;
use runway_core::track::index::Transition;

/// A rendered step Job.
#[derive(Debug)]
pub struct StepJob {
    pub job: Value,
    pub namespace: String,
    pub name: String,
    /// The task's `job_config_dict` (for the announcing event).
    job_config: Map<String, Value>,
}

/// How the wait for the step Job ended.
#[derive(Debug)]
pub enum Waited {
    Succeeded,
    Failed(String),
    Timeout,
    RunNotStarted,
    Revoked,
    /// The Job is not in the cluster (any more), and why if known.
    Gone(String),
}

impl StepJob {
    pub fn render(
        task: &StepTask,
        kwargs: &Map<String, Value>,
        env: &dyn Env,
    ) -> Result<StepJob, Finish> {
        let rendered = runway_core::render::render_step(task, env)
            .map_err(|e| Finish::value_error(e.to_string()))?;
        let mut job = rendered.job;
        add_managed_by(&mut job);
        Ok(StepJob {
            job,
            namespace: rendered.namespace,
            name: task.k8s_job_name.clone(),
            job_config: kwargs
                .get("job_config_dict")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// "Executing step … in Kubernetes job …": the first event of the result.
    pub async fn announce<K: JobApi>(&self, run: &Run<'_, K>) -> Value {
        let jc_str = |k: &str| self.job_config.get(k).and_then(Value::as_str);
        let step = &run.step_key;
        run.engine(
            &format!("Executing step \"{step}\" in Kubernetes job {}.", self.name),
            &[
                ("Step key", Meta::text(step)),
                ("Kubernetes Job name", Meta::text(&self.name)),
                ("Job image", Meta::opt(jc_str("job_image"))),
                ("Image pull policy", Meta::opt(jc_str("image_pull_policy"))),
                (
                    "Image pull secrets",
                    Meta::text(py_str(self.job_config.get("image_pull_secrets"))),
                ),
                (
                    "Service account name",
                    Meta::text(py_str(self.job_config.get("service_account_name"))),
                ),
            ],
            Some(QUEUE_WAIT_MARKER),
            None,
        )
        .await
    }

    /// Creates the Job; an existing one (a takeover, a redelivery) is used
    /// as it is. `false` when the task must end (the error is recorded).
    pub async fn create<K: JobApi>(&self, run: &Run<'_, K>) -> bool {
        let (step, name) = (&run.step_key, &self.name);
        match run.ctx.kube.create_job(&self.namespace, &self.job).await {
            Ok(_) => true,
            Err(cluster::Error::AlreadyExists { .. }) => {
                run.engine(
                    &format!(
                        "Did not create Kubernetes job {name} for step {step} since job name \
                         already exists, proceeding with existing job."
                    ),
                    &[
                        ("Step key", Meta::text(step)),
                        ("Kubernetes Job name", Meta::text(name)),
                    ],
                    Some(QUEUE_WAIT_MARKER),
                    None,
                )
                .await;
                true
            }
            Err(e) => {
                run.engine(
                    &format!(
                        "Encountered unexpected error while creating Kubernetes job {name} for \
                         step {step}, exiting."
                    ),
                    &[("Step key", Meta::text(step))],
                    None,
                    Some(api_error(&e)),
                )
                .await;
                false
            }
        }
    }

    /// `delete_job`: the Job, then its pods (dagster-k8s deletes both).
    pub async fn delete<K: JobApi>(&self, ctx: &Ctx<K>, why: &'static str) {
        let (ns, name) = (&self.namespace, &self.name);
        let pods = ctx.kube.job_pod_names(ns, name).await.unwrap_or_default();
        let deleted = async {
            ctx.kube.delete_job(ns, name).await?;
            for p in pods {
                ctx.kube.delete_pod(ns, &p).await?;
            }
            Ok::<_, cluster::Error>(())
        };
        if let Err(e) = deleted.await {
            tracing::warn!(job = %name, error = %e, why, "deleting the step Job failed");
        }
    }
}

impl StepJob {
    /// A timeout confirmed by the Job: when the API says it succeeded or
    /// failed meanwhile (its end fell in a pause, or the watch is behind),
    /// that is the outcome; a Job gone is said so; only a Job still running
    /// timed out.
    pub async fn recheck<K: JobApi>(&self, ctx: &Ctx<K>, waited: Waited) -> Waited {
        if !matches!(waited, Waited::Timeout) {
            return waited;
        }
        match ctx.kube.get_job(&self.namespace, &self.name).await {
            Ok(Some(job)) => {
                let status = job.status.unwrap_or_default();
                if status.succeeded.unwrap_or(0) > 0 {
                    Waited::Succeeded
                } else if status.failed.unwrap_or(0) > 0 {
                    Waited::Failed("the Job failed".into())
                } else {
                    Waited::Timeout
                }
            }
            Ok(None) => Waited::Gone(String::new()),
            Err(e) => {
                tracing::warn!(job = %self.name, error = %e, "re-reading the step Job after its timeout failed");
                Waited::Timeout
            }
        }
    }
}

/// Waits for the first of: the Job's end (as the watch index judges it),
/// the run leaving STARTED, a revoke, or the task's `job_wait_timeout`.
/// A run seen CANCELING is given `cancel_grace` first (see [`canceling`]).
pub async fn wait(
    job: &mut JobWait,
    run: &mut RunWait,
    revoke: &mut RevokeWait,
    timeout_secs: f64,
    cancel_grace: Duration,
) -> Waited {
    let timeout = Duration::from_secs_f64(timeout_secs.clamp(1.0, 1e9));
    let waits = Waits {
        job: &mut job.rx,
        run: &mut run.rx,
        revoke: &mut revoke.rx,
    };
    wait_on(waits, timeout, cancel_grace).await
}

/// The receivers a step's wait selects over.
struct Waits<'a> {
    job: &'a mut watch::Receiver<Option<Transition>>,
    run: &'a mut watch::Receiver<Option<String>>,
    revoke: &'a mut watch::Receiver<bool>,
}

async fn wait_on(w: Waits<'_>, timeout: Duration, cancel_grace: Duration) -> Waited {
    tokio::select! {
        r = job_end(w.job) => return r,
        _ = w.run.wait_for(Option::is_some) => {}
        _ = w.revoke.wait_for(|r| *r) => return Waited::Revoked,
        _ = tokio::time::sleep(timeout) => return Waited::Timeout,
    }
    if w.run.borrow().as_deref() == Some("CANCELING") {
        return canceling(w, cancel_grace).await;
    }
    Waited::RunNotStarted
}

/// The run is CANCELING: its launcher is deleting the run worker's Job
/// (Runway's launcher deletes the step Jobs too). Once signalled, the run worker
/// revokes this task and records CANCELED, but only if the step is still in
/// flight then: a result that reaches it first (`[]`, or a failure because
/// the step Job was deleted) settles the step, and the run ends FAILURE.
/// (The Python task polls every 10 s, so it practically never wins that
/// race.) So the task waits up to `grace` for the revoke or for the run to
/// leave CANCELING; the step Job's own end does not answer it meanwhile.
async fn canceling(w: Waits<'_>, grace: Duration) -> Waited {
    tokio::select! {
        _ = w.run.wait_for(|s| s.as_deref() != Some("CANCELING")) => Waited::RunNotStarted,
        _ = w.revoke.wait_for(|r| *r) => Waited::Revoked,
        _ = tokio::time::sleep(grace) => Waited::RunNotStarted,
    }
}

async fn job_end(job: &mut watch::Receiver<Option<Transition>>) -> Waited {
    loop {
        if let Some(t) = job.borrow_and_update().clone() {
            if t.deleted {
                return Waited::Gone(t.message);
            }
            match t.status {
                WorkerStatus::Success => return Waited::Succeeded,
                WorkerStatus::Failed => {
                    let why = [t.reason.as_str(), t.message.as_str()]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(": ");
                    return Waited::Failed(why);
                }
                _ => {}
            }
        }
        if job.changed().await.is_err() {
            return Waited::Gone(String::new());
        }
    }
}

#[cfg(test)]
mod tests;
