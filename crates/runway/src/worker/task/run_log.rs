//! A task's writes into Dagster's event log: engine events and step
//! failures, stored the way `instance.handle_new_event` stores them.

use serde_json::Value;

use super::{Ctx, Finish};
use crate::cluster::{self, JobApi};
use crate::retry::Backoff;
use crate::worker::pg::EventRow;
use backon::BackoffBuilder as _;
use runway_core::celery::pyval::{saferepr, PyVal};
use runway_core::dagster::instance::PgTarget;
use runway_core::dagster::serdes::{self, Meta, ERROR, INFO};

/// The events a task could not write, and why (the last error).
#[derive(Debug, Default)]
pub(super) struct Unwritten(std::sync::Mutex<Option<(usize, String)>>);

impl Unwritten {
    fn add(&self, reason: String) {
        let mut lost = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = lost.as_ref().map_or(0, |(n, _)| *n);
        *lost = Some((count + 1, reason));
    }

    /// The task's outcome, unless events were lost: then a FAILURE that says so.
    pub fn fail(&self, finish: Finish) -> Finish {
        let lost = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match (lost, finish) {
            (None, f) | (_, f @ (Finish::ClaimLost | Finish::Revoked)) => f,
            (Some((count, reason)), _) => Finish::Error {
                exc_type: "OperationalError".into(),
                exc_module: "sqlalchemy.exc".into(),
                message: format!(
                    "{count} engine event(s) of this step could not be written to Dagster's event \
                     log: {reason}"
                ),
            },
        }
    }
}

/// Where one task reads and writes Dagster's storage.
pub(super) struct Run<'a, K> {
    pub ctx: &'a Ctx<K>,
    pub unwritten: &'a Unwritten,
    pub run_target: PgTarget,
    pub events_target: PgTarget,
    pub run_id: String,
    pub job_name: String,
    pub step_key: String,
}

impl<K: JobApi> Run<'_, K> {
    /// Writes an event-log row the way `instance.handle_new_event` does.
    pub async fn store(&self, event: &Value, level: u8, user_message: &str) {
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
        self.store_row(&row).await;
    }

    /// Writes the row, retrying through an outage for the configured
    /// patience; a row still unwritten then fails the task (see [`Unwritten`]).
    async fn store_row(&self, row: &EventRow<'_>) {
        let deadline = tokio::time::Instant::now() + self.ctx.event_write_patience;
        let mut delays = Backoff::request().build();
        let mut failures = 0u32;
        loop {
            match self.ctx.pg.store_event(&self.events_target, row).await {
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!(run_id = %self.run_id, step = %self.step_key, failures, "event written after retries");
                    }
                    return;
                }
                Err(e) => {
                    failures += 1;
                    self.ctx.metrics.event_write_retries.inc();
                    if failures == 1 {
                        tracing::warn!(run_id = %self.run_id, step = %self.step_key, error = %e, "storing an event failed; retrying");
                    }
                    if tokio::time::Instant::now() >= deadline {
                        tracing::error!(run_id = %self.run_id, step = %self.step_key, error = %e, "giving up on an event: the task fails");
                        self.unwritten.add(e.to_string());
                        return;
                    }
                    tokio::time::sleep(delays.delay()).await;
                }
            }
        }
    }

    pub async fn engine(
        &self,
        message: &str,
        metadata: &[(&str, Meta)],
        marker_end: Option<&str>,
        error: Option<Value>,
    ) -> Value {
        // A release without NullMetadataEntryData could not read the event
        // (it would refuse a None value outright): such entries are left out.
        let known: Vec<(&str, Meta)> = metadata
            .iter()
            .filter(|(_, m)| self.ctx.dagster.rules.null_metadata || *m != Meta::Null)
            .cloned()
            .collect();
        let ev = serdes::engine_event(
            &self.job_name,
            &self.step_key,
            message,
            &known,
            marker_end,
            error,
        );
        self.store(&ev, INFO, "").await;
        ev
    }

    pub async fn step_failure(&self, message: &str) -> Value {
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

pub(super) fn api_error(e: &cluster::Error) -> Value {
    serdes::error_info(
        "kubernetes.client.exceptions",
        "ApiException",
        &e.to_string(),
    )
}

/// `str()` of a Python value given as JSON.
pub(super) fn py_str(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "None".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => serde_json::from_value::<PyVal>(v.clone())
            .map(|p| saferepr(&p, usize::MAX >> 2, usize::MAX >> 2))
            .unwrap_or_else(|_| v.to_string()),
    }
}

impl<K: JobApi> Run<'_, K> {
    /// "Task for step … picked up by Celery", with the worker's names.
    pub async fn picked_up(&self) {
        let ctx = self.ctx;
        self.engine(
            &format!("Task for step {} picked up by Celery", self.step_key),
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
    }

    /// The run is no longer STARTED: the step is not scheduled.
    pub async fn not_started(&self) {
        self.engine(
            "Not scheduling step because dagster run status is not STARTED",
            &[("Step key", Meta::text(&self.step_key))],
            None,
            None,
        )
        .await;
    }
}
