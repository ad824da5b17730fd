//! Raw layering (Dagster 1.7 onward): each layer's fields become raw config
//! (`_get_base_user_defined_k8s_config`), its `run_k8s_config` merges on top,
//! and the layers merge as raw config with the more specific layer's
//! behaviour (DEEP by default).

use serde_json::Value;

use super::{ContainerFields, Layer};
use crate::dagster::{parse_env_var, Env, Error};
use crate::k8s::config::{merge_user_configs_into, path, Map, Section, UserConfig};

/// The merged raw config and namespace of one or more layers.
#[derive(Debug, Clone, Default)]
pub struct ContainerContext {
    pub run_k8s_config: UserConfig,
    pub namespace: Option<String>,
}

impl ContainerContext {
    /// `K8sContainerContext.__new__`: the layer's fields become raw config,
    /// then its `run_k8s_config` is merged on top with its own behaviour.
    pub fn from_layer(layer: &Layer, env: &dyn Env) -> Result<ContainerContext, Error> {
        let base = base_user_config(&layer.fields, env, &layer.at)?;
        Ok(ContainerContext {
            run_k8s_config: merge_user_configs_into(base, &layer.run_k8s_config)?,
            namespace: layer.namespace.clone(),
        })
    }

    /// `K8sContainerContext.merge`: `other` is the more specific layer.
    pub fn merge(&self, other: &ContainerContext) -> Result<ContainerContext, Error> {
        self.clone().merge_owned(other)
    }

    /// [`ContainerContext::merge`] onto a context the caller gives up.
    pub fn merge_owned(self, other: &ContainerContext) -> Result<ContainerContext, Error> {
        let namespace = match other.namespace.as_ref().filter(|n| !n.is_empty()) {
            Some(ns) => Some(ns.clone()),
            None => self.namespace,
        };
        Ok(ContainerContext {
            run_k8s_config: merge_user_configs_into(self.run_k8s_config, &other.run_k8s_config)?,
            namespace,
        })
    }

    /// Layers folded in order onto an empty context, each merged as a whole.
    pub fn fold(layers: &[Layer], env: &dyn Env) -> Result<ContainerContext, Error> {
        let mut folded: Option<ContainerContext> = None;
        for layer in layers {
            let next = ContainerContext::from_layer(layer, env)?;
            folded = Some(match folded {
                None => next,
                Some(onto) => onto.merge_owned(&next)?,
            });
        }
        // Merging onto the empty context copies everything and only drops an
        // empty namespace; the copy is skipped.
        let mut context = folded.unwrap_or_default();
        context.namespace = context.namespace.filter(|n| !n.is_empty());
        Ok(context)
    }
}

/// `_get_base_user_defined_k8s_config`: top-level fields as raw config.
pub(super) fn base_user_config(
    f: &ContainerFields,
    env: &dyn Env,
    at: &str,
) -> Result<UserConfig, Error> {
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
