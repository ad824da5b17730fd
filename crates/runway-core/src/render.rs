//! `runway render`: a case file (a run launch or a celery-k8s step task) in,
//! the batch/v1 Job Runway would submit out. This is the whole pure pipeline
//! (validate -> merge config -> build Job) that `serve` and `worker` run too.

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
use crate::dagster::{self, Env};
use crate::k8s::config::schema::ids;
use crate::k8s::config::{
    check_allowlist, filter_env_vars, path, snake_case_dict, Allowlist, Map, Section, UserConfig,
};
use crate::k8s::job::{build_job, JobConfig, JobRequest};

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

/// Parses a case document (JSON or YAML text).
pub fn parse_case_text(text: &str) -> Result<Value, Error> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(json_err) => serde_saphyr::from_str::<Value>(text).map_err(|yaml_err| Error::Case {
            path: "<case>".into(),
            message: format!(
                "not valid JSON ({json_err}) nor YAML ({yaml_err}); give a JSON or YAML object"
            ),
        }),
    }
}

/// Renders any case document.
pub fn render_case(case: &Value, env: &dyn Env) -> Result<Rendered, Error> {
    let obj = case
        .as_object()
        .ok_or_else(|| case_err("<case>", "expected an object"))?;
    match obj.get("kind").and_then(Value::as_str) {
        Some("run") => {
            check_keys(obj, &["kind", "launcher_class", "launcher", "run"], "")?;
            render_run(&RunCase::from_value(obj)?, env)
        }
        Some("step") => {
            check_keys(obj, &["kind", "task_kwargs"], "")?;
            let kwargs = obj.get("task_kwargs").ok_or_else(|| Error::Case {
                path: "task_kwargs".into(),
                message: "missing (the kwargs of the execute_step_k8s_job message)".into(),
            })?;
            render_step(&StepTask::from_kwargs(kwargs)?, env)
        }
        _ => Err(case_err("kind", "expected \"run\" or \"step\"")),
    }
}

impl RunCase {
    fn from_value(obj: &Map) -> Result<RunCase, Error> {
        let class_name = obj.get("launcher_class").and_then(Value::as_str);
        let launcher_class = class_name.and_then(LauncherClass::parse).ok_or_else(|| {
            case_err(
                "launcher_class",
                "expected \"K8sRunLauncher\" or \"CeleryK8sRunLauncher\"",
            )
        })?;
        let run = obj
            .get("run")
            .and_then(Value::as_object)
            .ok_or_else(|| case_err("run", "expected an object describing the run"))?;
        check_keys(
            run,
            &[
                "run_id",
                "job_name",
                "location_name",
                "image",
                "container_context",
                "tags",
                "args",
                "resume_attempt",
                "run_config",
            ],
            "run",
        )?;
        let string = |k: &str| -> Result<String, Error> {
            run.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| case_err(&path::key("run", k), "expected a string"))
        };
        let opt_string = |k: &str| -> Result<Option<String>, Error> {
            match run.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(case_err(&path::key("run", k), "expected a string or null")),
            }
        };
        let args = match run.get("args") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| case_err(&path::index("run.args", i), "expected a string"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(case_err(
                    "run.args",
                    "expected the argv Dagster computed (a list of strings)",
                ))
            }
        };
        let tags = match run.get("tags") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(t)) => t.clone(),
            Some(_) => return Err(case_err("run.tags", "expected an object of string tags")),
        };
        check_tags(&tags, "tags")?;
        let resume_attempt = match run.get("resume_attempt") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| case_err("run.resume_attempt", "expected a whole number >= 0"))?,
        };
        Ok(RunCase {
            launcher_class,
            launcher: obj.get("launcher").cloned().unwrap_or(Value::Null),
            run_id: string("run_id")?,
            job_name: string("job_name")?,
            location_name: opt_string("location_name")?,
            image: opt_string("image")?,
            container_context: run.get("container_context").cloned().unwrap_or(Value::Null),
            tags,
            args,
            resume_attempt,
            run_config: run.get("run_config").cloned().unwrap_or(Value::Null),
        })
    }
}

/// A run Job, as K8sRunLauncher or CeleryK8sRunLauncher builds it.
pub fn render_run(case: &RunCase, env: &dyn Env) -> Result<Rendered, Error> {
    let launcher = Launcher::load(case.launcher_class, &case.launcher, env)?;
    render_run_loaded(case, &launcher, env)
}

/// [`render_run`] with a launcher config parsed beforehand, so a service
/// that sees the same config on every launch parses it once. `case.launcher`
/// is not read.
pub fn render_run_loaded(
    case: &RunCase,
    launcher: &Launcher,
    env: &dyn Env,
) -> Result<Rendered, Error> {
    match launcher.class {
        LauncherClass::K8s => render_k8s_run(case, launcher, env),
        LauncherClass::CeleryK8s => render_celery_run(case, launcher, env),
    }
}

fn render_k8s_run(case: &RunCase, launcher: &Launcher, env: &dyn Env) -> Result<Rendered, Error> {
    let base = ContainerContext::for_launcher(launcher, env)?;
    let mut user = ContainerContext::default();
    if truthy(&case.container_context) {
        let cc = ContainerContext::from_container_context(
            &case.container_context,
            env,
            "run.container_context",
        )?;
        user = user.merge(&cc)?;
    }
    let tag_layer = ContainerContext {
        run_k8s_config: user_config_from_tags(&case.tags, "tags")?,
        namespace: None,
    };
    user = user.merge(&tag_layer)?;

    let mut dropped = Vec::new();
    if let Some(allow) = &launcher.only_allow_user_defined_k8s_config_fields {
        let allow =
            Allowlist::from_config(allow, "launcher.only_allow_user_defined_k8s_config_fields")?;
        let ns_set = user.namespace.as_ref().is_some_and(|n| !n.is_empty());
        check_allowlist(&allow, &user.run_k8s_config, ns_set)?;
    }
    if let Some(names) = &launcher.only_allow_user_defined_env_vars {
        let allowed = names.iter().cloned().collect();
        dropped = filter_env_vars(&allowed, &mut user.run_k8s_config, "container_config")?;
    }
    let merged = base.merge(&user)?;

    let job_config = JobConfig {
        job_image: case.image.clone().or_else(|| launcher.job_image.clone()),
        dagster_home: Some(launcher.dagster_home.clone()),
        instance_config_map: Some(launcher.instance_config_map.clone()),
        postgres_password_secret: launcher.postgres_password_secret.clone(),
        ..JobConfig::default()
    };
    let mut labels = vec![
        ("dagster/job".to_owned(), case.job_name.clone()),
        ("dagster/run-id".to_owned(), case.run_id.clone()),
    ];
    if let Some(name) = deployment_name(&merged.run_k8s_config)? {
        labels.push(("dagster/deployment-name".into(), name));
    }
    if let Some(location) = &case.location_name {
        labels.push(("dagster/code-location".into(), location.clone()));
    }
    let job_name = run_job_name(&case.run_id, case.resume_attempt);
    let job = build_job(
        &JobRequest {
            job_config: &job_config,
            args: case.args.clone(),
            job_name: &job_name,
            pod_name: &job_name,
            user: &merged.run_k8s_config,
            component: "run_worker",
            labels,
            env_vars: vec![("DAGSTER_RUN_JOB_NAME".into(), case.job_name.clone())],
        },
        env,
    )?;
    require_image(&job)?;
    Ok(Rendered {
        job,
        namespace: merged
            .namespace
            .unwrap_or_else(|| launcher.job_namespace.clone()),
        dropped_env_vars: dropped,
    })
}

const RETRY_OPTIONS: &[(&str, Ty)] = &[("enabled", Ty::Shape(&[])), ("disabled", Ty::Shape(&[]))];

/// The keys the celery-k8s executor adds to the job and Celery fields.
const CELERY_K8S_EXECUTOR_EXTRA: &[Field] = &[
    opt("job_image", Ty::Noneable(&Ty::StringSource)),
    dflt("load_incluster_config", Ty::Bool, "true"),
    opt("kubeconfig_file", Ty::Noneable(&Ty::Str)),
    opt("job_namespace", Ty::StringSource),
    dflt("repo_location_name", Ty::StringSource, "\"<<in_process>>\""),
    dflt("job_wait_timeout", Ty::Float, "86400.0"),
    dflt(
        "per_step_k8s_config",
        Ty::Map(&Ty::Shape(USER_DEFINED_SCHEMA)),
        "{}",
    ),
];

/// `celery_k8s_executor_config()`.
fn celery_executor_schema() -> &'static [Field] {
    static SCHEMA: std::sync::OnceLock<Vec<Field>> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut fields: Vec<Field> = CELERY_FIELDS
            .iter()
            .copied()
            .filter(|f| f.name != "retries")
            .collect();
        fields.push(dflt(
            "retries",
            Ty::Selector(RETRY_OPTIONS),
            "{\"enabled\": {}}",
        ));
        fields.extend_from_slice(CONTAINER_FIELDS);
        fields.extend_from_slice(CELERY_K8S_EXECUTOR_EXTRA);
        fields
    })
}

/// The run's celery-k8s executor config (`execution: config:` or the legacy
/// `execution: celery-k8s: config:`), processed.
pub fn celery_executor_config(run_config: &Value, env: &dyn Env) -> Result<Map, Error> {
    let execution = run_config.get("execution").cloned().unwrap_or(Value::Null);
    let (raw, at) = match execution.get("celery-k8s") {
        Some(legacy) => (
            legacy.get("config").cloned().unwrap_or(Value::Null),
            "run.run_config.execution.celery-k8s.config",
        ),
        None => (
            execution.get("config").cloned().unwrap_or(Value::Null),
            "run.run_config.execution.config",
        ),
    };
    let raw = if raw.is_null() {
        Value::Object(Map::new())
    } else {
        raw
    };
    let processed = process(
        &Ty::Shape(celery_executor_schema()),
        &raw,
        at,
        env,
        Mode::Process,
    )?;
    Ok(processed.as_object().cloned().unwrap_or_default())
}

fn render_celery_run(
    case: &RunCase,
    launcher: &Launcher,
    env: &dyn Env,
) -> Result<Rendered, Error> {
    if case.resume_attempt > 0 {
        return Err(case_err(
            "run.resume_attempt",
            "CeleryK8sRunLauncher does not support resuming runs; use 0",
        ));
    }
    let exc = celery_executor_config(&case.run_config, env)?;
    let exc_image = exc
        .get("job_image")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let job_image = match (&case.image, exc_image) {
        (Some(_), Some(from_executor)) => from_executor,
        (Some(origin), None) => origin.clone(),
        (None, Some(from_executor)) => from_executor,
        (None, None) => {
            return Err(case_err(
                "run.run_config.execution.config.job_image",
                "You have not specified a job_image in your executor configuration; set \
                 job_image there or give the code location an image",
            ))
        }
    };
    let exc_list = |k: &str| -> Result<Vec<Value>, Error> {
        match exc.get(k) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(_) => Err(case_err(
                &path::key("run.run_config.execution.config", k),
                "must be a list here (null cannot be combined with the launcher's list)",
            )),
        }
    };
    let strings = |v: Vec<Value>| -> Vec<String> {
        v.into_iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let snake_list = |items: Vec<Value>, model: usize, at: &str| -> Result<Vec<Value>, Error> {
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let obj = v.as_object().cloned().unwrap_or_default();
                Ok(Value::Object(snake_case_dict(
                    model,
                    &obj,
                    &path::index(at, i),
                )?))
            })
            .collect()
    };
    let mut pull_secrets = exc_list("image_pull_secrets")?;
    pull_secrets.extend(launcher.image_pull_secrets.iter().cloned());
    let mut env_config_maps = strings(exc_list("env_config_maps")?);
    env_config_maps.extend(launcher.env_config_maps.iter().cloned());
    let mut env_secrets = strings(exc_list("env_secrets")?);
    env_secrets.extend(launcher.env_secrets.iter().cloned());
    let mut mounts = exc_list("volume_mounts")?;
    mounts.extend(launcher.volume_mounts.iter().cloned());
    let mut volumes = exc_list("volumes")?;
    volumes.extend(launcher.volumes.iter().cloned());
    let mut labels = launcher.labels.clone();
    if let Some(Value::Object(extra)) = exc.get("labels") {
        for (k, v) in extra {
            labels.insert(k.clone(), v.clone());
        }
    }
    if let Some((k, v)) = labels.iter().find(|(_, v)| !v.is_string()) {
        return Err(dagster::Error::WrongType {
            path: path::key("labels", k),
            expected: "a string label value".into(),
            got: crate::k8s::config::error_kind(v),
        }
        .into());
    }
    let pick = |k: &str, fallback: Option<String>| -> Option<String> {
        match exc.get(k) {
            Some(v) => v.as_str().map(str::to_owned),
            None => fallback,
        }
    };
    let job_config = JobConfig {
        job_image: Some(job_image),
        dagster_home: Some(launcher.dagster_home.clone()),
        instance_config_map: Some(launcher.instance_config_map.clone()),
        postgres_password_secret: launcher.postgres_password_secret.clone(),
        image_pull_policy: Some(
            pick(
                "image_pull_policy",
                Some(launcher.image_pull_policy.clone()),
            )
            .unwrap_or_else(|| "Always".into()),
        ),
        image_pull_secrets: pull_secrets,
        service_account_name: pick(
            "service_account_name",
            launcher.service_account_name.clone(),
        ),
        env_config_maps,
        env_secrets,
        volume_mounts: snake_list(mounts, ids::VOLUME_MOUNT, "volume_mounts")?,
        volumes: snake_list(volumes, ids::VOLUME, "volumes")?,
        labels,
        ..JobConfig::default()
    };
    let user = user_config_from_tags(&case.tags, "tags")?;
    let mut labels = vec![
        ("dagster/job".to_owned(), case.job_name.clone()),
        ("dagster/run-id".to_owned(), case.run_id.clone()),
    ];
    if let Some(location) = &case.location_name {
        labels.push(("dagster/code-location".into(), location.clone()));
    }
    let job_name = run_job_name(&case.run_id, 0);
    let job = build_job(
        &JobRequest {
            job_config: &job_config,
            args: case.args.clone(),
            job_name: &job_name,
            pod_name: &job_name,
            user: &user,
            component: "run_worker",
            labels,
            env_vars: vec![("DAGSTER_RUN_JOB_NAME".into(), case.job_name.clone())],
        },
        env,
    )?;
    require_image(&job)?;
    let namespace = exc
        .get("job_namespace")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| launcher.job_namespace.clone());
    Ok(Rendered {
        job,
        namespace,
        dropped_env_vars: Vec::new(),
    })
}

/// A step Job, as the `execute_step_k8s_job` task builds it.
pub fn render_step(task: &StepTask, env: &dyn Env) -> Result<Rendered, Error> {
    let mut labels = vec![
        ("dagster/job".to_owned(), task.job_name.clone()),
        ("dagster/op".to_owned(), task.step_key.clone()),
        ("dagster/run-id".to_owned(), task.run_id.clone()),
    ];
    if let Some(loc) = &task.code_location {
        labels.push(("dagster/code-location".to_owned(), loc.clone()));
    }
    let job = build_job(
        &JobRequest {
            job_config: &task.job_config,
            args: task.args.clone(),
            job_name: &task.k8s_job_name,
            pod_name: &task.k8s_job_name,
            user: &task.user,
            component: "step_worker",
            labels,
            env_vars: vec![
                ("DAGSTER_RUN_JOB_NAME".into(), task.job_name.clone()),
                ("DAGSTER_RUN_STEP_KEY".into(), task.step_key.clone()),
            ],
        },
        env,
    )?;
    Ok(Rendered {
        job,
        namespace: task.namespace.clone(),
        dropped_env_vars: Vec::new(),
    })
}

/// `get_deployment_id_label`: the value of `DAGSTER_CLOUD_DEPLOYMENT_NAME` in
/// the merged container env, if set.
fn deployment_name(user: &UserConfig) -> Result<Option<String>, Error> {
    let Some(Value::Array(env)) = user.get(Section::ContainerConfig).get("env") else {
        return Ok(None);
    };
    for (i, entry) in env.iter().enumerate() {
        let at = path::index("container_config.env", i);
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| case_err(&at, "every env entry needs a \"name\""))?;
        if name == "DAGSTER_CLOUD_DEPLOYMENT_NAME" {
            return match entry.get("value") {
                Some(Value::String(v)) => Ok(Some(v.clone())),
                Some(Value::Null) | None => Err(case_err(
                    &at,
                    "DAGSTER_CLOUD_DEPLOYMENT_NAME must have a literal \"value\" (it becomes \
                     the dagster/deployment-name label); valueFrom cannot be used for it",
                )),
                Some(other) => Ok(Some(dagster::pyfmt::dumps_sorted(other))),
            };
        }
    }
    Ok(None)
}

fn require_image(job: &Value) -> Result<(), Error> {
    let image = job
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str);
    match image {
        Some(_) => Ok(()),
        None => Err(case_err(
            "run.image",
            "no image for the run worker: set the code location's image, the launcher's \
             job_image, or container_config.image in the dagster-k8s/config tag",
        )),
    }
}

fn check_keys(obj: &Map, allowed: &[&str], at: &str) -> Result<(), Error> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(bad) => Err(Error::Case {
            path: path::key(at, bad),
            message: format!("unknown key (expected one of: {})", allowed.join(", ")),
        }),
        None => Ok(()),
    }
}

fn case_err(at: &str, message: &str) -> Error {
    Error::Case {
        path: at.to_owned(),
        message: message.to_owned(),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

#[cfg(test)]
mod tests;
