use thiserror::Error;

/// Why a Dagster-side input (launcher config, container context, tags, task
/// kwargs) was refused. Every message names the field path and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error("{path}: unknown key (expected one of: {expected})")]
    UnknownKey { path: String, expected: String },
    #[error("{path}: missing required key {key:?}")]
    Missing { path: String, key: String },
    #[error("{path}: must not be null (expected {expected})")]
    Null { path: String, expected: String },
    #[error("{path}: expected {expected}, got {got}")]
    WrongType {
        path: String,
        expected: String,
        got: String,
    },
    #[error(
        "{path}: environment variable {var:?} is not set in the launcher's environment; \
         set it, or give the value literally"
    )]
    EnvVarNotSet { path: String, var: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error(
        "{path}: Dagster {version} does not accept this key (it arrived in Dagster {since}); {fix}"
    )]
    NotInVersion {
        path: String,
        version: String,
        since: &'static str,
        fix: &'static str,
    },
    #[error(transparent)]
    K8s(#[from] crate::k8s::config::Error),
}
