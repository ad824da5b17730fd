//! Load generators and timers behind `runway bench`. Numbers are printed as
//! JSON lines so scripts can put them next to the Python peer's.

use std::time::Instant;

use serde_json::{json, Value};

use crate::dagster::Env;
use crate::render::{render_case, Error};

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
/// Each iteration does the full pipeline: launcher config processing, layer
/// merging, Job building and wire conversion.
pub fn time_render(case: &Value, env: &dyn Env, iterations: u32) -> Result<RenderTiming, Error> {
    let iterations = iterations.max(1);
    for _ in 0..iterations.min(100) {
        render_case(case, env)?;
    }
    let mut samples = Vec::with_capacity(iterations as usize);
    let start = Instant::now();
    for _ in 0..iterations {
        let t = Instant::now();
        let rendered = render_case(case, env)?;
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
