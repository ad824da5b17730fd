//! Run and op tags that carry raw Kubernetes config: `dagster-k8s/config` (a
//! JSON string, with `merge_behavior`) and the legacy
//! `dagster-k8s/resource_requirements`.

use serde_json::Value;

use super::config::{implicit, process, Field, Mode, Ty};
use super::launcher::USER_DEFINED_SCHEMA;
use super::rules::Rules;
use super::{Env, Error};
use crate::k8s::config::{path, Map, Section, UserConfig};

pub const USER_DEFINED_K8S_CONFIG_KEY: &str = "dagster-k8s/config";
pub const K8S_RESOURCE_REQUIREMENTS_KEY: &str = "dagster-k8s/resource_requirements";

const RESOURCE_REQUIREMENTS_FIELDS: &[Field] = &[
    implicit("limits", Ty::Permissive(&[])),
    implicit("requests", Ty::Permissive(&[])),
];

/// An environment with nothing in it: tag config has no `*Source` fields.
struct NoEnv;
impl Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

/// `get_user_defined_k8s_config(tags)` of the caller's release.
pub fn user_config_from_tags(tags: &Map, at: &str, rules: &Rules) -> Result<UserConfig, Error> {
    let config_tag = tags.get(USER_DEFINED_K8S_CONFIG_KEY);
    let rr_tag = tags.get(K8S_RESOURCE_REQUIREMENTS_KEY);
    if config_tag.is_none() && rr_tag.is_none() {
        return Ok(UserConfig::default());
    }
    let mut dict = Map::new();
    if let Some(raw) = config_tag {
        let here = path::key(at, USER_DEFINED_K8S_CONFIG_KEY);
        let parsed = parse_json_tag(raw, &here)?;
        if !rules.merge_behavior_key && parsed.get("merge_behavior").is_some() {
            return Err(Error::NotInVersion {
                path: path::key(&here, "merge_behavior"),
                version: rules.version.to_string(),
                since: "1.5.3",
                fix: "remove it: every layer merges SHALLOW in this release",
            });
        }
        let validated = process(
            &Ty::Shape(USER_DEFINED_SCHEMA),
            &parsed,
            &here,
            &NoEnv,
            Mode::Validate,
        )?;
        if let Value::Object(o) = validated {
            dict = o;
        }
    }
    if let Some(raw) = rr_tag {
        let here = path::key(at, K8S_RESOURCE_REQUIREMENTS_KEY);
        let parsed = parse_json_tag(raw, &here)?;
        let rr = process(
            &Ty::Shape(RESOURCE_REQUIREMENTS_FIELDS),
            &parsed,
            &here,
            &NoEnv,
            Mode::Validate,
        )?;
        // merge_dicts(container_config, {"resources": ...}): replaces wholesale.
        let container = dict
            .entry("container_config")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(c) = container {
            c.insert("resources".into(), rr);
        }
    }
    Ok(UserConfig::from_dict_as(
        &dict,
        &path::key(at, USER_DEFINED_K8S_CONFIG_KEY),
        &Section::ALL[..6],
        rules.merge_default(),
    )?)
}

/// Tags are strings; Dagster JSON-decodes these two.
fn parse_json_tag(raw: &Value, at: &str) -> Result<Value, Error> {
    let Value::String(s) = raw else {
        return Err(Error::WrongType {
            path: at.to_owned(),
            expected: "a JSON string (tag values are strings)".into(),
            got: crate::k8s::config::error_kind(raw),
        });
    };
    serde_json::from_str(s).map_err(|e| Error::Invalid {
        path: at.to_owned(),
        message: format!("the tag value is not valid JSON ({e})"),
    })
}

/// Dagster requires every tag value to be a string.
pub fn check_tags(tags: &Map, at: &str) -> Result<(), Error> {
    match tags.iter().find(|(_, v)| !v.is_string()) {
        Some((k, v)) => Err(Error::WrongType {
            path: path::key(at, k),
            expected: "a string tag value".into(),
            got: crate::k8s::config::error_kind(v),
        }),
        None => Ok(()),
    }
}
