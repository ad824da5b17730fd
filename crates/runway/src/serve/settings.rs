//! `runway serve`'s flags. Each also reads `RUNWAY_<NAME>` and the
//! `--config` file (see [`crate::settings`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::settings::{KubeArgs, LogFormat, StoreTlsArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum HealthModeArg {
    /// dagster-k8s's rules plus the pod-level diagnosis (the client may ask for compat per call).
    #[default]
    Diagnose,
    /// Every answer exactly as dagster-k8s gives it, whatever the client asks.
    DagsterCompat,
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
    #[command(flatten)]
    pub store_tls: StoreTlsArgs,
    /// How health is judged.
    #[arg(long, env = "RUNWAY_HEALTH_MODE", value_enum, default_value_t = HealthModeArg::Diagnose)]
    pub health_mode: HealthModeArg,
    /// Seconds a pod may stay Unschedulable before its run counts as FAILED.
    #[arg(long, env = "RUNWAY_UNSCHEDULABLE_GRACE_SECS", default_value_t = 120)]
    pub unschedulable_grace_secs: i64,
    /// WatchRuns streams open at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "RUNWAY_MAX_WATCH_STREAMS", default_value_t = 256)]
    pub max_watch_streams: usize,
    /// The largest launcher config a request may carry, in bytes.
    #[arg(long, env = "RUNWAY_MAX_CONFIG_BYTES", default_value_t = 1 << 20)]
    pub max_config_bytes: usize,
    /// Bytes of launcher configs kept, texts and parsed forms (a parsed form counts twice its
    /// text); oldest dropped first.
    #[arg(long, env = "RUNWAY_CONFIG_CACHE_BYTES", default_value_t = 32 << 20)]
    pub config_cache_bytes: usize,
    /// The largest gRPC request, in bytes (larger ones get OUT_OF_RANGE, tonic's code for it).
    #[arg(long, env = "RUNWAY_MAX_REQUEST_BYTES", default_value_t = 4 << 20)]
    pub max_request_bytes: usize,
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
