//! The command line: the arguments of every command (`cli.rs`) and what
//! each command does (`cli/*.rs`). `dev-cluster` and `bench` exist only in
//! builds with the `dev-cluster` feature.

#[cfg(feature = "dev-cluster")]
pub mod bench;
pub mod client;
#[cfg(feature = "dev-cluster")]
pub mod dev_cluster;
pub mod render;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "runway",
    version = concat!(env!("CARGO_PKG_VERSION"), " (revision ", env!("RUNWAY_REVISION"), ")"),
    about = "Kubernetes run launcher and step executor for Dagster"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the batch/v1 Job Runway would submit for a run or step case file.
    Render {
        /// A case file (JSON or YAML): `{"kind": "run", ...}` or `{"kind": "step", ...}`,
        /// with an optional `"dagster_version"` (default: the newest supported).
        #[arg(long, required_unless_present = "profiles")]
        case: Option<PathBuf>,
        /// Print the supported Dagster releases and their Job-shape profiles instead.
        #[arg(long, conflicts_with = "case")]
        profiles: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Json)]
        output: Output,
    },
    /// Run a local Kubernetes API server with a Job controller, a scheduler and
    /// a kubelet, in the foreground, and write a kubeconfig for it.
    #[cfg(feature = "dev-cluster")]
    DevCluster(dev_cluster::DevClusterArgs),
    /// Run the gRPC run launcher: launch, resume, terminate, health, debug
    /// info and live status of Dagster run workers, tracked by one watch.
    Serve(Box<runway::serve::settings::ServeArgs>),
    /// Run a Celery worker pool for Dagster's `execute_step_k8s_job` tasks:
    /// step Jobs created through kube, tracked by one watch, results in
    /// Celery's own format.
    Worker(Box<runway::worker::settings::WorkerArgs>),
    /// A command-line client of `runway serve`.
    Client(ClientArgs),
    /// Benchmarks. Numbers are printed as JSON lines.
    #[cfg(feature = "dev-cluster")]
    Bench {
        #[command(subcommand)]
        what: bench::Bench,
    },
}

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The service's gRPC endpoint.
    #[arg(
        long,
        env = "RUNWAY_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub endpoint: String,
    /// File holding the bearer token the service requires.
    #[arg(long, env = "RUNWAY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub what: ClientCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Launch the run of a case file (as `runway render` takes it).
    Launch {
        #[arg(long)]
        case: PathBuf,
        /// Overrides the case's run id.
        #[arg(long)]
        run_id: Option<String>,
    },
    /// The run worker's health.
    Health {
        #[arg(long)]
        run_id: String,
        #[arg(long, default_value = "STARTED")]
        run_status: String,
        /// dagster-k8s's exact answers.
        #[arg(long)]
        compat: bool,
    },
    /// dagster-k8s's debug information text.
    DebugInfo {
        #[arg(long)]
        run_id: String,
    },
    /// Delete the run's Job, its pods and its step Jobs.
    Terminate {
        #[arg(long)]
        run_id: String,
    },
    /// Publish a celery-k8s step task (its kwargs as a JSON object file).
    SubmitStep {
        #[arg(long)]
        kwargs_file: PathBuf,
        #[arg(long, default_value = "dagster")]
        queue: String,
        #[arg(long)]
        priority: Option<u32>,
        #[arg(long, default_value = "")]
        task_id: String,
    },
    /// Print a step task's states as JSON lines until its final one.
    WatchStep {
        #[arg(long)]
        task_id: String,
    },
    /// Print status transitions as JSON lines.
    Watch {
        #[arg(long = "run-id")]
        run_ids: Vec<String>,
        /// Stop once every given run reached SUCCESS or FAILED.
        #[arg(long)]
        until_final: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Json,
    Yaml,
}
