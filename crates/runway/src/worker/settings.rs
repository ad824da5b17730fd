//! `runway worker`'s flags. Each also reads `RUNWAY_<NAME>` and the
//! `--config` file (see [`crate::settings`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use runway_core::dagster::version::Target;

use crate::settings::{KubeArgs, LogFormat, StoreTlsArgs};

fn parse_target(text: &str) -> Result<Target, String> {
    Target::parse(text).map_err(|e| e.to_string())
}

/// `runway worker` flags.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// YAML file with any of these settings, keyed by flag name.
    #[arg(long, env = "RUNWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Queues to consume (comma-separated or repeated), as `celery worker -Q`.
    #[arg(
        short = 'Q',
        long = "queues",
        env = "RUNWAY_QUEUES",
        value_delimiter = ',',
        default_value = "dagster"
    )]
    pub queues: Vec<String>,
    /// The Celery broker (RabbitMQ), as Dagster's `broker` setting.
    #[arg(
        long,
        env = "RUNWAY_BROKER_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672//"
    )]
    pub broker_url: String,
    /// Where results go: `redis://host:port/db` or `rpc://`, as Dagster's `backend` setting.
    #[arg(long, env = "RUNWAY_RESULT_BACKEND", default_value = "rpc://")]
    pub result_backend: String,
    /// Seconds a stored result lives (Celery's `result_expires`).
    #[arg(long, env = "RUNWAY_RESULT_EXPIRES_SECS", default_value_t = 86_400)]
    pub result_expires_secs: u64,
    /// Steps this worker runs at once.
    #[arg(long, env = "RUNWAY_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Unacknowledged deliveries per queue (default: the concurrency).
    #[arg(long, env = "RUNWAY_PREFETCH")]
    pub prefetch: Option<u16>,
    /// The worker's Celery node name (default `runway-<6 hex>@<host>`).
    #[arg(long, env = "RUNWAY_HOSTNAME")]
    pub hostname: Option<String>,
    /// Send Celery's worker and task events (`celeryev`), which Flower shows.
    #[arg(long, env = "RUNWAY_TASK_EVENTS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub task_events: bool,
    /// Seconds a delivery stays unacknowledged before the worker parks a copy
    /// of it and acknowledges it (stay below RabbitMQ's consumer_timeout, 30
    /// minutes by default).
    #[arg(long, env = "RUNWAY_ACK_DEADLINE_SECS", default_value_t = 1500)]
    pub ack_deadline_secs: u64,
    /// Largest task body accepted, in bytes.
    #[arg(long, env = "RUNWAY_MAX_MESSAGE_BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,
    /// The Dagster release whose step Jobs this worker builds, e.g. 1.1.9 (the
    /// task kwargs do not say which Dagster published them).
    #[arg(long, env = "RUNWAY_DAGSTER_VERSION", default_value_t = Target::newest(), value_parser = parse_target)]
    pub dagster_version: Target,
    /// Seconds an engine-event write is retried while PostgreSQL is
    /// unreachable; an event still unwritten then fails its task.
    #[arg(long, env = "RUNWAY_EVENT_WRITE_PATIENCE_SECS", default_value_t = 300)]
    pub event_write_patience_secs: u64,
    /// Seconds a step Job of a CANCELING run is left running while the run
    /// worker, signalled by its launcher, revokes the step and records
    /// CANCELED; deleting it sooner can let the run end FAILURE instead.
    /// The Python task notices a cancel at its next 10 s poll; 0 deletes at once.
    #[arg(long, env = "RUNWAY_CANCEL_GRACE_SECS", default_value_t = 10)]
    pub cancel_grace_secs: u64,
    /// Dagster's run storage, overriding the database the task's instance names
    /// (`postgresql://user:password@host:port/db`).
    #[arg(long, env = "RUNWAY_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// PEM CA certificate(s) PostgreSQL's certificate is checked against (wins over the
    /// instance's `sslrootcert`; libpq's `sslmode` says whether and how it is checked).
    #[arg(long, env = "RUNWAY_POSTGRES_CA_FILE")]
    pub postgres_ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub store_tls: StoreTlsArgs,
    /// HTTP address of /metrics, /live and /ready.
    #[arg(long, env = "RUNWAY_HTTP_LISTEN", default_value = "0.0.0.0:9091")]
    pub http_listen: SocketAddr,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Seconds a pod may stay Unschedulable before its step fails.
    #[arg(long, env = "RUNWAY_UNSCHEDULABLE_GRACE_SECS", default_value_t = 120)]
    pub unschedulable_grace_secs: i64,
    /// Log format.
    #[arg(long, env = "RUNWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// OTLP gRPC endpoint for traces (also OTEL_EXPORTER_OTLP_ENDPOINT); none: no traces.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Seconds running steps get to finish after SIGTERM before their
    /// deliveries are returned to the queue.
    #[arg(long, env = "RUNWAY_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
}

impl WorkerArgs {
    pub fn validate(&self) -> Result<(), String> {
        self.kube.validate()?;
        if self.queues.is_empty() || self.queues.iter().any(|q| q.trim().is_empty()) {
            return Err("--queues: give at least one non-empty queue name".into());
        }
        if self.concurrency == 0 {
            return Err("--concurrency: give at least 1".into());
        }
        if self.ack_deadline_secs == 0 {
            return Err("--ack-deadline-secs: give at least 1".into());
        }
        if self.prefetch == Some(0) {
            return Err("--prefetch: give at least 1 (0 would mean unbounded)".into());
        }
        Ok(())
    }

    pub fn prefetch(&self) -> u16 {
        self.prefetch
            .unwrap_or_else(|| u16::try_from(self.concurrency).unwrap_or(u16::MAX))
    }
}
