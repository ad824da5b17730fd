//! The `runway` binary: argument parsing and process setup only.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use runway::dagster::ProcessEnv;
use runway::render::{parse_case_text, render_case};

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
    /// Benchmarks. Numbers are printed as JSON lines.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Json,
    Yaml,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("runway: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
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
