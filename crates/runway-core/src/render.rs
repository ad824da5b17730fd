//! `runway render`: a case file (a run launch or a celery-k8s step task) in,
//! the batch/v1 Job Runway would submit out. This is the whole pure pipeline
//! (validate -> merge config -> build Job) that `serve` and `worker` run too.

//!
//! - `case`: case documents (JSON or YAML) and the run case they describe;
//! - `k8s_run`, `celery_run`: the run Job of each launcher class;
//! - `step`: the step Job of a celery-k8s task;
//! - `checks`: the shared checks and the deployment label.

mod case;
mod celery_run;
mod checks;
mod k8s_run;
mod step;

use serde_json::Value;
use thiserror::Error;

use crate::dagster::config::{dflt, opt, process, Field, Mode, Ty};
use crate::dagster::context::ContainerContext;
use crate::dagster::launcher::{
    Launcher, LauncherClass, CELERY_FIELDS, CONTAINER_FIELDS, USER_DEFINED_SCHEMA,
};
use crate::dagster::names::run_job_name;
use crate::dagster::step::StepTask;
use crate::dagster::tags::{check_tags, user_config_from_tags};
use crate::dagster::version::Target;
use crate::dagster::{self, Env};
use crate::k8s::config::schema::ids;
use crate::k8s::config::{
    check_allowlist, filter_env_vars, path, snake_case_dict, Allowlist, Map, Section, UserConfig,
};
use crate::k8s::job::{build_job, env_var, JobConfig, JobRequest};

/// Why a case could not be rendered.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Case { path: String, message: String },
    #[error(transparent)]
    Dagster(#[from] dagster::Error),
    #[error(transparent)]
    K8s(#[from] crate::k8s::config::Error),
}

/// What a render produced, besides the Job itself.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub job: Value,
    pub namespace: String,
    /// User env entries dropped by `only_allow_user_defined_env_vars`.
    pub dropped_env_vars: Vec<String>,
}

/// A run launch as the daemon describes it.
#[derive(Debug, Clone)]
pub struct RunCase {
    /// The caller's Dagster: the Job is rendered as that release builds it.
    pub target: Target,
    pub launcher_class: LauncherClass,
    pub launcher: Value,
    pub run_id: String,
    pub job_name: String,
    pub location_name: Option<String>,
    pub image: Option<String>,
    pub container_context: Value,
    pub tags: Map,
    pub args: Vec<String>,
    pub resume_attempt: u32,
    pub run_config: Value,
}

use celery_run::render_celery_run;
use k8s_run::render_k8s_run;

pub use case::{parse_case_text, prepare_case, render_case, PreparedCase};
pub use celery_run::celery_executor_config;
pub use step::render_step;

/// A run Job, as K8sRunLauncher or CeleryK8sRunLauncher builds it, with the
/// launcher config parsed beforehand ([`Launcher::load`]) so a service that
/// sees the same config on every launch parses it once. `case.launcher` is
/// not read.
pub fn render_run_loaded(
    case: &RunCase,
    launcher: &Launcher,
    env: &dyn Env,
) -> Result<Rendered, Error> {
    launcher.check_release(&case.target.rules)?;
    match launcher.class {
        LauncherClass::K8s => render_k8s_run(case, launcher, env),
        LauncherClass::CeleryK8s => render_celery_run(case, launcher, env),
    }
}

#[cfg(test)]
mod tests;
