use thiserror::Error;

/// Why raw Kubernetes config was refused. Every variant names the field path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error(
        "{path}: unknown key {key:?} for Kubernetes model {model} (expected one of: {expected})"
    )]
    UnknownKey {
        path: String,
        key: String,
        model: &'static str,
        expected: String,
    },
    #[error(
        "{path}: both {camel:?} and {snake:?} are given; {model} takes one of them, keep only one"
    )]
    BothForms {
        path: String,
        camel: String,
        snake: String,
        model: &'static str,
    },
    #[error("{path}: expected {expected}, got {got}")]
    WrongType {
        path: String,
        expected: String,
        got: String,
    },
    #[error("{path}: {model} requires field {field:?}")]
    MissingRequired {
        path: String,
        model: &'static str,
        field: &'static str,
    },
    #[error("{path}: cannot merge {from} onto {onto}; both layers must use the same type here")]
    MergeConflict {
        path: String,
        onto: &'static str,
        from: &'static str,
    },
    #[error(
        "Attempted to create a pod with fields that violated the allowed list: {fields} \
         (allow them in only_allow_user_defined_k8s_config_fields, or remove them from the \
         code location's container context and the run's tags)"
    )]
    NotAllowed { fields: String },
    #[error("{path}: {field} is set by the API server and cannot be given in config; remove it")]
    ServerSet { path: String, field: &'static str },
}

/// A short description of a JSON value's type for error messages.
pub(crate) fn kind_of(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => "a string".into(),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}
