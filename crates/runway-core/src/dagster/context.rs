//! `K8sContainerContext`: the launcher's base layer and the code location's
//! container context, each turned into raw config and merged as dagster-k8s
//! merges them.

use serde_json::Value;

use super::config::{dflt, implicit, opt, process, Field, Mode, Ty};
use super::launcher::{Launcher, CONTAINER_FIELDS, USER_DEFINED_SCHEMA};
use super::{parse_env_var, Env, Error};
use crate::k8s::config::{merge_user_configs, path, Map, Section, UserConfig};

/// The container-level fields shared by launcher config and container context.
#[derive(Debug, Clone, Default)]
pub struct ContainerFields {
    pub image_pull_policy: Option<String>,
    pub image_pull_secrets: Vec<Value>,
    pub service_account_name: Option<String>,
    pub env_config_maps: Vec<String>,
    pub env_secrets: Vec<String>,
    pub env_vars: Vec<String>,
    pub volume_mounts: Vec<Value>,
    pub volumes: Vec<Value>,
    pub labels: Map,
    pub resources: Map,
    pub scheduler_name: Option<String>,
    pub security_context: Map,
    /// Full EnvVar objects (container context `env`).
    pub env: Vec<Value>,
}

/// The merged run config and namespace of one layer.
#[derive(Debug, Clone, Default)]
pub struct ContainerContext {
    pub run_k8s_config: UserConfig,
    pub namespace: Option<String>,
}

impl ContainerContext {
    /// `K8sContainerContext.__new__`: the top-level fields become raw config,
    /// then `run_k8s_config` is merged on top with its own merge behaviour.
    pub fn new(
        fields: &ContainerFields,
        run_k8s_config: UserConfig,
        namespace: Option<String>,
        env: &dyn Env,
        at: &str,
    ) -> Result<ContainerContext, Error> {
        let base = base_user_config(fields, env, at)?;
        Ok(ContainerContext {
            run_k8s_config: merge_user_configs(&base, &run_k8s_config)?,
            namespace,
        })
    }

    /// `K8sContainerContext.merge`: `other` is the more specific layer.
    pub fn merge(&self, other: &ContainerContext) -> Result<ContainerContext, Error> {
        Ok(ContainerContext {
            run_k8s_config: merge_user_configs(&self.run_k8s_config, &other.run_k8s_config)?,
            namespace: other
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .or_else(|| self.namespace.clone()),
        })
    }

    /// The launcher's layer (`create_for_run` with a launcher).
    pub fn for_launcher(launcher: &Launcher, env: &dyn Env) -> Result<ContainerContext, Error> {
        let fields = ContainerFields {
            image_pull_policy: Some(launcher.image_pull_policy.clone()),
            image_pull_secrets: launcher.image_pull_secrets.clone(),
            service_account_name: launcher.service_account_name.clone(),
            env_config_maps: launcher.env_config_maps.clone(),
            env_secrets: launcher.env_secrets.clone(),
            env_vars: launcher.env_vars.clone(),
            volume_mounts: launcher.volume_mounts.clone(),
            volumes: launcher.volumes.clone(),
            labels: launcher.labels.clone(),
            resources: launcher.resources.clone(),
            scheduler_name: launcher.scheduler_name.clone(),
            security_context: launcher.security_context.clone(),
            env: Vec::new(),
        };
        let run = UserConfig::from_dict(&launcher.run_k8s_config, "launcher.run_k8s_config")?;
        let layer = ContainerContext::new(
            &fields,
            run,
            Some(launcher.job_namespace.clone()),
            env,
            "launcher",
        )?;
        ContainerContext::default().merge(&layer)
    }

    /// `create_from_config`: a code location's `container_context` (shared
    /// `env_vars`, then its `k8s` section).
    pub fn from_container_context(
        container_context: &Value,
        env: &dyn Env,
        at: &str,
    ) -> Result<ContainerContext, Error> {
        let shared = process(
            &Ty::Permissive(SHARED_FIELDS),
            container_context,
            at,
            env,
            Mode::Process,
        )?;
        let shared_fields = ContainerFields {
            env_vars: strings(shared.get("env_vars")),
            ..ContainerFields::default()
        };
        let shared_ctx =
            ContainerContext::new(&shared_fields, UserConfig::default(), None, env, at)?;
        let k8s_at = path::key(at, "k8s");
        let k8s = match container_context.get("k8s") {
            None | Some(Value::Null) => return Ok(shared_ctx),
            Some(Value::Object(o)) if o.is_empty() => return Ok(shared_ctx),
            Some(v) => v,
        };
        let processed = process(
            &Ty::Shape(context_schema()),
            k8s,
            &k8s_at,
            env,
            Mode::Process,
        )?;
        let get = |k: &str| processed.get(k).filter(|v| !v.is_null());
        let object = |k: &str| {
            get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let list = |k: &str| {
            get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let string = |k: &str| get(k).and_then(Value::as_str).map(str::to_owned);

        // Server config never reaches a run Job, but Dagster still converts it,
        // so its mistakes are refused here too.
        let server = object("server_k8s_config");
        for section in [
            Section::ContainerConfig,
            Section::PodSpecConfig,
            Section::PodTemplateSpecMetadata,
            Section::DeploymentMetadata,
            Section::ServiceMetadata,
            Section::ServiceSpecConfig,
        ] {
            if let Some(Value::Object(raw)) = server.get(section.name()) {
                let mut scratch = UserConfig::default();
                let here = path::key(&path::key(&k8s_at, "server_k8s_config"), section.name());
                scratch.set_raw(section, raw, &here)?;
            }
        }

        let labels = object("labels");
        let fields = ContainerFields {
            image_pull_policy: string("image_pull_policy"),
            image_pull_secrets: list("image_pull_secrets"),
            service_account_name: string("service_account_name"),
            env_config_maps: strings(get("env_config_maps")),
            env_secrets: strings(get("env_secrets")),
            env_vars: strings(get("env_vars")),
            volume_mounts: list("volume_mounts"),
            volumes: list("volumes"),
            labels,
            resources: object("resources"),
            scheduler_name: string("scheduler_name"),
            security_context: object("security_context"),
            env: list("env"),
        };
        let run = UserConfig::from_dict(
            &object("run_k8s_config"),
            &path::key(&k8s_at, "run_k8s_config"),
        )?;
        let ctx = ContainerContext::new(&fields, run, string("namespace"), env, &k8s_at)?;
        shared_ctx.merge(&ctx)
    }
}

const SHARED_FIELDS: &[Field] = &[opt("env_vars", Ty::Array(&Ty::Str))];

const SERVER_K8S_FIELDS: &[Field] = &[
    implicit("container_config", Ty::Any),
    implicit("pod_spec_config", Ty::Any),
    implicit("pod_template_spec_metadata", Ty::Any),
    opt("merge_behavior", Ty::Enum(&["DEEP", "SHALLOW"])),
    implicit("deployment_metadata", Ty::Any),
    implicit("service_metadata", Ty::Any),
    implicit("service_spec_config", Ty::Any),
];

const ENV_FIELDS: &[Field] = &[super::config::req("name", Ty::Str)];

/// `config_type_container_context()`.
fn context_schema() -> &'static [Field] {
    static SCHEMA: std::sync::OnceLock<Vec<Field>> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut fields = CONTAINER_FIELDS.to_vec();
        fields.extend_from_slice(&[
            opt("namespace", Ty::Noneable(&Ty::StringSource)),
            opt("run_k8s_config", Ty::Shape(USER_DEFINED_SCHEMA)),
            opt("server_k8s_config", Ty::Shape(SERVER_K8S_FIELDS)),
            dflt("env", Ty::Array(&Ty::Permissive(ENV_FIELDS)), "[]"),
            opt("server_replica_count", Ty::IntSource),
        ]);
        fields
    })
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `_get_base_user_defined_k8s_config`: top-level fields as raw config.
fn base_user_config(f: &ContainerFields, env: &dyn Env, at: &str) -> Result<UserConfig, Error> {
    let mut container = Map::new();
    let mut pod_spec = Map::new();
    let mut pod_meta = Map::new();
    let mut job_meta = Map::new();
    if !f.volume_mounts.is_empty() {
        container.insert(
            "volume_mounts".into(),
            Value::Array(f.volume_mounts.clone()),
        );
    }
    if !f.resources.is_empty() {
        container.insert("resources".into(), Value::Object(f.resources.clone()));
    }
    if !f.image_pull_secrets.is_empty() {
        pod_spec.insert(
            "image_pull_secrets".into(),
            Value::Array(f.image_pull_secrets.clone()),
        );
    }
    if !f.volumes.is_empty() {
        pod_spec.insert("volumes".into(), Value::Array(f.volumes.clone()));
    }
    if !f.labels.is_empty() {
        pod_meta.insert("labels".into(), Value::Object(f.labels.clone()));
        job_meta.insert("labels".into(), Value::Object(f.labels.clone()));
    }
    if let Some(p) = f.image_pull_policy.as_ref().filter(|p| !p.is_empty()) {
        container.insert("image_pull_policy".into(), Value::String(p.clone()));
    }
    if let Some(sa) = f.service_account_name.as_ref().filter(|s| !s.is_empty()) {
        pod_spec.insert("service_account_name".into(), Value::String(sa.clone()));
    }
    let mut env_from: Vec<Value> = f
        .env_config_maps
        .iter()
        .map(|n| serde_json::json!({"config_map_ref": {"name": n}}))
        .collect();
    env_from.extend(
        f.env_secrets
            .iter()
            .map(|n| serde_json::json!({"secret_ref": {"name": n}})),
    );
    if !env_from.is_empty() {
        container.insert("env_from".into(), Value::Array(env_from));
    }
    let env_at = path::key(at, "env_vars");
    let mut env_list = Vec::with_capacity(f.env_vars.len() + f.env.len());
    for (i, spec) in f.env_vars.iter().enumerate() {
        let (name, value) = parse_env_var(spec, env, &path::index(&env_at, i))?;
        env_list.push(serde_json::json!({"name": name, "value": value}));
    }
    env_list.extend(f.env.iter().cloned());
    if !env_list.is_empty() {
        container.insert("env".into(), Value::Array(env_list));
    }
    if let Some(s) = f.scheduler_name.as_ref().filter(|s| !s.is_empty()) {
        pod_spec.insert("scheduler_name".into(), Value::String(s.clone()));
    }
    if !f.security_context.is_empty() {
        container.insert(
            "security_context".into(),
            Value::Object(f.security_context.clone()),
        );
    }
    let mut config = UserConfig::default();
    config.set_raw(Section::ContainerConfig, &container, at)?;
    config.set_raw(Section::PodSpecConfig, &pod_spec, at)?;
    config.set_raw(Section::PodTemplateSpecMetadata, &pod_meta, at)?;
    config.set_raw(Section::JobMetadata, &job_meta, at)?;
    Ok(config)
}
