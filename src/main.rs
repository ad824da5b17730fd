//! The `runway` binary: argument parsing and process setup only.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use runway::dagster::ProcessEnv;
use runway::render::{parse_case_text, render_case};

// glibc's malloc was a quarter of the dev cluster's profile and a large part
// of a render; mimalloc is markedly faster for these many small objects.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "runway",
    version,
    about = "Kubernetes run launcher and step executor for Dagster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the batch/v1 Job Runway would submit for a run or step case file.
    Render {
        /// A case file (JSON or YAML): `{"kind": "run", ...}` or `{"kind": "step", ...}`.
        #[arg(long)]
        case: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Json)]
        output: Output,
    },
    /// Run a local Kubernetes API server with a Job controller, a scheduler and
    /// a kubelet, in the foreground, and write a kubeconfig for it.
    DevCluster(DevClusterArgs),
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
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Debug, clap::Args)]
struct ClientArgs {
    /// The service's gRPC endpoint.
    #[arg(
        long,
        env = "RUNWAY_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    /// File holding the bearer token the service requires.
    #[arg(long, env = "RUNWAY_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    what: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
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

#[derive(Debug, Subcommand)]
enum Bench {
    /// `runway serve` on an in-process dev cluster (simulated kubelet):
    /// launches/s, latency, health checks/s, WatchRuns completion latency,
    /// and the Python K8sRunLauncher against the same cluster.
    Launch(runway::bench::launch::LaunchBench),
    /// Task messages published with confirms (SubmitStep's path), next to
    /// the raw lapin ceiling and Python Celery's apply_async, same broker.
    Publish(runway::bench::publish::PublishBench),
    /// Trivial steps end to end through an in-process `runway worker`, next
    /// to a Python Celery worker running dagster-celery-k8s's task.
    Worker(runway::bench::worker::WorkerBench),
    /// Memory of the watch index with this many tracked runs.
    Index {
        #[arg(long, default_value_t = 100_000)]
        runs: usize,
    },
    /// Time rendering a case file in-process (per Job, full pipeline).
    Render {
        #[arg(long)]
        case: PathBuf,
        /// A name for the output line (defaults to the file stem).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 20_000)]
        iterations: u32,
    },
}

#[derive(Debug, clap::Args)]
struct DevClusterArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: std::net::SocketAddr,
    /// Where to write the kubeconfig (context `runway-dev`).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// `process` runs each container's command as a local process;
    /// `simulated` runs nothing (durations and exit codes from annotations).
    #[arg(long, value_enum, default_value_t = KubeletArg::Process)]
    kubelet: KubeletArg,
    /// Serve HTTPS with a self-signed certificate made at start (the
    /// kubeconfig carries it as certificate-authority-data).
    #[arg(long)]
    tls: bool,
    /// Require this bearer token on every request (401 without it).
    #[arg(long, env = "RUNWAY_DEV_CLUSTER_TOKEN")]
    token: Option<String>,
    /// Node names, comma-separated (each labelled kubernetes.io/hostname=<name>).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "devmaster1,devmaster2,devmaster3"
    )]
    nodes: Vec<String>,
    /// Allocatable CPU of each node, in millicores.
    #[arg(long, default_value_t = 64_000)]
    node_cpu_millis: i64,
    /// Allocatable memory of each node, in MiB.
    #[arg(long, default_value_t = 262_144)]
    node_memory_mib: i64,
    /// Glob patterns of the images that "exist"; any other fails with ErrImagePull.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    images: Vec<String>,
    /// How many changes the watch history keeps (older resourceVersions get 410 Gone).
    #[arg(long, default_value_t = 100_000)]
    history: usize,
    /// Fraction of API requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    fault_429: f64,
    /// Fraction of API requests answered 500.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    fault_500: f64,
    /// Latency added to every API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of writes that are stored but answered 500 (exercises
    /// 409-after-retry idempotence).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    fault_commit_then_fail: f64,
    /// Start with the Job controller paused (no pods are created).
    #[arg(long)]
    pause_controller: bool,
    /// Start with the kubelet paused (pods stay Pending).
    #[arg(long)]
    pause_kubelet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KubeletArg {
    Process,
    Simulated,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Json,
    Yaml,
}

fn main() -> ExitCode {
    if let Err(err) = load_config_file() {
        eprintln!("runway: {err:#}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("runway: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `runway serve --config FILE` (or `RUNWAY_CONFIG`): the file's settings
/// become environment defaults before the flags are parsed, so flags and
/// real environment variables still win.
fn load_config_file() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let worker = match args.get(1).map(String::as_str) {
        Some("serve") => false,
        Some("worker") => true,
        _ => return Ok(()),
    };
    let mut path = std::env::var("RUNWAY_CONFIG").ok();
    for (i, a) in args.iter().enumerate() {
        if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.to_owned());
        } else if a == "--config" {
            path = args.get(i + 1).cloned();
        }
    }
    let Some(path) = path else { return Ok(()) };
    let existing = |name: &str| std::env::var_os(name).is_some();
    let path = std::path::Path::new(&path);
    let env = if worker {
        runway::worker::settings::file_env(path, &existing)?
    } else {
        runway::serve::settings::file_env(path, &existing)?
    };
    for (k, v) in env {
        // Single-threaded still: no runtime has started.
        std::env::set_var(k, v);
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn client(args: ClientArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let mut c = runway::client::Client::connect(&args.endpoint, token).await?;
    match args.what {
        ClientCommand::Launch { case, run_id } => {
            let text = std::fs::read_to_string(&case)
                .with_context(|| format!("reading case file {}", case.display()))?;
            let value = parse_case_text(&text)?;
            let req = runway::client::request_from_case(&value, run_id.as_deref())?;
            println!("{}", c.launch(req).await?);
        }
        ClientCommand::Health {
            run_id,
            run_status,
            compat,
        } => println!("{}", c.health(&run_id, &run_status, compat).await?),
        ClientCommand::DebugInfo { run_id } => println!("{}", c.debug_info(&run_id).await?),
        ClientCommand::Terminate { run_id } => println!("{}", c.terminate(&run_id).await?),
        ClientCommand::SubmitStep {
            kwargs_file,
            queue,
            priority,
            task_id,
        } => {
            let kwargs_json = std::fs::read_to_string(&kwargs_file)
                .with_context(|| format!("reading {}", kwargs_file.display()))?;
            let req = runway::proto::SubmitStepRequest {
                kwargs_json,
                queue,
                priority,
                task_id,
                task_name: String::new(),
            };
            println!("{}", c.submit_step(req).await?);
        }
        ClientCommand::WatchStep { task_id } => c.watch_step(&task_id, |s| println!("{s}")).await?,
        ClientCommand::Watch {
            run_ids,
            until_final,
        } => c.watch(&run_ids, until_final, |t| println!("{t}")).await?,
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Client(args) => {
            runtime()?.block_on(client(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(args) => {
            let runtime = runtime()?;
            runtime.block_on(async move {
                let _telemetry = runway::telemetry::init(
                    args.log_format == runway::serve::settings::LogFormat::Json,
                    args.otlp_endpoint.as_deref(),
                    "runway-worker",
                )?;
                let handle = runway::app::start_worker(&args).await?;
                println!(
                    "runway worker {} consuming {} (metrics, live, ready on http://{})",
                    handle.hostname,
                    args.queues.join(","),
                    handle.http_addr
                );
                handle.run_until_signal().await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let runtime = runtime()?;
            runtime.block_on(async move {
                let _telemetry = runway::telemetry::init(
                    args.log_format == runway::serve::settings::LogFormat::Json,
                    args.otlp_endpoint.as_deref(),
                    "runway-serve",
                )?;
                let handle = runway::app::start_serve(&args).await?;
                println!(
                    "runway serve listening on {} (gRPC) and http://{} (metrics, live, ready)",
                    handle.grpc_addr, handle.http_addr
                );
                handle.run_until_signal().await?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DevCluster(args) => {
            let runtime = runtime()?;
            runtime.block_on(dev_cluster(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what: Bench::Index { runs },
        } => {
            println!("{}", runway::bench::index_memory(runs));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what: Bench::Worker(mut bench),
        } => {
            bench.root = std::env::current_dir().context("reading the current directory")?;
            if bench.python.is_none() {
                bench.python = Some(bench.root.join(".venv/bin/python")).filter(|p| p.exists());
            }
            for line in runtime()?.block_on(runway::bench::worker::run(&bench))? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what: Bench::Publish(mut bench),
        } => {
            bench.root = std::env::current_dir().context("reading the current directory")?;
            if bench.python.is_none() {
                bench.python = Some(bench.root.join(".venv/bin/python")).filter(|p| p.exists());
            }
            for line in runtime()?.block_on(runway::bench::publish::run(&bench))? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what: Bench::Launch(mut bench),
        } => {
            bench.root = std::env::current_dir().context("reading the current directory")?;
            if bench.python.is_none() {
                bench.python = Some(bench.root.join(".venv/bin/python")).filter(|p| p.exists());
            }
            let runtime = runtime()?;
            for line in runtime.block_on(runway::bench::launch::run(&bench))? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            what:
                Bench::Render {
                    case,
                    name,
                    iterations,
                },
        } => {
            let text = std::fs::read_to_string(&case)
                .with_context(|| format!("reading case file {}", case.display()))?;
            let value = parse_case_text(&text)?;
            let timing = runway::bench::time_render(&value, &ProcessEnv, iterations)?;
            let name = name.unwrap_or_else(|| {
                case.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            println!("{}", timing.to_json(&name));
            Ok(ExitCode::SUCCESS)
        }
        Command::Render { case, output } => {
            let text = std::fs::read_to_string(&case)
                .with_context(|| format!("reading case file {}", case.display()))?;
            let rendered = parse_case_text(&text).and_then(|c| render_case(&c, &ProcessEnv));
            match rendered {
                Ok(r) => {
                    for name in &r.dropped_env_vars {
                        eprintln!(
                            "runway: warning: dropped user env var {name} (not in \
                             only_allow_user_defined_env_vars)"
                        );
                    }
                    let text = match output {
                        Output::Json => serde_json::to_string_pretty(&r.job)?,
                        Output::Yaml => serde_yaml::to_string(&r.job)?,
                    };
                    println!("{text}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => {
                    eprintln!("runway: {err}");
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}

async fn dev_cluster(args: DevClusterArgs) -> anyhow::Result<()> {
    use runway::devcluster::faults::FaultSettings;
    use runway::devcluster::kubelet::{KubeletMode, NodeConfig};
    use runway::devcluster::{DevCluster, DevClusterConfig};

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = DevClusterConfig::default();
    config.server.token = args.token.clone();
    config.tls = args.tls;
    config.store.history = args.history;
    config.kubelet.mode = match args.kubelet {
        KubeletArg::Process => KubeletMode::Process,
        KubeletArg::Simulated => KubeletMode::Simulated,
    };
    config.kubelet.images = args.images.clone();
    config.kubelet.nodes = args
        .nodes
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| {
            let mut node = NodeConfig::new(n);
            node.cpu_millis = args.node_cpu_millis;
            node.memory_bytes = args.node_memory_mib << 20;
            node
        })
        .collect();
    let cluster = DevCluster::start(args.listen, config)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    cluster.faults().apply(&FaultSettings {
        rate_429: Some(args.fault_429),
        rate_500: Some(args.fault_500),
        latency_ms: Some(args.latency_ms),
        commit_then_fail: Some(args.fault_commit_then_fail),
        pause_controller: Some(args.pause_controller),
        pause_kubelet: Some(args.pause_kubelet),
        ..FaultSettings::default()
    });
    if let Some(path) = &args.kubeconfig {
        cluster
            .write_kubeconfig(path)
            .with_context(|| format!("writing kubeconfig {}", path.display()))?;
    }
    tracing::info!(url = %cluster.url(), kubeconfig = ?args.kubeconfig, "dev cluster ready");
    println!("runway dev-cluster listening on {}", cluster.url());
    wait_for_shutdown_signal().await;
    tracing::info!("shutting down: stopping containers");
    cluster.shutdown().await;
    Ok(())
}

async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A fraction of requests: a number from 0 to 1.
fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{s:?} is not a fraction: give a number from 0 to 1, e.g. 0.05"
        )),
    }
}
