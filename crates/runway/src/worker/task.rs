//! `execute_step_k8s_job`, as dagster-celery-k8s's task body runs it
//! (dagster-compat.md §f.4), with the step's end taken from the shared watch
//! instead of a 10-second poll, and pod-level failures reported at once.
//!
//! The body reads as its steps: [`prepare`] (kwargs, storage, run record),
//! announce, [`step_job::create`], [`step_job::wait`], [`conclude`], then
//! the pods' logs ([`logs::collect`]) become the result.

mod logs;
mod run_log;
mod step_job;
mod targets;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde_json::{Map, Value};

use super::pg::Pg;
use super::revoke::RevokeWait;
use super::runner::Fence;
use super::wait::{Jobs, Runs};
use crate::cluster::JobApi;
use crate::retry::Backoff;
use backon::BackoffBuilder as _;
use run_log::{Run, Unwritten};
use runway_core::dagster::instance::{PgTarget, RunRecord};
use runway_core::dagster::serdes::{self, Meta};
use runway_core::dagster::step::StepTask;
use runway_core::dagster::version::Target;
use runway_core::dagster::Env;
use step_job::{StepJob, Waited};
pub use targets::{TargetCache, Targets};

/// What the worker needs to run steps.
pub struct Ctx<K> {
    pub kube: K,
    pub jobs: Arc<Jobs>,
    pub runs: Arc<Runs>,
    pub pg: Arc<Pg>,
    /// The Celery node name (`self.request.hostname`).
    pub hostname: String,
    /// `$HOSTNAME`: the worker's pod name on Kubernetes.
    pub pod_name: Option<String>,
    /// `--postgres-url`: used instead of the databases the instance names.
    pub postgres: Option<PgTarget>,
    /// The databases of the instances seen, when `postgres` is not given.
    pub targets: TargetCache,
    pub env: Box<dyn Env + Send + Sync>,
    /// `--dagster-version`: the release whose task body this worker runs.
    pub dagster: Target,
    /// How long an event-log write is retried through a PostgreSQL outage.
    pub event_write_patience: std::time::Duration,
    /// How long a CANCELING run's step Job is left to its run worker.
    pub cancel_grace: std::time::Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl<K> std::fmt::Debug for Ctx<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// SUCCESS with the serialized DagsterEvents.
    Events(Vec<String>),
    /// FAILURE: the exception the Python task would have raised.
    Error {
        exc_type: String,
        exc_module: String,
        message: String,
    },
    Revoked,
    /// Its `expires` passed before it ran: REVOKED, as Celery's
    /// `maybe_expire` stores it.
    Expired,
    /// The task's claim lapsed while it ran (a pause longer than the
    /// claim's lifetime) and another worker took it over: this worker
    /// reports nothing.
    ClaimLost,
}

impl Finish {
    pub fn value_error(message: impl Into<String>) -> Finish {
        Finish::Error {
            exc_type: "ValueError".into(),
            exc_module: "builtins".into(),
            message: message.into(),
        }
    }

    /// SUCCESS with no events: what the Python task returns when it stops early.
    fn nothing() -> Finish {
        Finish::Events(Vec::new())
    }
}

/// Runs one task to its end. An engine event that could not be written
/// (PostgreSQL unreachable for longer than `--event-write-patience-secs`)
/// fails the task, loudly, instead of being lost without a trace.
pub async fn execute<K: JobApi>(
    ctx: &Ctx<K>,
    kwargs: &Map<String, Value>,
    revoke: RevokeWait,
    job_done: &OnceLock<Instant>,
    fence: &Fence,
) -> Finish {
    let unwritten = Unwritten::default();
    let finish = run_task(ctx, kwargs, revoke, job_done, fence, &unwritten).await;
    unwritten.fail(finish)
}

async fn run_task<K: JobApi>(
    ctx: &Ctx<K>,
    kwargs: &Map<String, Value>,
    mut revoke: RevokeWait,
    job_done: &OnceLock<Instant>,
    fence: &Fence,
    unwritten: &Unwritten,
) -> Finish {
    if *revoke.rx.borrow() {
        return Finish::Revoked;
    }
    let (task, run, status) = match prepare(ctx, kwargs, unwritten).await {
        Ok(p) => p,
        Err(f) => return f,
    };
    run.picked_up().await;
    if status != "STARTED" {
        run.not_started().await;
        return Finish::nothing();
    }
    // Watch the run before anything is created, so a cancel is never missed.
    let mut run_wait = ctx.runs.wait(&run.run_target, &run.run_id);
    let job = match StepJob::render(&task, kwargs, ctx.env.as_ref()) {
        Ok(j) => j,
        Err(f) => return f,
    };
    let mut events = vec![job.announce(&run).await];
    let mut job_wait = ctx.jobs.wait(&job.namespace, &job.name);
    if !job.create(&run).await {
        return Finish::nothing();
    }
    ctx.jobs.refresh(&job_wait);
    let waited = step_job::wait(
        &mut job_wait,
        &mut run_wait,
        &mut revoke,
        task.job_wait_timeout,
        ctx.cancel_grace,
    )
    .await;
    drop(run_wait);
    // What follows reports what the wait found; a worker that lost the
    // task's claim meanwhile (paused past it) reports nothing.
    if !fence.held().await {
        return Finish::ClaimLost;
    }
    // A timeout is checked against the Job itself: a wait that ran out
    // while the process was paused is not a step failure.
    let waited = job.recheck(ctx, waited).await;
    let _ = job_done.set(Instant::now());
    let failed_early = match conclude(&run, &job, waited, &mut events).await {
        Ok(failed_early) => failed_early,
        Err(early) => return early,
    };
    let Some(log_events) = logs::collect(&run, &job, &mut events).await else {
        return Finish::nothing();
    };
    // A Job failed at the pod level (image pull, unschedulable) is still
    // retrying: it is removed once its failure is recorded.
    if failed_early {
        job.delete(ctx, "failed at the pod level").await;
    }
    let mut out: Vec<String> = events.iter().map(serdes::serialize).collect();
    out.extend(log_events);
    Finish::Events(out)
}

/// The task, its run's storage, and the run's status; or the FAILURE the
/// Python task would raise for kwargs, storage or run it cannot use.
async fn prepare<'a, K: JobApi>(
    ctx: &'a Ctx<K>,
    kwargs: &Map<String, Value>,
    unwritten: &'a Unwritten,
) -> Result<(StepTask, Run<'a, K>, String), Finish> {
    let mut task =
        StepTask::from_map(kwargs, &ctx.dagster).map_err(|e| Finish::value_error(e.to_string()))?;
    let instance_ref = kwargs
        .get("execute_step_args_packed")
        .and_then(|packed| packed.get("instance_ref"))
        .unwrap_or(&Value::Null);
    let Targets {
        run: run_target,
        events: events_target,
    } = match &ctx.postgres {
        Some(t) => Targets {
            run: t.clone(),
            events: t.clone(),
        },
        None => ctx
            .targets
            .get(instance_ref, ctx.env.as_ref())
            .map_err(|e| Finish::value_error(e.to_string()))?,
    };
    let record = match read_run(ctx, &run_target, &task.run_id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(Finish::Error {
                exc_type: "CheckError".into(),
                exc_module: "dagster._check.functions".into(),
                message: format!("Could not load run {}", task.run_id),
            })
        }
        Err(e) => {
            return Err(Finish::Error {
                exc_type: "OperationalError".into(),
                exc_module: "sqlalchemy.exc".into(),
                message: e.to_string(),
            })
        }
    };
    // Errata 6: the job name and code location come from the run record.
    task.job_name = record.job_name.clone();
    task.code_location = record.code_location.clone();
    let run = Run {
        unwritten,
        ctx,
        run_target,
        events_target,
        run_id: task.run_id.clone(),
        job_name: record.job_name,
        step_key: task.step_key.clone(),
    };
    Ok((task, run, record.status))
}

/// The run's record, read through a PostgreSQL outage for as long as an
/// event write would wait (`--event-write-patience-secs`). Failing at once,
/// as the Python task does, would report a step that never ran as failed
/// (Dagster's executor fails the step on the task's FAILURE) for a blip of
/// the database; an error the server sent still fails the task at once.
async fn read_run<K: JobApi>(
    ctx: &Ctx<K>,
    target: &PgTarget,
    run_id: &str,
) -> Result<Option<RunRecord>, super::pg::Error> {
    let deadline = tokio::time::Instant::now() + ctx.event_write_patience;
    let mut delays = Backoff::request().build();
    let mut failures = 0u32;
    loop {
        match ctx.pg.run(target, run_id).await {
            Err(e) if e.is_outage() && tokio::time::Instant::now() < deadline => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(%run_id, error = %e, "reading the run failed; retrying");
                }
                tokio::time::sleep(delays.delay()).await;
            }
            other => {
                if failures > 0 && other.is_ok() {
                    tracing::info!(%run_id, failures, "run read after retries");
                }
                return other;
            }
        }
    }
}

/// Turns how the wait ended into events: `Ok(true)` when the step failed
/// at the pod level (its Job is still retrying and must be deleted), `Err`
/// when the task ends at once (the run left STARTED, or it was revoked).
async fn conclude<K: JobApi>(
    run: &Run<'_, K>,
    job: &StepJob,
    waited: Waited,
    events: &mut Vec<Value>,
) -> Result<bool, Finish> {
    let (name, ns) = (&job.name, &job.namespace);
    let failed_early = matches!(waited, Waited::Failed(_));
    let failure = match waited {
        Waited::Succeeded => return Ok(false),
        Waited::Failed(why) => {
            format!("Encountered failed job pods for job {name} in namespace {ns}: {why}")
        }
        Waited::Timeout => format!("Timed out while waiting for job {name} to complete"),
        Waited::Gone(why) if why.is_empty() => format!("job {name} could not be found"),
        Waited::Gone(why) => format!("job {name} could not be found: {why}"),
        Waited::RunNotStarted => {
            run.engine(
                "Terminating Kubernetes Job because dagster run status is not STARTED",
                &[
                    ("Step key", Meta::text(&run.step_key)),
                    ("Kubernetes Job name", Meta::text(name)),
                    ("Kubernetes Job namespace", Meta::text(ns)),
                ],
                None,
                None,
            )
            .await;
            job.delete(run.ctx, "run not STARTED").await;
            return Err(Finish::nothing());
        }
        Waited::Revoked => {
            job.delete(run.ctx, "revoked").await;
            return Err(Finish::Revoked);
        }
    };
    events.push(run.step_failure(&failure).await);
    Ok(failed_early)
}
