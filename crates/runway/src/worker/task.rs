//! `execute_step_k8s_job`, as dagster-celery-k8s's task body runs it
//! (dagster-compat.md §f.4), with the step's end taken from the shared watch
//! instead of a 10-second poll, and pod-level failures reported at once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::pg::{EventRow, Pg};
use super::wait::{Jobs, RevokeWait, Runs};
use crate::cluster::tracker::add_managed_by;
use crate::cluster::{self, JobApi};
use runway_core::celery::pyval::{saferepr, PyVal};
use runway_core::dagster::instance::{storage_target, PgTarget, Storage};
use runway_core::dagster::serdes::{self, Meta, ERROR, INFO, QUEUE_WAIT_MARKER};
use runway_core::dagster::step::StepTask;
use runway_core::dagster::{events::events_from_log, Env};
use runway_core::track::health::WorkerStatus;

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
    pub env: Box<dyn Env + Send + Sync>,
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
}

impl Finish {
    fn value_error(message: impl Into<String>) -> Finish {
        Finish::Error {
            exc_type: "ValueError".into(),
            exc_module: "builtins".into(),
            message: message.into(),
        }
    }
}

/// Where one task reads and writes Dagster's storage.
struct Run<'a, K> {
    ctx: &'a Ctx<K>,
    run_target: PgTarget,
    events_target: PgTarget,
    run_id: String,
    job_name: String,
    step_key: String,
}

impl<K: JobApi> Run<'_, K> {
    /// Writes an event-log row the way `instance.handle_new_event` does.
    async fn store(&self, event: &Value, level: u8, user_message: &str) {
        let ts = now_f64();
        let entry = serdes::log_entry(&self.run_id, event, level, user_message, ts);
        let text = serdes::serialize(&entry);
        let ty = event
            .get("event_type_value")
            .and_then(Value::as_str)
            .unwrap_or("ENGINE_EVENT");
        let row = EventRow {
            run_id: &self.run_id,
            event: &text,
            event_type: ty,
            timestamp: ts,
            step_key: &self.step_key,
        };
        // The Python task lets a storage error fail the task; the step itself
        // is what matters here, so a lost engine event is logged instead.
        if let Err(e) = self.ctx.pg.store_event(&self.events_target, &row).await {
            tracing::warn!(run_id = %self.run_id, step = %self.step_key, error = %e, "storing an event failed");
        }
    }

    async fn engine(
        &self,
        message: &str,
        metadata: &[(&str, Meta)],
        marker_end: Option<&str>,
        error: Option<Value>,
    ) -> Value {
        let ev = serdes::engine_event(
            &self.job_name,
            &self.step_key,
            message,
            metadata,
            marker_end,
            error,
        );
        self.store(&ev, INFO, "").await;
        ev
    }

    async fn step_failure(&self, message: &str) -> Value {
        let err = serdes::error_info("dagster_k8s.client", "DagsterK8sError", message);
        let ev = serdes::step_failure(&self.job_name, &self.step_key, err);
        self.store(&ev, ERROR, message).await;
        ev
    }
}

fn now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn api_error(e: &cluster::Error) -> Value {
    serdes::error_info(
        "kubernetes.client.exceptions",
        "ApiException",
        &e.to_string(),
    )
}

/// `str()` of a Python value given as JSON.
fn py_str(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "None".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => serde_json::from_value::<PyVal>(v.clone())
            .map(|p| saferepr(&p, usize::MAX >> 2, usize::MAX >> 2))
            .unwrap_or_else(|_| v.to_string()),
    }
}

/// How the wait for the step Job ended.
enum Waited {
    Succeeded,
    Failed(String),
    Timeout,
    RunNotStarted,
    Revoked,
    Gone,
}

/// Runs one task to its end.
pub async fn execute<K: JobApi>(
    ctx: &Ctx<K>,
    kwargs: &Map<String, Value>,
    mut revoke: RevokeWait,
    job_done: &std::sync::OnceLock<std::time::Instant>,
) -> Finish {
    if *revoke.rx.borrow() {
        return Finish::Revoked;
    }
    let kw = Value::Object(kwargs.clone());
    let mut task = match StepTask::from_kwargs(&kw) {
        Ok(t) => t,
        Err(e) => return Finish::value_error(e.to_string()),
    };
    let instance_ref = kw
        .pointer("/execute_step_args_packed/instance_ref")
        .cloned()
        .unwrap_or(Value::Null);
    let target = |which| match &ctx.postgres {
        Some(t) => Ok(t.clone()),
        None => storage_target(&instance_ref, which, ctx.env.as_ref()),
    };
    let (run_target, events_target) = match (target(Storage::Run), target(Storage::EventLog)) {
        (Ok(r), Ok(e)) => (r, e),
        (Err(e), _) | (_, Err(e)) => return Finish::value_error(e.to_string()),
    };
    let record = match ctx.pg.run(&run_target, &task.run_id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Finish::Error {
                exc_type: "CheckError".into(),
                exc_module: "dagster._check.functions".into(),
                message: format!("Could not load run {}", task.run_id),
            }
        }
        Err(e) => {
            return Finish::Error {
                exc_type: "OperationalError".into(),
                exc_module: "sqlalchemy.exc".into(),
                message: e.to_string(),
            }
        }
    };
    // Errata 6: the job name and code location come from the run record.
    task.job_name = record.job_name.clone();
    task.code_location = record.code_location.clone();
    let run = Run {
        ctx,
        run_target,
        events_target,
        run_id: task.run_id.clone(),
        job_name: record.job_name.clone(),
        step_key: task.step_key.clone(),
    };
    let step = task.step_key.clone();

    run.engine(
        &format!("Task for step {step} picked up by Celery"),
        &[
            ("Celery worker name", Meta::text(&ctx.hostname)),
            (
                "Celery worker Kubernetes Pod name",
                Meta::opt(ctx.pod_name.as_deref()),
            ),
        ],
        None,
        None,
    )
    .await;
    if record.status != "STARTED" {
        run.engine(
            "Not scheduling step because dagster run status is not STARTED",
            &[("Step key", Meta::text(&step))],
            None,
            None,
        )
        .await;
        return Finish::Events(Vec::new());
    }
    // Watch the run before anything is created, so a cancel is never missed.
    let mut run_wait = ctx.runs.wait(&run.run_target, &run.run_id);

    let rendered = match runway_core::render::render_step(&task, ctx.env.as_ref()) {
        Ok(r) => r,
        Err(e) => return Finish::value_error(e.to_string()),
    };
    let mut job = rendered.job;
    add_managed_by(&mut job);
    let ns = rendered.namespace;
    let job_name = task.k8s_job_name.clone();
    let jc = kwargs.get("job_config_dict").and_then(Value::as_object);
    let jc_str = |k: &str| jc.and_then(|m| m.get(k)).and_then(Value::as_str);

    let mut events: Vec<Value> = Vec::new();
    events.push(
        run.engine(
            &format!("Executing step \"{step}\" in Kubernetes job {job_name}."),
            &[
                ("Step key", Meta::text(&step)),
                ("Kubernetes Job name", Meta::text(&job_name)),
                ("Job image", Meta::opt(jc_str("job_image"))),
                ("Image pull policy", Meta::opt(jc_str("image_pull_policy"))),
                (
                    "Image pull secrets",
                    Meta::text(py_str(jc.and_then(|m| m.get("image_pull_secrets")))),
                ),
                (
                    "Service account name",
                    Meta::text(py_str(jc.and_then(|m| m.get("service_account_name")))),
                ),
            ],
            Some(QUEUE_WAIT_MARKER),
            None,
        )
        .await,
    );

    let mut job_wait = ctx.jobs.wait(&ns, &job_name);
    match ctx.kube.create_job(&ns, &job).await {
        Ok(_) => {}
        Err(cluster::Error::AlreadyExists { .. }) => {
            run.engine(
                &format!(
                    "Did not create Kubernetes job {job_name} for step {step} since job name \
                     already exists, proceeding with existing job."
                ),
                &[
                    ("Step key", Meta::text(&step)),
                    ("Kubernetes Job name", Meta::text(&job_name)),
                ],
                Some(QUEUE_WAIT_MARKER),
                None,
            )
            .await;
        }
        Err(e) => {
            run.engine(
                &format!(
                    "Encountered unexpected error while creating Kubernetes job {job_name} for \
                     step {step}, exiting."
                ),
                &[("Step key", Meta::text(&step))],
                None,
                Some(api_error(&e)),
            )
            .await;
            return Finish::Events(Vec::new());
        }
    }
    ctx.jobs.refresh(&job_wait);

    let timeout = Duration::from_secs_f64(task.job_wait_timeout.clamp(1.0, 1e9));
    let waited = tokio::select! {
        w = async {
            loop {
                if let Some(t) = job_wait.rx.borrow_and_update().clone() {
                    if t.deleted {
                        return Waited::Gone;
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
                if job_wait.rx.changed().await.is_err() {
                    return Waited::Gone;
                }
            }
        } => w,
        _ = run_wait.rx.wait_for(Option::is_some) => Waited::RunNotStarted,
        _ = revoke.rx.wait_for(|r| *r) => Waited::Revoked,
        _ = tokio::time::sleep(timeout) => Waited::Timeout,
    };
    drop(run_wait);
    let _ = job_done.set(std::time::Instant::now());

    let delete = |why: &'static str| {
        let ns = ns.clone();
        let job_name = job_name.clone();
        async move {
            if let Err(e) = delete_job(&ctx.kube, &ns, &job_name).await {
                tracing::warn!(job = %job_name, error = %e, why, "deleting the step Job failed");
            }
        }
    };
    let mut failed_early = false;
    match waited {
        Waited::Succeeded => {}
        Waited::Failed(why) => {
            let msg =
                format!("Encountered failed job pods for job {job_name} in namespace {ns}: {why}");
            events.push(run.step_failure(&msg).await);
            failed_early = true;
        }
        Waited::Timeout => {
            let msg = format!("Timed out while waiting for job {job_name} to complete");
            events.push(run.step_failure(&msg).await);
        }
        Waited::Gone => {
            let msg = format!("job {job_name} could not be found");
            events.push(run.step_failure(&msg).await);
        }
        Waited::RunNotStarted => {
            run.engine(
                "Terminating Kubernetes Job because dagster run status is not STARTED",
                &[
                    ("Step key", Meta::text(&step)),
                    ("Kubernetes Job name", Meta::text(&job_name)),
                    ("Kubernetes Job namespace", Meta::text(&ns)),
                ],
                None,
                None,
            )
            .await;
            delete("run not STARTED").await;
            return Finish::Events(Vec::new());
        }
        Waited::Revoked => {
            delete("revoked").await;
            return Finish::Revoked;
        }
    }

    // The watch index already knows the Job's pods; the API is asked only
    // when its pod events have not arrived yet.
    let known = ctx.jobs.pods(&ns, &job_name);
    let listed = if known.is_empty() {
        ctx.kube.job_pod_names(&ns, &job_name).await
    } else {
        Ok(known)
    };
    let pods = match listed {
        Ok(p) => p,
        Err(e) => {
            run.engine(
                &format!(
                    "Encountered unexpected error retreiving Pods for Kubernetes job {job_name} \
                     for step {step}, exiting."
                ),
                &[("Step key", Meta::text(&step))],
                None,
                Some(api_error(&e)),
            )
            .await;
            return Finish::Events(Vec::new());
        }
    };
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
        match ctx.kube.pod_log(&ns, pod).await {
            Ok(l) => {
                logs.push_str(&l);
                logs.push('\n');
            }
            Err(e) => {
                run.engine(
                    &format!(
                        "Encountered unexpected error while fetching pod logs for Kubernetes job \
                         {job_name}, Pod name {pod} for step {step}. Will attempt to continue \
                         with other pods."
                    ),
                    &[("Step key", Meta::text(&step))],
                    None,
                    Some(api_error(&e)),
                )
                .await;
            }
        }
    }
    // A Job failed at the pod level (image pull, unschedulable) is still
    // retrying: it is removed once its failure is recorded.
    if failed_early {
        delete("failed at the pod level").await;
    }
    let mut out: Vec<String> = events.iter().map(serdes::serialize).collect();
    out.extend(events_from_log(&logs));
    Finish::Events(out)
}

/// `delete_job`: the Job, then its pods (dagster-k8s deletes both).
async fn delete_job<K: JobApi>(kube: &K, ns: &str, name: &str) -> Result<(), cluster::Error> {
    let pods = kube.job_pod_names(ns, name).await.unwrap_or_default();
    kube.delete_job(ns, name).await?;
    for p in pods {
        kube.delete_pod(ns, &p).await?;
    }
    Ok(())
}
