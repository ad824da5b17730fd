//! `K8sContainerContext`: the launcher's layer, the code location's
//! container context and the run tags, parsed into [`Layer`]s and merged as
//! the caller's release merges them: field by field (`fields`, until 1.7) or
//! as raw config (`raw`, from 1.7).

mod fields;
mod prepared;
mod raw;

use serde_json::Value;

use super::config::{dflt, implicit, opt, process, Field, Mode, Ty};
use super::launcher::{Launcher, CONTAINER_FIELDS, USER_DEFINED_SCHEMA};
use super::rules::Rules;
use super::{Env, Error};
use crate::k8s::config::{path, Map, Section, UserConfig};

pub use fields::FieldsContext;
pub use prepared::{MergedFields, MergedRaw, PreparedLayers};
pub use raw::ContainerContext;

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

/// One layer as its config gives it, before any merging.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub fields: ContainerFields,
    pub run_k8s_config: UserConfig,
    pub namespace: Option<String>,
    /// Where the layer came from, for error paths.
    pub at: String,
}

impl Layer {
    /// The launcher's layer (`create_for_run` with a launcher).
    pub fn launcher(launcher: &Launcher, rules: &Rules) -> Result<Layer, Error> {
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
        let run_k8s_config = UserConfig::from_dict_as(
            &launcher.run_k8s_config,
            "launcher.run_k8s_config",
            &Section::ALL[..6],
            rules.merge_default(),
        )?;
        Ok(Layer {
            fields,
            run_k8s_config,
            namespace: Some(launcher.job_namespace.clone()),
            at: "launcher".into(),
        })
    }

    /// The run tags' layer: only raw config.
    pub fn tags(run_k8s_config: UserConfig) -> Layer {
        Layer {
            run_k8s_config,
            at: "tags".into(),
            ..Layer::default()
        }
    }

    /// `create_from_config`: a code location's `container_context` gives the
    /// shared `env_vars` layer, then its `k8s` section's layer (when set).
    pub fn code_location(
        container_context: &Value,
        env: &dyn Env,
        at: &str,
        rules: &Rules,
    ) -> Result<Vec<Layer>, Error> {
        let shared = process(
            &Ty::Permissive(SHARED_FIELDS),
            container_context,
            at,
            env,
            Mode::Process,
        )?;
        let mut layers = vec![Layer {
            fields: ContainerFields {
                env_vars: strings(shared.get("env_vars")),
                ..ContainerFields::default()
            },
            run_k8s_config: UserConfig::from_dict_as(&Map::new(), at, &[], rules.merge_default())?,
            at: at.to_owned(),
            ..Layer::default()
        }];
        let k8s_at = path::key(at, "k8s");
        match container_context.get("k8s") {
            None | Some(Value::Null) => {}
            Some(Value::Object(o)) if o.is_empty() => {}
            Some(k8s) => layers.push(k8s_layer(k8s, env, &k8s_at, rules)?),
        }
        Ok(layers)
    }
}

/// The `k8s` section of a container context, checked against the keys the
/// caller's release accepts.
fn k8s_layer(k8s: &Value, env: &dyn Env, at: &str, rules: &Rules) -> Result<Layer, Error> {
    check_release_keys(k8s, at, rules)?;
    let processed = process(&Ty::Shape(context_schema()), k8s, at, env, Mode::Process)?;
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
    check_server_config(&object("server_k8s_config"), at)?;
    let fields = ContainerFields {
        image_pull_policy: string("image_pull_policy"),
        image_pull_secrets: list("image_pull_secrets"),
        service_account_name: string("service_account_name"),
        env_config_maps: strings(get("env_config_maps")),
        env_secrets: strings(get("env_secrets")),
        env_vars: strings(get("env_vars")),
        volume_mounts: list("volume_mounts"),
        volumes: list("volumes"),
        labels: object("labels"),
        resources: object("resources"),
        scheduler_name: string("scheduler_name"),
        security_context: object("security_context"),
        env: list("env"),
    };
    let run_k8s_config = UserConfig::from_dict_as(
        &object("run_k8s_config"),
        &path::key(at, "run_k8s_config"),
        &Section::ALL[..6],
        rules.merge_default(),
    )?;
    Ok(Layer {
        fields,
        run_k8s_config,
        namespace: string("namespace"),
        at: at.to_owned(),
    })
}

/// Keys of `config_type_container_context` that arrived after the caller's
/// release: its schema refuses them ("Errors while parsing k8s container context").
fn check_release_keys(k8s: &Value, at: &str, rules: &Rules) -> Result<(), Error> {
    let sub = |section: &str, key: &str| {
        k8s.get(section)
            .and_then(Value::as_object)
            .is_some_and(|o| o.contains_key(key))
    };
    let late: [(bool, bool, String, &'static str); 7] = [
        (
            rules.context_env,
            k8s.get("env").is_some(),
            path::key(at, "env"),
            "1.1.21",
        ),
        (
            rules.server_replica_count,
            k8s.get("server_replica_count").is_some(),
            path::key(at, "server_replica_count"),
            "1.13.5",
        ),
        (
            rules.merge_behavior_key,
            sub("run_k8s_config", "merge_behavior"),
            path::key(&path::key(at, "run_k8s_config"), "merge_behavior"),
            "1.5.3",
        ),
        (
            rules.merge_behavior_key,
            sub("server_k8s_config", "merge_behavior"),
            path::key(&path::key(at, "server_k8s_config"), "merge_behavior"),
            "1.5.3",
        ),
        (
            rules.metadata_sections,
            sub("server_k8s_config", "deployment_metadata"),
            path::key(&path::key(at, "server_k8s_config"), "deployment_metadata"),
            "1.8.11",
        ),
        (
            rules.metadata_sections,
            sub("server_k8s_config", "service_metadata"),
            path::key(&path::key(at, "server_k8s_config"), "service_metadata"),
            "1.8.11",
        ),
        (
            rules.service_spec_config,
            sub("server_k8s_config", "service_spec_config"),
            path::key(&path::key(at, "server_k8s_config"), "service_spec_config"),
            "1.12.20",
        ),
    ];
    match late.into_iter().find(|(known, used, _, _)| !known && *used) {
        Some((_, _, path, since)) => Err(Error::NotInVersion {
            path,
            version: rules.version.to_string(),
            since,
            fix: "remove it from the code location's container context, or upgrade Dagster",
        }),
        None => Ok(()),
    }
}

/// Server config never reaches a run Job, but Dagster still converts it, so
/// its mistakes are refused here too.
fn check_server_config(server: &Map, at: &str) -> Result<(), Error> {
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
            let here = path::key(&path::key(at, "server_k8s_config"), section.name());
            scratch.set_raw(section, raw, &here)?;
        }
    }
    Ok(())
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

/// `config_type_container_context()` of the newest release; older releases
/// refuse the later keys first ([`check_release_keys`]).
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
