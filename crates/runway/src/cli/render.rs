//! `runway render`: the Job a case file renders to, on standard output.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use runway::env::ProcessEnv;
use runway_core::dagster::version::{supported, Profile};
use runway_core::render::{parse_case_text, render_case};

use super::Output;

/// Prints the supported releases and the profile table (Markdown).
pub fn profiles() -> ExitCode {
    println!("Supported Dagster releases: {}\n", supported());
    println!("| profile | from | until | what changes |");
    println!("|---|---|---|---|");
    for p in Profile::all() {
        let until = p.until.map_or_else(|| "-".to_owned(), |u| u.to_string());
        println!("| P{} | {} | {} | {} |", p.number, p.first, until, p.what);
    }
    ExitCode::SUCCESS
}

/// Prints the Job, or the error naming the field (exit status 2).
pub fn run(case: &Path, output: Output) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(case)
        .with_context(|| format!("reading case file {}", case.display()))?;
    let rendered = match parse_case_text(&text).and_then(|c| render_case(&c, &ProcessEnv)) {
        Ok(r) => r,
        Err(err) => {
            eprintln!("runway: {err}");
            return Ok(ExitCode::from(2));
        }
    };
    for name in &rendered.dropped_env_vars {
        eprintln!(
            "runway: warning: dropped user env var {name} (not in only_allow_user_defined_env_vars)"
        );
    }
    let text = match output {
        Output::Json => serde_json::to_string_pretty(&rendered.job)?,
        Output::Yaml => serde_saphyr::to_string(&rendered.job)?,
    };
    println!("{}", text.trim_end());
    Ok(ExitCode::SUCCESS)
}
