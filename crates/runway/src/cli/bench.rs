//! `runway bench`: load generators against an in-process dev cluster,
//! each beside its Python peer measured in the same run.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use runway::env::ProcessEnv;
use runway_core::render::parse_case_text;

#[derive(Debug, Subcommand)]
pub enum Bench {
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

/// The load generator's runtime: its threads are named, so its CPU is told
/// apart from the service's (`runway::bench::cpu`).
fn load_runtime() -> anyhow::Result<runway::bench::cpu::Runtime> {
    runway::bench::cpu::runtime(runway::bench::cpu::LOAD, 2).context("starting the async runtime")
}

/// Runs one benchmark and prints its JSON lines.
pub fn run(what: Bench) -> anyhow::Result<()> {
    let root = std::env::current_dir().context("reading the current directory")?;
    let peer = |python: Option<PathBuf>| {
        python.or_else(|| Some(root.join(".venv/bin/python")).filter(|p| p.exists()))
    };
    let lines = match what {
        Bench::Index { runs } => vec![runway::bench::index_memory(runs)],
        Bench::Worker(mut bench) => {
            bench.root = root.clone();
            bench.python = peer(bench.python.take());
            load_runtime()?.block_on(runway::bench::worker::run(&bench))?
        }
        Bench::Publish(mut bench) => {
            bench.root = root.clone();
            bench.python = peer(bench.python.take());
            load_runtime()?.block_on(runway::bench::publish::run(&bench))?
        }
        Bench::Launch(mut bench) => {
            bench.root = root.clone();
            bench.python = peer(bench.python.take());
            load_runtime()?.block_on(runway::bench::launch::run(&bench))?
        }
        Bench::Render {
            case,
            name,
            iterations,
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
            vec![timing.to_json(&name)]
        }
    };
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
