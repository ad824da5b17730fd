//! The `runway` binary: argument parsing and process setup only; each
//! command's body is in `cli/`.

mod cli;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _};

use cli::{Cli, Command};
use runway::settings::with_config_file;

// glibc's malloc was a quarter of the dev cluster's profile and a large part
// of a render; mimalloc is markedly faster for these many small objects
// (entered by its plain malloc: see runway-alloc for why not `MiMalloc`).
#[global_allocator]
static GLOBAL: runway_alloc::Mimalloc = runway_alloc::Mimalloc;

fn main() -> ExitCode {
    let argv = match with_config_file(&Cli::command(), std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(err) => {
            eprintln!("runway: {err}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::command()
        .try_get_matches_from(argv)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("runway: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Render {
            case: Some(case),
            output,
            ..
        } => cli::render::run(&case, output),
        Command::Render { .. } => Ok(cli::render::profiles()),
        Command::Client(args) => {
            runtime()?.block_on(cli::client::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(args) => {
            runtime()?.block_on(async move {
                let _telemetry = runway::telemetry::init(
                    args.log_format,
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
            runtime()?.block_on(async move {
                let _telemetry = runway::telemetry::init(
                    args.log_format,
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
        #[cfg(feature = "dev-cluster")]
        Command::DevCluster(args) => {
            runtime()?.block_on(cli::dev_cluster::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "dev-cluster")]
        Command::Bench { what } => {
            cli::bench::run(what)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
