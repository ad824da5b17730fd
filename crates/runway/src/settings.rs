//! Settings both services share, and how they are layered: flags, then
//! `RUNWAY_*` environment variables, then a YAML `--config` file keyed by
//! flag name (`kube-qps: 50`), then defaults.
//!
//! The file is layered through clap itself ([`with_config_file`]): its
//! settings are appended to the command line as flags, but only for
//! settings that neither a flag nor an environment variable gave (clap's
//! `value_source`). No process environment is written, and every value is
//! checked by the same parser as a flag, so a bad one names its flag.

mod file;

use std::path::PathBuf;

use clap::{Args, ValueEnum};

pub use file::{with_config_file, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Json,
    /// Human-readable lines; ANSI colours only when standard error is a terminal.
    Text,
}

/// The CA files of TLS to the broker and the result backend, which
/// `runway serve` and `runway worker` both reach.
#[derive(Debug, Clone, Args)]
pub struct StoreTlsArgs {
    /// PEM CA certificate(s) trusted for an `amqps://` broker, besides the system's roots.
    #[arg(long, env = "RUNWAY_BROKER_CA_FILE")]
    pub broker_ca_file: Option<PathBuf>,
    /// PEM CA certificate(s) trusted for a `rediss://` result backend instead of the system's
    /// roots (wins over the URL's `ssl_ca_certs`).
    #[arg(long, env = "RUNWAY_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
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
