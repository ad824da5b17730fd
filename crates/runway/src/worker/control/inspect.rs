//! The inspect commands: what the worker holds and how it is set, read from
//! the pool without changing it.

use serde_json::{json, Map, Value};

use crate::results::backend::ResultStore;
use crate::worker::consume::AmqpBroker;
use crate::worker::pool::Pool;
use crate::worker::runner::StepRunner;
use runway_core::celery::control::shapes::{queue_info, Conf, Rusage, Stats, TaskInfo};
use runway_core::celery::control::Request;
use runway_core::celery::topology::queue_spec;

type P<S, R> = Pool<S, R, AmqpBroker>;

/// `active(safe=True)` (Flower) gives reprs; plain `active` the values.
fn safe(req: &Request) -> bool {
    req.arg("safe").and_then(Value::as_bool).unwrap_or(false)
}

fn infos(list: Vec<TaskInfo>, safe: bool) -> Value {
    list.iter().map(|t| t.to_value(safe)).collect()
}

pub fn active<S: StepRunner, R: ResultStore>(pool: &P<S, R>, req: &Request) -> Value {
    infos(pool.registry.active(), safe(req))
}

pub fn reserved<S: StepRunner, R: ResultStore>(pool: &P<S, R>, req: &Request) -> Value {
    infos(pool.registry.reserved(), safe(req))
}

/// Celery's `scheduled`: `{eta, priority, request}` per task waiting for its ETA.
pub fn scheduled<S: StepRunner, R: ResultStore>(pool: &P<S, R>, req: &Request) -> Value {
    let safe = safe(req);
    pool.registry
        .scheduled()
        .into_iter()
        .map(|(eta, info)| {
            json!({
                "eta": eta,
                "priority": info.delivery_info.priority.unwrap_or(0),
                "request": info.to_value(safe),
            })
        })
        .collect()
}

pub fn registered<S: StepRunner, R: ResultStore>(_pool: &P<S, R>) -> Value {
    json!([crate::worker::TASK])
}

pub fn active_queues<S: StepRunner, R: ResultStore>(pool: &P<S, R>) -> Value {
    pool.broker
        .queues()
        .iter()
        .map(|q| queue_info(&queue_spec(q)))
        .collect()
}

pub fn revoked<S: StepRunner, R: ResultStore>(pool: &P<S, R>) -> Value {
    pool.revocations
        .ids()
        .into_iter()
        .map(Value::from)
        .collect()
}

/// `{id: [state, info]}` for the ids held here; others are left out.
pub fn query_task<S: StepRunner, R: ResultStore>(pool: &P<S, R>, req: &Request) -> Value {
    let ids: Vec<String> = match req.arg("ids") {
        Some(Value::Array(ids)) => ids
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(id)) => vec![id.clone()],
        _ => Vec::new(),
    };
    let mut out = Map::new();
    for id in ids {
        if let Some((state, info)) = pool.registry.query(&id) {
            out.insert(id, json!([state.as_str(), info.to_value(false)]));
        }
    }
    Value::Object(out)
}

pub fn stats<S: StepRunner, R: ResultStore>(pool: &P<S, R>) -> Value {
    Stats {
        task_name: crate::worker::TASK.to_owned(),
        processed: pool.processed.load(std::sync::atomic::Ordering::Relaxed),
        pid: std::process::id(),
        clock: pool.events.clock(),
        uptime_secs: pool.started.elapsed().as_secs(),
        concurrency: pool.concurrency(),
        running: pool.registry.running_jobs(),
        broker_url: pool.broker.config.broker_url.clone(),
        heartbeat_secs: 60,
        prefetch_count: pool.broker.config.prefetch,
        rusage: rusage(),
    }
    .to_value()
}

fn conf_of<S: StepRunner, R: ResultStore>(pool: &P<S, R>) -> Conf {
    let c = &pool.broker.config;
    Conf {
        broker_url: c.broker_url.clone(),
        result_backend: c.result_backend.clone(),
        result_expires_secs: c.result_expires_secs,
        concurrency: pool.concurrency(),
        prefetch_count: c.prefetch,
        queues: pool.broker.queues().iter().map(|q| queue_spec(q)).collect(),
        task_events: pool.events.task_events(),
        version: crate::metrics::VERSION.to_owned(),
    }
}

pub fn conf<S: StepRunner, R: ResultStore>(pool: &P<S, R>) -> Value {
    conf_of(pool).to_value()
}

pub fn report<S: StepRunner, R: ResultStore>(pool: &P<S, R>) -> String {
    conf_of(pool).report()
}

/// Mingle's `hello`: the revoked ids and the clock, or nothing for itself.
pub fn hello<S: StepRunner, R: ResultStore>(pool: &P<S, R>, req: &Request) -> Value {
    if req.arg("from_node").and_then(Value::as_str) == Some(pool.config.hostname.as_str()) {
        return Value::Null;
    }
    json!({"revoked": revoked(pool), "clock": pool.events.clock()})
}

/// `memdump`'s text, without psutil's per-sample history.
pub fn memdump() -> String {
    match rusage() {
        Some(r) => format!("- rss: {} kB (peak).\n", r.maxrss),
        None => "- rss: (unavailable).\n".to_owned(),
    }
}

/// `getrusage(RUSAGE_SELF)`, read from /proc (no unsafe code): CPU times
/// from `stat`, peak RSS and context switches from `status`.
fn rusage() -> Option<Rusage> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // minflt is field 10, majflt 12, utime 14, stime 15 (1-based, man proc).
    let ticks = 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(Rusage {
        utime: num(11) as f64 / ticks,
        stime: num(12) as f64 / ticks,
        maxrss: field("VmHWM:"),
        minflt: num(7),
        majflt: num(9),
        nvcsw: field("voluntary_ctxt_switches:"),
        nivcsw: field("nonvoluntary_ctxt_switches:"),
    })
}
