//! The packed `ExecuteStepArgs` inside the kwargs: what the step's
//! `dagster api execute_step` reads, and the names it derives.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use super::super::rules::Rules;
use super::super::{names, pyfmt, Error};
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

/// The step's `ExecuteStepArgs` as `unpack_value` then back gives them (the
/// fields the release knows, with its defaults, under their storage names),
/// borrowed from the message where nothing changes: the step input is
/// written from them and the kwargs are never copied for it.
pub(super) struct StepArgs<'a> {
    // Sorted by key bytes: the order Python's `sort_keys` writes.
    fields: BTreeMap<&'static str, Cow<'a, Value>>,
}

impl StepArgs<'_> {
    pub(super) fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key).map(|v| v.as_ref())
    }

    /// `json.dumps(..., sort_keys=True)` of the packed args, with the length
    /// of its start that every step of a deployment shares: the class name
    /// and the instance ref, the first two keys in sorted order.
    pub(super) fn dumps(&self) -> (String, usize) {
        pyfmt::dumps_sorted_entries(
            self.fields.iter().map(|(k, v)| (*k, v.as_ref())),
            "instance_ref",
        )
    }
}

pub(super) fn normalize_step_args<'a>(
    packed: &'a Map,
    at: &str,
    rules: &Rules,
) -> Result<StepArgs<'a>, Error> {
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
    let mut fields = BTreeMap::new();
    fields.insert(
        "__class__",
        Cow::Owned(Value::String("ExecuteStepArgs".into())),
    );
    for key in [
        "pipeline_origin",
        "pipeline_run_id",
        "step_keys_to_execute",
        "retry_mode",
        "known_state",
    ] {
        fields.insert(
            key,
            packed
                .get(key)
                .map_or(Cow::Owned(Value::Null), Cow::Borrowed),
        );
    }
    fields.insert(
        "instance_ref",
        instance_ref(packed.get("instance_ref"), rules),
    );
    let flags: &[&'static str] = if rules.step_print_events {
        &["should_verify_step", "print_serialized_events"]
    } else {
        &["should_verify_step"]
    };
    for &key in flags {
        let v = match packed.get(key) {
            None | Some(Value::Null) => Cow::Owned(Value::Bool(false)),
            Some(v) => Cow::Borrowed(v),
        };
        fields.insert(key, v);
    }
    Ok(StepArgs { fields })
}

/// InstanceRef gained `defs_state_storage_data` in 1.11.8: older releases
/// drop it on unpacking, newer ones fill in its default. Copied only when
/// the release's form differs from the message's.
fn instance_ref<'a>(value: Option<&'a Value>, rules: &Rules) -> Cow<'a, Value> {
    const FIELD: &str = "defs_state_storage_data";
    let Some(value) = value else {
        return Cow::Owned(Value::Null);
    };
    let Value::Object(map) = value else {
        return Cow::Borrowed(value);
    };
    match (rules.defs_state_storage_data, map.contains_key(FIELD)) {
        (true, false) => {
            let mut map = map.clone();
            map.insert(FIELD.into(), Value::Null);
            Cow::Owned(Value::Object(map))
        }
        (false, true) => {
            let mut map = map.clone();
            map.remove(FIELD);
            Cow::Owned(Value::Object(map))
        }
        _ => Cow::Borrowed(value),
    }
}

/// The string `value` of field `key` of the object at `at`.
pub(super) fn str_field(value: Option<&Value>, key: &str, at: &str) -> Result<String, Error> {
    match value {
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

/// The object `value` of field `key` of the object at `at`; missing when
/// it is not one.
pub(super) fn object_field<'a>(
    value: Option<&'a Value>,
    key: &str,
    at: &str,
) -> Result<&'a Map, Error> {
    value
        .and_then(Value::as_object)
        .ok_or_else(|| Error::Missing {
            path: at.to_owned(),
            key: key.to_owned(),
        })
}

/// `_get_entry_point`: the origin's entry point, else `[python, -m, dagster]`.
pub(super) fn entry_point(origin: &Map, at: &str) -> Result<Vec<String>, Error> {
    let repo = object_field(origin.get("repository_origin"), "repository_origin", at)?;
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
    fn the_instance_ref_takes_the_form_of_the_release_and_is_copied_only_then() {
        let kw = kwargs();
        let mut packed = kw["execute_step_args_packed"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let field = "defs_state_storage_data";
        let newest = Target::newest().rules;
        let old = Target::parse("1.1.9").map(|t| t.rules);
        let Ok(old) = old else {
            panic!("1.1.9 is a supported release");
        };
        let ir = |packed: &Map, rules: &Rules| -> (bool, bool) {
            let args = normalize_step_args(packed, "at", rules).unwrap_or_else(|e| panic!("{e}"));
            let fields = &args.fields;
            let copied = matches!(fields["instance_ref"], Cow::Owned(_));
            let has = args
                .get("instance_ref")
                .and_then(Value::as_object)
                .is_some_and(|m| m.contains_key(field));
            (has, copied)
        };
        // The fixture carries the field: borrowed as it is for the newest
        // release, copied without it for 1.1.9.
        assert_eq!(ir(&packed, &newest), (true, false));
        assert_eq!(ir(&packed, &old), (false, true));
        // Without it: copied with its default for the newest, borrowed for 1.1.9.
        if let Some(Value::Object(m)) = packed.get_mut("instance_ref") {
            m.remove(field);
        }
        assert_eq!(ir(&packed, &newest), (true, true));
        assert_eq!(ir(&packed, &old), (false, false));
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
