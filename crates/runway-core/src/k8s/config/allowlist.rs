//! `only_allow_user_defined_k8s_config_fields` and `only_allow_user_defined_env_vars`:
//! limits on what code locations and run tags may set (the User layer).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::user::{Section, UserConfig};
use super::{path, Error, Map};

/// The launcher's allowlist, with section keys already in snake_case.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allowlist {
    sections: BTreeMap<&'static str, BTreeMap<String, bool>>,
    namespace: bool,
}

impl Allowlist {
    /// Builds the allowlist from the processed launcher config value. Keys are
    /// converted with the section's model but not validated beyond that, as
    /// `_snake_case_allowed_fields` does.
    pub fn from_config(config: &Map, at: &str) -> Result<Allowlist, Error> {
        let mut list = Allowlist::default();
        for (key, value) in config {
            let here = path::key(at, key);
            if key == "namespace" {
                list.namespace = value.as_bool().unwrap_or(false);
                continue;
            }
            let section = Section::from_name(key).ok_or_else(|| Error::UnknownKey {
                path: here.clone(),
                key: key.clone(),
                model: "allowlist",
                expected: "container_config, pod_spec_config, pod_template_spec_metadata, \
                           job_metadata, job_spec_config, namespace"
                    .into(),
            })?;
            let flags = value.as_object().cloned().unwrap_or_default();
            // Only the keys are converted: values are booleans, so convert a
            // stand-in with null values and read the flags back by position.
            let keys_only: Map = flags.keys().map(|k| (k.clone(), Value::Null)).collect();
            let converted = snake_keys(section, &keys_only, &here)?;
            let mut entry = BTreeMap::new();
            for ((_, flag), snake) in flags.iter().zip(converted) {
                entry.insert(snake, flag.as_bool().unwrap_or(false));
            }
            list.sections.insert(section.name(), entry);
        }
        Ok(list)
    }

    fn allows(&self, section: Section, field: &str) -> bool {
        self.sections
            .get(section.name())
            .and_then(|s| s.get(field))
            .copied()
            .unwrap_or(false)
    }
}

/// Converts only the top-level keys, keeping their order.
fn snake_keys(section: Section, keys: &Map, at: &str) -> Result<Vec<String>, Error> {
    let model = super::schema::Model::get(section.model());
    let mut out = Vec::with_capacity(keys.len());
    for key in keys.keys() {
        let field = model
            .by_camel(key)
            .or_else(|| model.by_snake(key))
            .ok_or_else(|| Error::UnknownKey {
                path: path::key(at, key),
                key: key.clone(),
                model: model.name,
                expected: model.snake_names().join(", "),
            })?;
        if field.snake != key && keys.contains_key(field.snake) {
            return Err(Error::BothForms {
                path: at.to_owned(),
                camel: key.clone(),
                snake: field.snake.to_owned(),
                model: model.name,
            });
        }
        out.push(field.snake.to_owned());
    }
    Ok(out)
}

/// How a User layer's namespace is checked against the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceRule {
    /// The allowlist's own `namespace` key (Dagster 1.8.11 on).
    Key,
    /// As the `namespace` field of `pod_template_spec_metadata` and of
    /// `job_metadata` (before 1.8.11).
    MetadataFields,
}

/// Refuses a User layer that sets fields outside the allowlist.
pub fn check_allowlist(
    allowlist: &Allowlist,
    user: &UserConfig,
    namespace_set: bool,
    namespace_rule: NamespaceRule,
) -> Result<(), Error> {
    let mut disallowed = Vec::new();
    for section in Section::ALL {
        let used: BTreeSet<&String> = user.get(section).keys().collect();
        for field in used {
            if !allowlist.allows(section, field) {
                disallowed.push(format!("{}.{field}", section.name()));
            }
        }
    }
    match (namespace_set, namespace_rule) {
        (false, _) => {}
        (true, NamespaceRule::Key) => {
            if !allowlist.namespace {
                disallowed.push("namespace".into());
            }
        }
        (true, NamespaceRule::MetadataFields) => {
            for section in [Section::PodTemplateSpecMetadata, Section::JobMetadata] {
                if !allowlist.allows(section, "namespace") {
                    disallowed.push(format!("{}.namespace", section.name()));
                }
            }
        }
    }
    if disallowed.is_empty() {
        Ok(())
    } else {
        Err(Error::NotAllowed {
            fields: disallowed.join(", "),
        })
    }
}

/// Drops User-layer env entries whose names are not allowed; returns the
/// names dropped (Dagster logs them as a warning).
pub fn filter_env_vars(
    allowed: &BTreeSet<String>,
    user: &mut UserConfig,
    at: &str,
) -> Result<Vec<String>, Error> {
    let container = user.get_mut(Section::ContainerConfig);
    let Some(Value::Array(env)) = container.get_mut("env") else {
        return Ok(Vec::new());
    };
    let mut dropped = Vec::new();
    let mut kept = Vec::with_capacity(env.len());
    for (i, entry) in env.drain(..).enumerate() {
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::MissingRequired {
                path: path::index(&path::key(at, "env"), i),
                model: "V1EnvVar",
                field: "name",
            })?
            .to_owned();
        if allowed.contains(&name) {
            kept.push(entry);
        } else {
            dropped.push(name);
        }
    }
    *env = kept;
    Ok(dropped)
}
