//! `runway serve`'s settings: flags, then `RUNWAY_*` environment variables,
//! then a YAML config file (`--config`), then defaults. The file's keys are
//! the flags' names (`kube-qps: 50`); an unknown key is an error that lists
//! the valid ones.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, ValueEnum};
use serde_yaml::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("reading config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum HealthModeArg {
    /// dagster-k8s's rules plus the pod-level diagnosis (the client may ask for compat per call).
    #[default]
    Diagnose,
    /// Every answer exactly as dagster-k8s gives it, whatever the client asks.
    DagsterCompat,
}

/// The Kubernetes client settings `runway serve` and `runway worker` share.
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// Kubeconfig file; without it: KUBECONFIG, ~/.kube/config, then the in-cluster service account.
    #[arg(long, env = "RUNWAY_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long, env = "RUNWAY_KUBE_CONTEXT")]
    pub kube_context: Option<String>,
    /// Namespaces whose Jobs this server creates and watches (comma-separated or repeated).
    #[arg(
        long = "namespace",
        env = "RUNWAY_NAMESPACE",
        value_delimiter = ',',
        default_value = "default"
    )]
    pub namespaces: Vec<String>,
    /// Client-side rate limit, requests per second shared by all Kubernetes calls (0: none).
    #[arg(long, env = "RUNWAY_KUBE_QPS", default_value_t = 20.0)]
    pub kube_qps: f64,
    /// Burst above the rate limit.
    #[arg(long, env = "RUNWAY_KUBE_BURST", default_value_t = 30)]
    pub kube_burst: u32,
    /// Requests that may wait for the rate limiter; beyond it calls get RESOURCE_EXHAUSTED with a retry hint.
    #[arg(long, env = "RUNWAY_KUBE_QUEUE", default_value_t = 1000)]
    pub kube_queue: usize,
    /// Kubernetes requests in flight at once.
    #[arg(long, env = "RUNWAY_KUBE_MAX_IN_FLIGHT", default_value_t = 64)]
    pub kube_max_in_flight: usize,
    /// Attempts per Kubernetes request on 429, 5xx and connection errors.
    #[arg(long, env = "RUNWAY_KUBE_ATTEMPTS", default_value_t = 6)]
    pub kube_attempts: u32,
    /// First retry backoff in milliseconds (doubling, jittered, capped at --kube-backoff-max-ms).
    #[arg(long, env = "RUNWAY_KUBE_BACKOFF_MS", default_value_t = 100)]
    pub kube_backoff_ms: u64,
    #[arg(long, env = "RUNWAY_KUBE_BACKOFF_MAX_MS", default_value_t = 10_000)]
    pub kube_backoff_max_ms: u64,
    /// Timeout of one Kubernetes call, retries included, in seconds.
    #[arg(long, env = "RUNWAY_KUBE_TIMEOUT_SECS", default_value_t = 30)]
    pub kube_timeout_secs: u64,
}

impl KubeArgs {
    pub fn validate(&self) -> Result<(), String> {
        if self.namespaces.is_empty() || self.namespaces.iter().any(|n| n.trim().is_empty()) {
            return Err("--namespace: give at least one non-empty namespace".into());
        }
        if !(self.kube_qps >= 0.0 && self.kube_qps.is_finite()) {
            return Err("--kube-qps: give a rate >= 0 (0 lifts the limit)".into());
        }
        if self.kube_attempts == 0 {
            return Err("--kube-attempts: give at least 1".into());
        }
        Ok(())
    }
}

/// `runway serve` flags. Each also reads `RUNWAY_<NAME>` and the config file.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// YAML file with any of these settings, keyed by flag name.
    #[arg(long, env = "RUNWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC address.
    #[arg(long, env = "RUNWAY_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
    /// HTTP address of /metrics, /live and /ready.
    #[arg(long, env = "RUNWAY_HTTP_LISTEN", default_value = "0.0.0.0:9090")]
    pub http_listen: SocketAddr,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The Celery broker `SubmitStep` publishes to (none: SubmitStep is refused).
    #[arg(long, env = "RUNWAY_BROKER_URL")]
    pub broker_url: Option<String>,
    /// The Redis result backend `WatchStep` reads (`redis://host:port/db`; none: WatchStep is refused).
    #[arg(long, env = "RUNWAY_RESULT_BACKEND")]
    pub result_backend: Option<String>,
    /// How health is judged.
    #[arg(long, env = "RUNWAY_HEALTH_MODE", value_enum, default_value_t = HealthModeArg::Diagnose)]
    pub health_mode: HealthModeArg,
    /// Seconds a pod may stay Unschedulable before its run counts as FAILED.
    #[arg(long, env = "RUNWAY_UNSCHEDULABLE_GRACE_SECS", default_value_t = 120)]
    pub unschedulable_grace_secs: i64,
    /// Transitions a WatchRuns consumer may fall behind before it is cut off.
    #[arg(long, env = "RUNWAY_WATCH_BUFFER", default_value_t = 4096)]
    pub watch_buffer: usize,
    /// PEM certificate and key of the gRPC port (TLS).
    #[arg(long, env = "RUNWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "RUNWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: clients must present a certificate it signed (mTLS).
    #[arg(long, env = "RUNWAY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// File holding the bearer token clients must send.
    #[arg(long, env = "RUNWAY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "RUNWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// OTLP gRPC endpoint for traces (also OTEL_EXPORTER_OTLP_ENDPOINT); none: no traces.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Seconds in-flight calls get to finish after SIGTERM.
    #[arg(long, env = "RUNWAY_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
}

/// Env var name of every flag that has one, by flag name.
fn flag_envs(cmd: &clap::Command) -> Vec<(String, String)> {
    cmd.get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_owned();
            let env = a.get_env()?.to_str()?.to_owned();
            Some((long, env))
        })
        .collect()
}

#[derive(Debug, clap::Parser)]
struct ServeArgsParser {
    #[command(flatten)]
    args: ServeArgs,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The environment a config file adds: each key becomes its flag's env var
/// unless that variable is already set (flags and env beat the file).
pub fn file_env(
    path: &std::path::Path,
    existing: &dyn Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, Error> {
    file_env_for(
        &<ServeArgsParser as CommandFactory>::command(),
        path,
        existing,
    )
}

/// [`file_env`] for the flags of `cmd`.
pub fn file_env_for(
    cmd: &clap::Command,
    path: &std::path::Path,
    existing: &dyn Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, Error> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: shown.clone(),
        source,
    })?;
    let invalid = |message: String| Error::Invalid {
        path: shown.clone(),
        message,
    };
    let doc: Value =
        serde_yaml::from_str(&text).map_err(|e| invalid(format!("not valid YAML: {e}")))?;
    let map = match doc {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(m) => m,
        _ => {
            return Err(invalid(
                "expected a mapping of setting names to values".into(),
            ))
        }
    };
    let envs = flag_envs(cmd);
    let mut out = Vec::new();
    for (k, v) in map {
        let key = k
            .as_str()
            .ok_or_else(|| invalid("setting names must be strings".into()))?
            .replace('_', "-");
        let Some((_, env)) = envs
            .iter()
            .find(|(long, _)| *long == key && long != "config")
        else {
            let names: Vec<&str> = envs
                .iter()
                .map(|(l, _)| l.as_str())
                .filter(|l| *l != "config")
                .collect();
            return Err(invalid(format!(
                "unknown setting {key:?}; valid settings: {}",
                names.join(", ")
            )));
        };
        let value = match &v {
            Value::Sequence(items) => items
                .iter()
                .map(|i| {
                    scalar(i).ok_or_else(|| invalid(format!("{key}: list items must be scalars")))
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            other => scalar(other)
                .ok_or_else(|| invalid(format!("{key}: expected a scalar or a list")))?,
        };
        if !existing(env) {
            out.push((env.clone(), value));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_map_to_env_and_unknown_keys_are_named() {
        let dir = std::env::temp_dir().join(format!("runway-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("serve.yaml");
        std::fs::write(
            &path,
            "kube_qps: 50\nnamespace: [a, b]\nlisten: 127.0.0.1:1\n",
        )
        .unwrap();
        let env = file_env(&path, &|name| name == "RUNWAY_LISTEN").unwrap();
        assert_eq!(
            env,
            vec![
                ("RUNWAY_KUBE_QPS".to_owned(), "50".to_owned()),
                ("RUNWAY_NAMESPACE".to_owned(), "a,b".to_owned()),
            ]
        );
        std::fs::write(&path, "kube-qpz: 5\n").unwrap();
        let err = file_env(&path, &|_| false).unwrap_err().to_string();
        assert!(err.contains("unknown setting \"kube-qpz\""), "{err}");
        assert!(err.contains("kube-qps"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
