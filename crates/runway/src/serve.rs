//! `runway serve`: the launcher's logic behind the gRPC contract. This
//! module decides; [`grpc`] translates; `app` wires the concrete client.

mod configs;

pub use configs::CacheLimits;
pub mod grpc;
mod launch;
mod runs;
pub mod settings;
pub mod steps;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::cluster::tracker::add_managed_by;
use crate::cluster::{self, JobApi, Tracker};
use crate::metrics::Metrics;
use runway_core::dagster::launcher::LauncherClass;
use runway_core::dagster::names::run_job_name;
use runway_core::render::{self, RunCase};
use runway_core::track::debug;
use runway_core::track::health::{HealthQuery, WorkerStatus};
use runway_core::track::{Health, HealthMode};
use runway_proto as proto;

/// Why a request failed. Every variant names the field or the cause and the fix.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("launcher.digest {digest} is not known to this server; resend the request with launcher.config_json")]
    UnknownDigest { digest: String },
    #[error(transparent)]
    Render(#[from] render::Error),
    #[error("namespace {namespace:?} is not watched by this server (it watches {watched:?}); add it with --namespace, or the run's Job could never be tracked")]
    NamespaceNotWatched {
        namespace: String,
        watched: Vec<String>,
    },
    #[error("Job {job} already exists in namespace {namespace} but belongs to run {other_run:?}, not {run}")]
    Conflict {
        job: String,
        namespace: String,
        run: String,
        other_run: Option<String>,
    },
    #[error("Job {job} in namespace {namespace} is being deleted; launch again once it is gone")]
    BeingDeleted { job: String, namespace: String },
    #[error("{what}")]
    NotFound { what: String },
    #[error(transparent)]
    Kube(#[from] cluster::Error),
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Server-wide options of the launcher logic.
#[derive(Debug, Clone)]
pub struct Options {
    /// Answer every health check with dagster-k8s's exact rules.
    pub force_dagster_compat: bool,
    pub unschedulable_grace_secs: i64,
    /// The launcher config cache's bounds and the largest config taken.
    pub cache: CacheLimits,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            force_dagster_compat: false,
            unschedulable_grace_secs: 120,
            cache: CacheLimits {
                entries: 64,
                bytes: 32 << 20,
                max_config_bytes: 1 << 20,
            },
        }
    }
}

/// The result of a launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    pub job_name: String,
    pub namespace: String,
    pub uid: String,
    pub image: String,
    pub created: bool,
    pub dropped_env_vars: Vec<String>,
}

/// The result of a terminate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terminated {
    pub terminated: bool,
    pub jobs: Vec<String>,
    pub pods: Vec<String>,
}

/// The launcher logic, over any [`JobApi`].
#[derive(Debug)]
pub struct Launch<K> {
    kube: K,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    options: Options,
    configs: Mutex<configs::Configs>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn parse_json(text: &str, field: &str) -> Result<Value, Error> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| invalid(field, format!("not valid JSON: {e}")))
}

fn class_of(name: &str, field: &str) -> Result<LauncherClass, Error> {
    LauncherClass::parse(name).ok_or_else(|| {
        invalid(
            field,
            "expected \"K8sRunLauncher\" or \"CeleryK8sRunLauncher\"",
        )
    })
}

fn label<'a>(job: &'a k8s_openapi::api::batch::v1::Job, key: &str) -> Option<&'a str> {
    job.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

impl Launched {
    fn of(
        job: &k8s_openapi::api::batch::v1::Job,
        job_name: String,
        namespace: String,
        created: bool,
        dropped_env_vars: Vec<String>,
    ) -> Launched {
        Launched {
            job_name,
            namespace,
            uid: job.metadata.uid.clone().unwrap_or_default(),
            image: job
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            created,
            dropped_env_vars,
        }
    }
}

impl<K: JobApi> Launch<K> {
    pub fn new(
        kube: K,
        tracker: Arc<Tracker>,
        metrics: Arc<Metrics>,
        options: Options,
    ) -> Launch<K> {
        Launch {
            kube,
            tracker,
            metrics,
            options,
            configs: Mutex::default(),
        }
    }

    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

pub fn status_name(s: WorkerStatus) -> &'static str {
    match s {
        WorkerStatus::Running => "RUNNING",
        WorkerStatus::NotFound => "NOT_FOUND",
        WorkerStatus::Failed => "FAILED",
        WorkerStatus::Success => "SUCCESS",
        WorkerStatus::Unknown => "UNKNOWN",
    }
}
