//! Field layering (Dagster 1.1.9 up to 1.7): `K8sContainerContext.merge`
//! merges the container fields one by one and only the `run_k8s_config`
//! sections as raw config. The merged fields become the Job config, so they
//! reach the Job by `construct_dagster_k8s_job`'s own precedence (a
//! `container_config.resources` in *any* layer beats every `resources` field).

use serde_json::Value;

use std::collections::BTreeSet;

use super::raw::base_user_config;
use super::{ContainerFields, Layer};
use crate::dagster::launcher::Launcher;
use crate::dagster::rules::Rules;
use crate::dagster::{Env, Error};
use crate::k8s::config::schema::ids;
use crate::k8s::config::{
    check_allowlist, dedupe, filter_env_vars, merge_user_configs, path, snake_case_dict, Allowlist,
    Map, Section, UserConfig,
};
use crate::k8s::job::JobConfig;

/// The merged fields, namespace and raw config of one or more layers.
#[derive(Debug, Clone, Default)]
pub struct FieldsContext {
    pub fields: ContainerFields,
    pub run_k8s_config: UserConfig,
    pub namespace: Option<String>,
    /// Where `fields.security_context` came from, for errors.
    security_context_at: String,
}

impl FieldsContext {
    /// `K8sContainerContext.__new__`: list entries converted to snake_case,
    /// `security_context` kept as given (the release hands it to the
    /// Kubernetes model as is, so it must already use attribute names).
    pub fn from_layer(layer: &Layer) -> Result<FieldsContext, Error> {
        let at = layer.at.as_str();
        let mut fields = layer.fields.clone();
        fields.volume_mounts = snake_list(
            &fields.volume_mounts,
            ids::VOLUME_MOUNT,
            at,
            "volume_mounts",
        )?;
        fields.volumes = snake_list(&fields.volumes, ids::VOLUME, at, "volumes")?;
        fields.env = snake_list(&fields.env, ids::ENV_VAR, at, "env")?;
        check_string_labels(&fields.labels, &path::key(at, "labels"))?;
        Ok(FieldsContext {
            fields,
            run_k8s_config: layer.run_k8s_config.clone(),
            namespace: layer.namespace.clone(),
            security_context_at: path::key(at, "security_context"),
        })
    }

    /// The merged `security_context` field reaches the Job unconverted when
    /// no user config sets one, so its keys must then be the Kubernetes
    /// model's attribute names ("Unexpected keys in model class").
    pub fn check_security_context(&self, rules: &Rules) -> Result<(), Error> {
        let user_sets = self
            .run_k8s_config
            .get(Section::ContainerConfig)
            .contains_key("security_context");
        if user_sets {
            return Ok(());
        }
        check_attribute_names(
            &self.fields.security_context,
            &self.security_context_at,
            rules,
        )
    }

    /// Layers folded in order, the first as the base.
    pub fn fold(layers: &[Layer]) -> Result<FieldsContext, Error> {
        let mut folded: Option<FieldsContext> = None;
        for layer in layers {
            let next = FieldsContext::from_layer(layer)?;
            folded = Some(match folded {
                None => next,
                Some(onto) => onto.merge(&next)?,
            });
        }
        FieldsContext::default().merge(&folded.unwrap_or_default())
    }

    /// `K8sContainerContext.merge`: lists unioned (equal entries once; the
    /// seed release ordered them by Python hash, which changes with
    /// `PYTHONHASHSEED`, so Runway keeps layer order as later releases do),
    /// labels overlaid, a scalar replaced when `other`'s is set, raw config
    /// merged with `other`'s behaviour.
    pub fn merge(&self, other: &FieldsContext) -> Result<FieldsContext, Error> {
        let (a, b) = (&self.fields, &other.fields);
        let fields = ContainerFields {
            image_pull_policy: set_or(&b.image_pull_policy, &a.image_pull_policy),
            image_pull_secrets: union(&a.image_pull_secrets, &b.image_pull_secrets),
            service_account_name: set_or(&b.service_account_name, &a.service_account_name),
            env_config_maps: union_strings(&a.env_config_maps, &b.env_config_maps),
            env_secrets: union_strings(&a.env_secrets, &b.env_secrets),
            env_vars: union_strings(&a.env_vars, &b.env_vars),
            volume_mounts: union(&a.volume_mounts, &b.volume_mounts),
            volumes: union(&a.volumes, &b.volumes),
            labels: overlay(&a.labels, &b.labels),
            resources: if b.resources.is_empty() {
                a.resources.clone()
            } else {
                b.resources.clone()
            },
            scheduler_name: set_or(&b.scheduler_name, &a.scheduler_name),
            security_context: if b.security_context.is_empty() {
                a.security_context.clone()
            } else {
                b.security_context.clone()
            },
            env: union(&a.env, &b.env),
        };
        let security_context_at = if b.security_context.is_empty() {
            &self.security_context_at
        } else {
            &other.security_context_at
        };
        Ok(FieldsContext {
            fields,
            run_k8s_config: merge_user_configs(&self.run_k8s_config, &other.run_k8s_config)?,
            namespace: set_or(&other.namespace, &self.namespace),
            security_context_at: security_context_at.clone(),
        })
    }

    /// `validate_user_k8s_config` (1.6.3): refuses fields outside the
    /// launcher's allowlist (a field counts as the raw config it stands for)
    /// and drops env entries whose names are not allowed; returns their names.
    pub fn apply_allowlists(
        &mut self,
        launcher: &Launcher,
        env: &dyn Env,
        rules: &Rules,
    ) -> Result<Vec<String>, Error> {
        if let Some(allow) = &launcher.only_allow_user_defined_k8s_config_fields {
            let at = "launcher.only_allow_user_defined_k8s_config_fields";
            let allow = Allowlist::from_config(allow, at)?;
            let mut used = base_user_config(&self.fields, env, "user")?;
            for section in Section::ALL {
                for key in self.run_k8s_config.get(section).keys() {
                    used.get_mut(section).insert(key.clone(), Value::Null);
                }
            }
            let ns_set = self.namespace.as_ref().is_some_and(|n| !n.is_empty());
            check_allowlist(&allow, &used, ns_set, rules.namespace_rule())?;
        }
        let Some(names) = &launcher.only_allow_user_defined_env_vars else {
            return Ok(Vec::new());
        };
        let allowed: BTreeSet<String> = names.iter().cloned().collect();
        let mut dropped = filter_env_vars(&allowed, &mut self.run_k8s_config, "container_config")?;
        let f = &mut self.fields;
        f.env_vars.retain(|spec| {
            let name = spec.split_once('=').map_or(spec.as_str(), |(k, _)| k);
            allowed.contains(name) || {
                dropped.push(name.to_owned());
                false
            }
        });
        f.env.retain(|entry| {
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            allowed.contains(name) || {
                dropped.push(name.to_owned());
                false
            }
        });
        dropped.sort();
        dropped.dedup();
        Ok(dropped)
    }

    /// `get_k8s_job_config`: the merged fields as the Job config.
    pub fn job_config(&self, job_image: Option<String>, launcher: &Launcher) -> JobConfig {
        let f = &self.fields;
        JobConfig {
            job_image: job_image.or_else(|| launcher.job_image.clone()),
            dagster_home: Some(launcher.dagster_home.clone()),
            image_pull_policy: Some(
                f.image_pull_policy
                    .clone()
                    .unwrap_or_else(|| "Always".into()),
            ),
            image_pull_secrets: f.image_pull_secrets.clone(),
            service_account_name: f.service_account_name.clone(),
            instance_config_map: Some(launcher.instance_config_map.clone()),
            postgres_password_secret: launcher.postgres_password_secret.clone(),
            env_config_maps: f.env_config_maps.clone(),
            env_secrets: f.env_secrets.clone(),
            env_vars: f.env_vars.clone(),
            volume_mounts: f.volume_mounts.clone(),
            volumes: f.volumes.clone(),
            labels: f.labels.clone(),
            resources: f.resources.clone(),
            scheduler_name: f.scheduler_name.clone(),
            security_context: f.security_context.clone(),
        }
    }
}

/// `other if other else self` for an optional string.
fn set_or(preferred: &Option<String>, fallback: &Option<String>) -> Option<String> {
    match preferred {
        Some(s) if !s.is_empty() => Some(s.clone()),
        _ => fallback.clone(),
    }
}

fn union(a: &[Value], b: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = a.iter().chain(b).cloned().collect();
    dedupe(&mut out);
    out
}

fn union_strings(a: &[String], b: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(a.len() + b.len());
    for s in a.iter().chain(b) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

fn overlay(a: &Map, b: &Map) -> Map {
    let mut out = a.clone();
    for (k, v) in b {
        out.insert(k.clone(), v.clone());
    }
    out
}

fn snake_list(items: &[Value], model: usize, at: &str, key: &str) -> Result<Vec<Value>, Error> {
    let at = path::key(at, key);
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let here = path::index(&at, i);
            let obj = v.as_object().ok_or_else(|| Error::WrongType {
                path: here.clone(),
                expected: "an object".into(),
                got: crate::k8s::config::error_kind(v),
            })?;
            Ok(Value::Object(snake_case_dict(model, obj, &here)?))
        })
        .collect()
}

/// The seed's `security_context` goes to `V1SecurityContext` unconverted:
/// camelCase keys fail its launch ("Unexpected keys in model class").
fn check_attribute_names(raw: &Map, at: &str, rules: &Rules) -> Result<(), Error> {
    let converted = snake_case_dict(ids::SECURITY_CONTEXT, raw, at)?;
    match first_renamed(raw, &converted, at) {
        Some((here, snake)) => Err(Error::Invalid {
            path: here,
            message: format!(
                "Dagster {} passes security_context to Kubernetes unconverted, so its keys \
                 must be attribute names: write {snake:?}",
                rules.version
            ),
        }),
        None => Ok(()),
    }
}

/// The first key of `raw` the conversion renamed, and its snake_case name.
fn first_renamed(raw: &Map, converted: &Map, at: &str) -> Option<(String, String)> {
    for (key, value) in raw {
        let here = path::key(at, key);
        match converted.get(key) {
            None => return Some((here, snake_case(key))),
            Some(Value::Object(inner)) => {
                if let Value::Object(raw_inner) = value {
                    if let Some(found) = first_renamed(raw_inner, inner, &here) {
                        return Some(found);
                    }
                }
            }
            Some(_) => {}
        }
    }
    None
}

/// `runAsUser` -> `run_as_user`, for the hint of a message.
fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    let mut prev_lower = false;
    for c in camel.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// `DagsterK8sJobConfig` takes string label values only.
fn check_string_labels(labels: &Map, at: &str) -> Result<(), Error> {
    match labels.iter().find(|(_, v)| !v.is_string()) {
        Some((k, v)) => Err(Error::WrongType {
            path: path::key(at, k),
            expected: "a string label value".into(),
            got: crate::k8s::config::error_kind(v),
        }),
        None => Ok(()),
    }
}
