//! The serdes values the step worker writes: `DagsterEvent`s (engine events
//! and STEP_FAILURE) and the `EventLogEntry` rows that carry them, built as the
//! JSON `serialize_value` produces so Dagster reads them back unchanged.

use serde_json::{json, Map, Number, Value};

use super::pyfmt;

/// The executor class dagster-celery-k8s names its engine events after.
pub const EXECUTOR: &str = "CeleryK8sJobExecutor";
/// `DELEGATE_MARKER`: the marker that times a step's wait in the Celery queue.
pub const QUEUE_WAIT_MARKER: &str = "celery_queue_wait";
/// Python's `logging` levels as the event log stores them.
pub const INFO: u8 = 20;
pub const ERROR: u8 = 40;

/// One metadata value of an `EngineEventData`, as `normalize_metadata` turns
/// the Python value into an entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Meta {
    Text(String),
    Null,
}

impl Meta {
    pub fn text(s: impl Into<String>) -> Meta {
        Meta::Text(s.into())
    }

    /// `str(value)` where the Python passes it through `str()`, and the plain
    /// value (None stays null) where it does not.
    pub fn opt(s: Option<&str>) -> Meta {
        s.map_or(Meta::Null, Meta::text)
    }

    fn entry(&self, label: &str) -> Value {
        let data = match self {
            Meta::Text(t) => json!({"__class__": "TextMetadataEntryData", "text": t}),
            Meta::Null => json!({"__class__": "NullMetadataEntryData"}),
        };
        json!({
            "__class__": "EventMetadataEntry",
            "description": null,
            "entry_data": data,
            "label": label,
        })
    }
}

/// `SerializableErrorInfo` for an exception of class `cls` in `module`, as
/// `serializable_error_info_from_exc_info` renders it (no Python stack: the
/// error arose in Runway).
pub fn error_info(module: &str, cls: &str, message: &str) -> Value {
    let qualified = if module.is_empty() || module == "builtins" {
        cls.to_owned()
    } else {
        format!("{module}.{cls}")
    };
    json!({
        "__class__": "SerializableErrorInfo",
        "cause": null,
        "cls_name": cls,
        "context": null,
        "message": format!("{qualified}: {message}\n"),
        "stack": [],
    })
}

/// `DagsterEvent.engine_event(...)` as `instance.report_engine_event` makes
/// it for `CeleryK8sJobExecutor`.
pub fn engine_event(
    job_name: &str,
    step_key: &str,
    message: &str,
    metadata: &[(&str, Meta)],
    marker_end: Option<&str>,
    error: Option<Value>,
) -> Value {
    let entries: Vec<Value> = metadata.iter().map(|(l, m)| m.entry(l)).collect();
    dagster_event(
        "ENGINE_EVENT",
        job_name,
        step_key,
        Value::String(format!("[{EXECUTOR}] {message}")),
        json!({
            "__class__": "EngineEventData",
            "error": error.unwrap_or(Value::Null),
            "marker_end": marker_end,
            "marker_start": null,
            "metadata_entries": entries,
        }),
    )
}

/// `construct_step_failure_event_and_handle`'s STEP_FAILURE: a framework
/// error labelled `K8sError`.
pub fn step_failure(job_name: &str, step_key: &str, error: Value) -> Value {
    dagster_event(
        "STEP_FAILURE",
        job_name,
        step_key,
        Value::Null,
        json!({
            "__class__": "StepFailureData",
            "error": error,
            "error_source": {"__enum__": "ErrorSource.FRAMEWORK_ERROR"},
            "user_failure_data": {
                "__class__": "UserFailureData",
                "description": null,
                "label": "K8sError",
                "metadata_entries": [],
            },
        }),
    )
}

fn dagster_event(
    event_type: &str,
    job_name: &str,
    step_key: &str,
    message: Value,
    data: Value,
) -> Value {
    json!({
        "__class__": "DagsterEvent",
        "event_specific_data": data,
        "event_type_value": event_type,
        "logging_tags": {},
        "message": message,
        "pid": null,
        "pipeline_name": job_name,
        "solid_handle": null,
        "step_handle": null,
        "step_key": step_key,
        "step_kind_value": null,
    })
}

/// The `EventLogEntry` the instance stores for a DagsterEvent.
pub fn log_entry(
    run_id: &str,
    event: &Value,
    level: u8,
    user_message: &str,
    timestamp: f64,
) -> Value {
    let field = |k: &str| event.get(k).cloned().unwrap_or(Value::Null);
    let mut m = Map::new();
    m.insert("__class__".into(), "EventLogEntry".into());
    m.insert("dagster_event".into(), event.clone());
    m.insert("error_info".into(), Value::Null);
    m.insert("level".into(), level.into());
    m.insert("message".into(), user_message.into());
    m.insert("pipeline_name".into(), field("pipeline_name"));
    m.insert("run_id".into(), run_id.into());
    m.insert("step_key".into(), field("step_key"));
    m.insert(
        "timestamp".into(),
        Number::from_f64(timestamp).map_or(Value::Null, Value::Number),
    );
    m.insert("user_message".into(), user_message.into());
    Value::Object(m)
}

/// `serialize_value`.
pub fn serialize(v: &Value) -> String {
    pyfmt::dumps_sorted(v)
}

/// The `event_type_value` of a serialized DagsterEvent.
pub fn event_type(serialized: &str) -> Option<String> {
    let v: Value = serde_json::from_str(serialized).ok()?;
    v.get("event_type_value")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Printed by dagster 1.13.27: `serialize_value` of the event
    // `instance.report_engine_event` returns.
    const ENGINE: &str = r#"{"__class__": "DagsterEvent", "event_specific_data": {"__class__": "EngineEventData", "error": null, "marker_end": "celery_queue_wait", "marker_start": null, "metadata_entries": [{"__class__": "EventMetadataEntry", "description": null, "entry_data": {"__class__": "TextMetadataEntryData", "text": "a"}, "label": "Step key"}, {"__class__": "EventMetadataEntry", "description": null, "entry_data": {"__class__": "NullMetadataEntryData"}, "label": "Job image"}, {"__class__": "EventMetadataEntry", "description": null, "entry_data": {"__class__": "TextMetadataEntryData", "text": "[]"}, "label": "Image pull secrets"}]}, "event_type_value": "ENGINE_EVENT", "logging_tags": {}, "message": "[CeleryK8sJobExecutor] Executing step \"a\" in Kubernetes job x.", "pid": null, "pipeline_name": "my_job", "solid_handle": null, "step_handle": null, "step_key": "a", "step_kind_value": null}"#;

    #[test]
    fn engine_event_is_byte_identical() {
        let ev = engine_event(
            "my_job",
            "a",
            "Executing step \"a\" in Kubernetes job x.",
            &[
                ("Step key", Meta::text("a")),
                ("Job image", Meta::Null),
                ("Image pull secrets", Meta::text("[]")),
            ],
            Some(QUEUE_WAIT_MARKER),
            None,
        );
        assert_eq!(serialize(&ev), ENGINE);
        assert_eq!(event_type(ENGINE).as_deref(), Some("ENGINE_EVENT"));
    }

    #[test]
    fn log_entry_wraps_the_event() {
        let ev = engine_event("j", "s", "m", &[], None, None);
        let entry = log_entry("r1", &ev, INFO, "", 1796185385.8184555);
        let text = serialize(&entry);
        assert!(text.starts_with(r#"{"__class__": "EventLogEntry", "dagster_event": {"#));
        assert!(text.ends_with(
            r#""error_info": null, "level": 20, "message": "", "pipeline_name": "j", "run_id": "r1", "step_key": "s", "timestamp": 1796185385.8184555, "user_message": ""}"#
        ));
    }

    #[test]
    fn step_failure_carries_the_k8s_error() {
        let err = error_info("dagster_k8s.client", "DagsterK8sError", "boom");
        let ev = step_failure("j", "s", err);
        assert_eq!(ev["event_type_value"], "STEP_FAILURE");
        assert_eq!(ev["message"], Value::Null);
        assert_eq!(
            ev["event_specific_data"]["error"]["message"],
            "dagster_k8s.client.DagsterK8sError: boom\n"
        );
        assert_eq!(
            ev["event_specific_data"]["user_failure_data"]["label"],
            "K8sError"
        );
    }
}
