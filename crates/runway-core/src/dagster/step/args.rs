//! The packed `ExecuteStepArgs` inside the kwargs: what the step's
//! `dagster api execute_step` reads, and the names it derives.

use serde_json::Value;

use super::super::rules::Rules;
use super::super::{names, Error};
use super::StepTask;
use crate::k8s::config::{path, Map};

impl StepTask {
    /// The step Job's name alone, read straight from the kwargs: the name
    /// [`StepTask::from_map`] gives a task it accepts, without rendering the
    /// step's input (`inspect reserved` shows it before the step starts).
    pub fn job_name_of(kwargs: &Map) -> Option<String> {
        let packed = kwargs.get("execute_step_args_packed")?.as_object()?;
        let run_id = packed.get("pipeline_run_id")?.as_str()?;
        let [Value::String(step_key)] = packed.get("step_keys_to_execute")?.as_array()?.as_slice()
        else {
            return None;
        };
        let attempt = retry_attempt(packed.get("known_state"), step_key);
        Some(names::step_job_name(run_id, step_key, attempt))
    }
}

/// The retries the step has had (`known_state.previous_retry_attempts`).
pub(super) fn retry_attempt(known_state: Option<&Value>, step_key: &str) -> u64 {
    known_state
        .and_then(|k| k.get("previous_retry_attempts"))
        .and_then(|p| p.get(step_key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// `unpack_value` then back: the fields the release's ExecuteStepArgs knows,
/// with its defaults, under their storage names.
pub(super) fn normalize_step_args(mut packed: Map, at: &str, rules: &Rules) -> Result<Map, Error> {
    match packed.get("__class__").and_then(Value::as_str) {
        Some("ExecuteStepArgs") => {}
        _ => {
            return Err(Error::Invalid {
                path: path::key(at, "__class__"),
                message: "expected a packed ExecuteStepArgs (\"__class__\": \"ExecuteStepArgs\")"
                    .into(),
            })
        }
    }
    let mut out = Map::new();
    out.insert("__class__".into(), Value::String("ExecuteStepArgs".into()));
    for key in [
        "pipeline_origin",
        "pipeline_run_id",
        "step_keys_to_execute",
        "instance_ref",
        "retry_mode",
        "known_state",
    ] {
        out.insert(key.into(), packed.remove(key).unwrap_or(Value::Null));
    }
    let flags: &[&str] = if rules.step_print_events {
        &["should_verify_step", "print_serialized_events"]
    } else {
        &["should_verify_step"]
    };
    for &key in flags {
        let v = match packed.get(key) {
            None | Some(Value::Null) => Value::Bool(false),
            Some(v) => v.clone(),
        };
        out.insert(key.into(), v);
    }
    if let Some(Value::Object(instance_ref)) = out.get_mut("instance_ref") {
        // InstanceRef gained this field in 1.11.8: older releases drop it on
        // unpacking, newer ones fill in its default.
        if rules.defs_state_storage_data {
            instance_ref
                .entry("defs_state_storage_data")
                .or_insert(Value::Null);
        } else {
            instance_ref.remove("defs_state_storage_data");
        }
    }
    Ok(out)
}

pub(super) fn str_field(map: &Map, key: &str, at: &str) -> Result<String, Error> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(Error::WrongType {
            path: path::key(at, key),
            expected: "a string".into(),
            got: crate::k8s::config::error_kind(other),
        }),
        None => Err(Error::Missing {
            path: at.to_owned(),
            key: key.to_owned(),
        }),
    }
}

/// `_get_entry_point`: the origin's entry point, else `[python, -m, dagster]`.
pub(super) fn entry_point(origin: &Map, at: &str) -> Result<Vec<String>, Error> {
    let repo = origin
        .get("repository_origin")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::Missing {
            path: at.to_owned(),
            key: "repository_origin".into(),
        })?;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let from_entry = repo.get("entry_point").map(strings).unwrap_or_default();
    if !from_entry.is_empty() {
        return Ok(from_entry);
    }
    let python = repo
        .get("executable_path")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Missing {
            path: path::key(at, "repository_origin"),
            key: "executable_path".into(),
        })?;
    Ok(vec![python.to_owned(), "-m".into(), "dagster".into()])
}

#[cfg(test)]
mod tests {
    use super::super::super::version::Target;
    use super::*;

    fn kwargs() -> Map {
        let case: Value = serde_json::from_str(include_str!(
            "../../../../../tests/fixtures/cases/step_basic.json"
        ))
        .unwrap_or_default();
        case["task_kwargs"].as_object().cloned().unwrap_or_default()
    }

    fn rendered_name(kwargs: &Map) -> Option<String> {
        StepTask::from_map(kwargs, &Target::newest())
            .ok()
            .map(|t| t.k8s_job_name)
    }

    #[test]
    fn the_name_read_alone_is_the_name_the_task_renders_under() {
        let mut kw = kwargs();
        let first = StepTask::job_name_of(&kw);
        assert!(first.is_some(), "the fixture names one step");
        assert_eq!(first, rendered_name(&kw));

        // A retried step gets another Job, and both readings agree on it.
        kw["execute_step_args_packed"]["known_state"]["previous_retry_attempts"] =
            serde_json::json!({"example_one": 2});
        let retried = StepTask::job_name_of(&kw);
        assert_ne!(retried, first);
        assert_eq!(retried, rendered_name(&kw));
    }

    #[test]
    fn kwargs_naming_no_single_step_name_no_job() {
        let mut kw = kwargs();
        kw["execute_step_args_packed"]["step_keys_to_execute"] = serde_json::json!(["a", "b"]);
        assert_eq!(StepTask::job_name_of(&kw), None);
        assert_eq!(rendered_name(&kw), None);
        kw.remove("execute_step_args_packed");
        assert_eq!(StepTask::job_name_of(&kw), None);
    }
}
