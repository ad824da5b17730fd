//! Load generators and timers behind `runway bench`. Numbers are printed as
//! JSON lines so scripts can put them next to the Python peer's.

use std::time::Instant;

use serde_json::{json, Value};

use runway_core::dagster::Env;
use runway_core::render::{prepare_case, Error};

/// Per-Job render time of one case, measured in-process.
#[derive(Debug, Clone)]
pub struct RenderTiming {
    pub iterations: u32,
    pub mean_us: f64,
    pub median_us: f64,
    pub p99_us: f64,
}

impl RenderTiming {
    pub fn to_json(&self, case: &str) -> Value {
        json!({
            "case": case, "impl": "runway", "iterations": self.iterations,
            "per_job_us": self.mean_us, "median_us": self.median_us, "p99_us": self.p99_us,
        })
    }
}

/// Renders `case` `iterations` times after a warm-up and reports the spread.
/// Each iteration is what serve or the worker does per request: for a run,
/// the code location's and the run's layers merged onto the launcher's (its
/// config loaded once, as serve caches it per digest), the Job built and
/// converted to wire JSON; for a step, the task's kwargs parsed too.
pub fn time_render(case: &Value, env: &dyn Env, iterations: u32) -> Result<RenderTiming, Error> {
    let iterations = iterations.max(1);
    let prepared = prepare_case(case, env)?;
    for _ in 0..iterations.min(100) {
        prepared.render(env)?;
    }
    let mut samples = Vec::with_capacity(iterations as usize);
    let start = Instant::now();
    for _ in 0..iterations {
        let t = Instant::now();
        let rendered = prepared.render(env)?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(rendered);
    }
    let total = start.elapsed().as_secs_f64() * 1e6;
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Ok(RenderTiming {
        iterations,
        mean_us: total / f64::from(iterations),
        median_us: at(0.5),
        p99_us: at(0.99),
    })
}

mod cluster;
pub mod cpu;
pub mod launch;
pub mod publish;
pub mod worker;

/// Runs a Python peer script and reads the JSON object on the last line it
/// prints; a failure carries the script's stderr.
pub fn python_json(
    python: &std::path::Path,
    script: &std::path::Path,
    args: &[String],
) -> Result<Value, String> {
    let out = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .map_err(|e| format!("output: {e}: {text}"))
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Memory of the watch index holding `runs` finished runs (a Job and a pod
/// each, shaped like the seed deployment's), as resident-set growth.
pub fn index_memory(runs: usize) -> Value {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Pod;

    let before = rss_bytes().unwrap_or_default();
    let mut index = runway_core::track::Index::new(120);
    let mut out = Vec::new();
    for i in 0..runs {
        let run_id = format!("1c2e9a5b-7d3e-4e8f-9a1b-{i:012}");
        let name = format!("dagster-run-{run_id}");
        let job: Result<Job, _> = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "dagster-system", "uid": format!("0b7a3c9e-1111-4e8f-9a1b-{i:012}"),
                "resourceVersion": format!("{}", 1_000_000 + i),
                "labels": {"dagster/run-id": run_id, "dagster/job": "example_job",
                    "app.kubernetes.io/part-of": "dagster", "app.kubernetes.io/managed-by": "runway"}},
            "spec": {"template": {"spec": {"containers": [{"name": "dagster", "image": "docker.io/dagster/user-code-example:1.1.9"}]}}},
            "status": {"succeeded": 1, "startTime": "2026-12-02T00:00:00Z",
                "conditions": [{"type": "Complete", "status": "True"}]}
        }));
        let pod: Result<Pod, _> = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-abcde"), "namespace": "dagster-system", "labels": {"job-name": name}},
            "spec": {"containers": [{"name": "dagster"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "dagster", "ready": false,
                "restartCount": 0, "image": "docker.io/dagster/user-code-example:1.1.9", "imageID": "",
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
        }));
        if let (Ok(job), Ok(pod)) = (job, pod) {
            index.apply_job(&job, 0, &mut out);
            index.apply_pod(&pod, 0, &mut out);
        }
        out.clear();
    }
    let after = rss_bytes().unwrap_or_default();
    let grown = after.saturating_sub(before);
    json!({
        "impl": "runway", "what": "watch index memory", "runs": index.run_count(),
        "jobs": index.job_count(), "pods": index.pod_count(),
        "rss_growth_mb": grown as f64 / 1_048_576.0,
        "bytes_per_run": grown as f64 / runs.max(1) as f64,
    })
}

pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}
