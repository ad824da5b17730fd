//! `construct_dagster_k8s_job`, output for output: the Job dagster-k8s would
//! create from a job config, computed args, and the merged raw config.

use serde_json::{json, Value};

use crate::dagster::names::{check_name_len, common_labels, sanitize_label};
use crate::dagster::version::Target;
use crate::dagster::{parse_env_var, Env, Error};
use crate::k8s::config::schema::ids;
use crate::k8s::config::{model_into_wire, Map, Section, UserConfig};

/// `DagsterK8sJobConfig`: what the launcher or executor contributes directly.
/// List fields hold snake_case dicts (volume mounts and volumes are converted
/// when the config is built).
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    pub job_image: Option<String>,
    pub dagster_home: Option<String>,
    /// The class default is `Always`; launchers pass `IfNotPresent`.
    pub image_pull_policy: Option<String>,
    pub image_pull_secrets: Vec<Value>,
    pub service_account_name: Option<String>,
    pub instance_config_map: Option<String>,
    pub postgres_password_secret: Option<String>,
    pub env_config_maps: Vec<String>,
    pub env_secrets: Vec<String>,
    pub env_vars: Vec<String>,
    pub volume_mounts: Vec<Value>,
    pub volumes: Vec<Value>,
    pub labels: Map,
    pub resources: Map,
    pub scheduler_name: Option<String>,
    pub security_context: Map,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            job_image: None,
            dagster_home: None,
            image_pull_policy: Some("Always".into()),
            image_pull_secrets: Vec::new(),
            service_account_name: None,
            instance_config_map: None,
            postgres_password_secret: None,
            env_config_maps: Vec::new(),
            env_secrets: Vec::new(),
            env_vars: Vec::new(),
            volume_mounts: Vec::new(),
            volumes: Vec::new(),
            labels: Map::new(),
            resources: Map::new(),
            scheduler_name: None,
            security_context: Map::new(),
        }
    }
}

/// Everything `construct_dagster_k8s_job` takes besides the job config.
#[derive(Debug, Clone)]
pub struct JobRequest<'a> {
    /// The release whose `construct_dagster_k8s_job` this is.
    pub target: &'a Target,
    pub job_config: &'a JobConfig,
    pub args: Vec<String>,
    pub job_name: &'a str,
    pub pod_name: &'a str,
    /// The merged raw config; its sections move into the Job.
    pub user: UserConfig,
    pub component: &'a str,
    /// Launcher labels (`dagster/job`, `dagster/run-id`, ...): values are sanitized.
    pub labels: Vec<(String, String)>,
    /// Explicit env first on the container (`DAGSTER_RUN_JOB_NAME`, ...), as
    /// snake_case EnvVar objects.
    pub env_vars: Vec<Value>,
}

/// A literal `{name, value}` env entry.
pub fn env_var(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

/// Builds the wire JSON of the batch/v1 Job.
pub fn build_job(req: JobRequest<'_>, env: &dyn Env) -> Result<Value, Error> {
    let JobRequest {
        target,
        job_config: jc,
        args,
        job_name,
        pod_name,
        mut user,
        component,
        labels,
        env_vars,
    } = req;
    let rules = &target.rules;
    check_name_len(job_name, "job_name")?;
    check_name_len(pod_name, "pod_name")?;

    let mut dagster_labels = Map::new();
    for (k, v) in common_labels(component, &target.label) {
        dagster_labels.insert(k, Value::String(v));
    }
    for (k, v) in labels {
        dagster_labels.insert(k, Value::String(sanitize_label(&v)));
    }

    let mut env_list: Vec<Value> = env_vars;
    if let Some(home) = jc.dagster_home.as_ref().filter(|h| !h.is_empty()) {
        env_list.push(json!({"name": "DAGSTER_HOME", "value": home}));
    }
    if let Some(secret) = jc
        .postgres_password_secret
        .as_ref()
        .filter(|s| !s.is_empty())
    {
        env_list.push(json!({
            "name": "DAGSTER_PG_PASSWORD",
            "value_from": {"secret_key_ref": {"name": secret, "key": "postgresql-password"}}
        }));
    }
    for (i, spec) in jc.env_vars.iter().enumerate() {
        let (k, v) = parse_env_var(spec, env, &format!("job_config.env_vars[{i}]"))?;
        env_list.push(json!({"name": k, "value": v}));
    }

    let mut container = user.take(Section::ContainerConfig);
    container.insert(
        "args".into(),
        Value::Array(args.into_iter().map(Value::String).collect()),
    );
    let user_env = take_list(&mut container, "env");
    let user_env_from = take_list(&mut container, "env_from");
    let image = container
        .remove("image")
        .unwrap_or_else(|| opt_str(&jc.job_image));
    // Before 1.7 the Job config's pull policy is written over the user's.
    let user_pull_policy = container
        .remove("image_pull_policy")
        .filter(|_| rules.user_image_pull);
    let pull_policy = user_pull_policy.unwrap_or_else(|| opt_str(&jc.image_pull_policy));
    let user_mounts = take_list(&mut container, "volume_mounts");
    let user_resources = container.remove("resources");
    // Before 1.1.15 the container is always named `dagster`.
    let name = container
        .remove("name")
        .filter(|_| rules.user_container_name)
        .unwrap_or_else(|| Value::String("dagster".into()));
    let security_context = container
        .remove("security_context")
        .unwrap_or_else(|| Value::Object(jc.security_context.clone()));
    let resources = match user_resources {
        Some(r) if truthy(&r) => r,
        _ => Value::Object(jc.resources.clone()),
    };

    env_list.extend(user_env);
    let mut env_from: Vec<Value> = jc
        .env_config_maps
        .iter()
        .map(|n| json!({"config_map_ref": {"name": n}}))
        .collect();
    env_from.extend(
        jc.env_secrets
            .iter()
            .map(|n| json!({"secret_ref": {"name": n}})),
    );
    env_from.extend(user_env_from);
    let mut mounts = jc.volume_mounts.clone();
    mounts.extend(user_mounts);

    container.insert("name".into(), name);
    container.insert("image".into(), image);
    container.insert("image_pull_policy".into(), pull_policy);
    container.insert("env".into(), Value::Array(env_list));
    container.insert("env_from".into(), Value::Array(env_from));
    container.insert("volume_mounts".into(), Value::Array(mounts));
    container.insert("resources".into(), resources);
    if truthy(&security_context) {
        container.insert("security_context".into(), security_context);
    }

    let mut pod_spec = user.take(Section::PodSpecConfig);
    let mut volumes = jc.volumes.clone();
    volumes.extend(take_list(&mut pod_spec, "volumes"));
    let mut pod_meta = user.take(Section::PodTemplateSpecMetadata);
    let user_pod_labels = take_map(&mut pod_meta, "labels");
    let service_account = pod_spec
        .remove("service_account_name")
        .unwrap_or_else(|| opt_str(&jc.service_account_name));
    let scheduler = pod_spec
        .remove("scheduler_name")
        .unwrap_or_else(|| opt_str(&jc.scheduler_name));
    // Before 1.6.5 only a user value is written; the field stays in `pod_spec`.
    let automount = if rules.automount_default {
        Some(
            pod_spec
                .remove("automount_service_account_token")
                .unwrap_or(Value::Bool(true)),
        )
    } else {
        None
    };
    let mut containers = vec![Value::Object(container)];
    containers.extend(take_list(&mut pod_spec, "containers"));
    let mut pull_secrets = jc.image_pull_secrets.clone();
    let user_pull_secrets = take_list(&mut pod_spec, "image_pull_secrets");
    if rules.user_image_pull {
        pull_secrets.extend(user_pull_secrets);
    }

    // Before 1.5 the launcher's and executor's `labels` beat the user's.
    let mut pod_labels = dagster_labels.clone();
    if rules.user_pod_labels_win {
        merge_into(&mut pod_labels, &jc.labels);
        merge_into(&mut pod_labels, &user_pod_labels);
    } else {
        merge_into(&mut pod_labels, &user_pod_labels);
        merge_into(&mut pod_labels, &jc.labels);
    }
    pod_meta.insert("name".into(), Value::String(pod_name.to_owned()));
    pod_meta.insert("labels".into(), Value::Object(pod_labels));

    // Before 1.4.5 `Never` is written over a user restart policy.
    let never = Value::String("Never".into());
    let mut spec = Map::new();
    if rules.user_restart_policy {
        spec.insert("restart_policy".into(), never);
        merge_owned(&mut spec, pod_spec);
    } else {
        merge_owned(&mut spec, pod_spec);
        spec.insert("restart_policy".into(), never);
    }
    spec.insert("image_pull_secrets".into(), Value::Array(pull_secrets));
    spec.insert("service_account_name".into(), service_account);
    if let Some(automount) = automount {
        spec.insert("automount_service_account_token".into(), automount);
    }
    spec.insert("containers".into(), Value::Array(containers));
    spec.insert("volumes".into(), Value::Array(volumes));
    if truthy(&scheduler) {
        spec.insert("scheduler_name".into(), scheduler);
    }

    let mut template = Map::new();
    template.insert("metadata".into(), Value::Object(pod_meta));
    template.insert("spec".into(), Value::Object(spec));

    let mut job_spec = Map::new();
    job_spec.insert("ttl_seconds_after_finished".into(), json!(86400));
    job_spec.insert("backoff_limit".into(), json!(0));
    merge_owned(&mut job_spec, user.take(Section::JobSpecConfig));
    job_spec.insert("template".into(), Value::Object(template));

    let mut job_meta = user.take(Section::JobMetadata);
    let user_job_labels = take_map(&mut job_meta, "labels");
    let mut job_labels = dagster_labels;
    merge_into(&mut job_labels, &user_job_labels);
    merge_into(&mut job_labels, &jc.labels);
    job_meta.insert("name".into(), Value::String(job_name.to_owned()));
    job_meta.insert("labels".into(), Value::Object(job_labels));

    let mut job = user.take(Section::JobConfig);
    job.insert("api_version".into(), Value::String("batch/v1".into()));
    job.insert("kind".into(), Value::String("Job".into()));
    job.insert("metadata".into(), Value::Object(job_meta));
    job.insert("spec".into(), Value::Object(job_spec));

    Ok(model_into_wire(ids::JOB, job, "job")?)
}

/// Python truthiness of a JSON value.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn opt_str(s: &Option<String>) -> Value {
    s.clone().map(Value::String).unwrap_or(Value::Null)
}

/// `dict.pop(key, [])` for a list-typed field (conversion guarantees the type).
fn take_list(map: &mut Map, key: &str) -> Vec<Value> {
    match map.remove(key) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

fn take_map(map: &mut Map, key: &str) -> Map {
    match map.remove(key) {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    }
}

/// `merge_dicts`: a shallow update.
fn merge_into(target: &mut Map, from: &Map) {
    for (k, v) in from {
        target.insert(k.clone(), v.clone());
    }
}

/// [`merge_into`] of a dict the caller gives up.
fn merge_owned(target: &mut Map, from: Map) {
    target.extend(from);
}

#[cfg(test)]
mod tests;
