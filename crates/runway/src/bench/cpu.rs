//! Who spent the CPU of a bench phase. Every in-process component runs on a
//! tokio runtime of its own whose threads carry its name (`rw-serve`,
//! `rw-worker`, `rw-devcluster`, `rw-load`), so the per-thread counters in
//! `/proc/self/task` split the process's time between them; the stores
//! (RabbitMQ, Redis, PostgreSQL) are read from their processes' counters, and
//! a Python peer from this process's waited-for children. Counters tick at
//! the kernel's clock rate (100 Hz here), so phases last seconds.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The components measured inside this process, by thread-name prefix.
pub const SERVE: &str = "rw-serve";
pub const WORKER: &str = "rw-worker";
pub const DEVCLUSTER: &str = "rw-devcluster";
pub const LOAD: &str = "rw-load";

/// Processes of the stores, by the `comm` they run under.
const STORES: &[(&str, &str)] = &[
    ("rabbitmq", "beam.smp"),
    ("redis", "redis-server"),
    ("postgresql", "postgres"),
];

/// A runtime whose threads are named for the component they run.
pub fn runtime(name: &str, threads: usize) -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .map(|rt| Runtime(Some(rt)))
}

/// A component's runtime, let go in the background when dropped: the
/// benches drop them inside the load generator's runtime, where a plain
/// drop (which waits for the threads) is refused with a panic, on every
/// path out, errors included.
#[derive(Debug)]
pub struct Runtime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for Runtime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        // Only Drop takes it out.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("runtime used after drop"))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `fut` to completion on `rt`, so every task it spawns (servers,
/// watches, connections) stays on that runtime's named threads.
pub async fn on<F>(rt: &tokio::runtime::Runtime, fut: F) -> Result<F::Output, String>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.spawn(fut).await.map_err(|e| e.to_string())
}

/// A phase being measured: the counters at its start.
#[derive(Debug)]
pub struct Phase(Sample);

impl Phase {
    pub fn start() -> Phase {
        Phase(Sample::take())
    }

    /// Ends the phase: adds its CPU per operation to `line`.
    pub fn end(self, line: &mut Value, ops: usize, runway: &[&str]) {
        let spent = self.0.until(&Sample::take());
        attach(line, &spent, ops, runway);
    }
}

/// CPU seconds per component at one instant.
#[derive(Debug, Clone, Default)]
pub struct Sample(BTreeMap<String, f64>);

fn ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux architecture Runway builds for.
    100.0
}

/// utime + stime (fields 14 and 15) and cutime + cstime (16 and 17) of a
/// `stat` line, in seconds. `comm` may hold spaces and parentheses, so the
/// fields are counted from its closing parenthesis.
fn stat_seconds(stat: &str) -> Option<(f64, f64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let hz = ticks_per_second();
    Some(((f.first()? + f.get(1)?) / hz, (f.get(2)? + f.get(3)?) / hz))
}

fn read(path: impl AsRef<std::path::Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

impl Sample {
    /// Reads every counter now.
    pub fn take() -> Sample {
        let mut by = BTreeMap::new();
        threads_of_this_process(&mut by);
        stores(&mut by);
        if let Some((_, children)) = read("/proc/self/stat").as_deref().and_then(stat_seconds) {
            by.insert("python peer".into(), children);
        }
        Sample(by)
    }

    /// Seconds spent per component between `self` and `later`.
    pub fn until(&self, later: &Sample) -> BTreeMap<String, f64> {
        later
            .0
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    (v - self.0.get(k).copied().unwrap_or(0.0)).max(0.0),
                )
            })
            .filter(|(_, v)| *v > 0.0)
            .collect()
    }
}

fn threads_of_this_process(by: &mut BTreeMap<String, f64>) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Some(comm), Some(stat)) = (read(dir.join("comm")), read(dir.join("stat"))) else {
            continue;
        };
        let Some((own, _)) = stat_seconds(&stat) else {
            continue;
        };
        let comm = comm.trim();
        let group = [SERVE, WORKER, DEVCLUSTER, LOAD]
            .into_iter()
            .find(|g| comm.starts_with(g))
            .unwrap_or("runway other threads");
        *by.entry(group.to_owned()).or_default() += own;
    }
}

fn stores(by: &mut BTreeMap<String, f64>) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let dir = p.path();
        let Some(comm) = read(dir.join("comm")) else {
            continue;
        };
        let comm = comm.trim();
        let Some((label, _)) = STORES.iter().find(|(_, name)| comm == *name) else {
            continue;
        };
        if let Some((own, _)) = read(dir.join("stat")).as_deref().and_then(stat_seconds) {
            *by.entry((*label).to_owned()).or_default() += own;
        }
    }
}

/// A phase's CPU per operation: microseconds per component, Runway's own
/// total (the given components), and the operations per second one core
/// would sustain at that cost.
pub fn per_op(spent: &BTreeMap<String, f64>, ops: usize, runway: &[&str]) -> Value {
    let ops = ops.max(1) as f64;
    let mut components = Map::new();
    for (k, secs) in spent {
        components.insert(k.clone(), json!(round(secs * 1e6 / ops)));
    }
    let own: f64 = runway
        .iter()
        .map(|c| spent.get(*c).copied().unwrap_or(0.0))
        .sum();
    let own_us = own * 1e6 / ops;
    json!({
        "cpu_us_per_op": components,
        "runway_cpu_us_per_op": round(own_us),
        "runway_ops_per_core_s": if own_us > 0.0 { round(1e6 / own_us) } else { f64::NAN },
    })
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Adds a phase's CPU breakdown to its JSON line.
pub fn attach(line: &mut Value, spent: &BTreeMap<String, f64>, ops: usize, runway: &[&str]) {
    if let (Value::Object(out), Value::Object(cpu)) = (line, per_op(spent, ops, runway)) {
        out.extend(cpu);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_past_a_comm_with_spaces() {
        let stat = "42 (rw serve (x)) S 1 42 42 0 -1 4194560 10 0 0 0 250 50 7 3 20 0 4 0";
        assert_eq!(stat_seconds(stat), Some((3.0, 0.1)));
    }

    #[test]
    fn this_process_is_attributed_by_thread_name() {
        let rt = runtime(LOAD, 1).unwrap();
        let before = Sample::take();
        rt.block_on(async {
            // A fixed amount of work: CPU time counts it however busy the
            // machine is.
            tokio::spawn(async {
                let mut x = 0u64;
                for i in 0..30_000_000u64 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                }
                x
            })
            .await
            .unwrap();
        });
        let spent = before.until(&Sample::take());
        assert!(spent.get(LOAD).copied().unwrap_or(0.0) >= 0.05, "{spent:?}");
        assert!(!spent.contains_key(SERVE), "{spent:?}");
    }
}
