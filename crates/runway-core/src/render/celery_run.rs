//! The run Job of CeleryK8sRunLauncher, and the celery-k8s executor config
//! of a run's run config.

use super::checks::*;
use super::*;
use crate::dagster::version::Rules;

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
/// `execution: celery-k8s: config:`), processed as the caller's release does.
pub fn celery_executor_config(
    run_config: &Value,
    env: &dyn Env,
    rules: &Rules,
) -> Result<Map, Error> {
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
    if !rules.per_step_k8s_config && raw.get("per_step_k8s_config").is_some() {
        return Err(dagster::Error::NotInVersion {
            path: path::key(at, "per_step_k8s_config"),
            version: rules.version.to_string(),
            since: "1.7.15",
            fix: "set per-op config in the op's dagster-k8s/config tag instead",
        }
        .into());
    }
    let processed = process(
        &Ty::Shape(celery_executor_schema()),
        &raw,
        at,
        env,
        Mode::Process,
    )?;
    Ok(processed.as_object().cloned().unwrap_or_default())
}

pub(super) fn render_celery_run(
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
    let rules = &case.target.rules;
    let exc = celery_executor_config(&case.run_config, env, rules)?;
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
    let user = user_config_from_tags(&case.tags, "tags", rules)?;
    let mut labels = vec![
        ("dagster/job".to_owned(), case.job_name.clone()),
        ("dagster/run-id".to_owned(), case.run_id.clone()),
    ];
    if let Some(location) = case
        .location_name
        .as_ref()
        .filter(|_| rules.code_location_label)
    {
        labels.push(("dagster/code-location".into(), location.clone()));
    }
    let job_name = run_job_name(&case.run_id, 0);
    let job = build_job(
        JobRequest {
            target: &case.target,
            job_config: &job_config,
            args: case.args.clone(),
            job_name: &job_name,
            pod_name: &job_name,
            user,
            component: "run_worker",
            labels,
            env_vars: vec![env_var("DAGSTER_RUN_JOB_NAME", &case.job_name)],
        },
        env,
    )?;
    require_image(&job, rules)?;
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
