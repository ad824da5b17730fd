//! The control commands that change the worker: revoke and terminate,
//! shutdown, events, consumers and the concurrency limit. What Runway does
//! not do gets Celery's `{"error": ...}` form, saying so.

use std::sync::Arc;

use serde_json::Value;

use crate::results::backend::ResultStore;
use crate::worker::consume::{AmqpBroker, Session};
use crate::worker::pool::Pool;
use crate::worker::runner::StepRunner;
use runway_core::celery::control::{self as wire, Request, Revoke};

type P<S, R> = Pool<S, R, AmqpBroker>;

/// `revoke` and `terminate`. A step running here is stopped either way (its
/// Job deleted); REVOKED is stored once it has ended, never before. A task
/// not started yet is answered REVOKED when its turn comes.
pub fn revoke<S: StepRunner, R: ResultStore>(pool: &P<S, R>, req: &Request) -> Value {
    let r = match Revoke::from_request(req) {
        Ok(r) => r,
        Err(e) => return wire::error(e),
    };
    let mut running = Vec::new();
    for id in &r.task_ids {
        tracing::info!(task_id = %id, terminate = r.terminate, signal = %r.signal, "revoked");
        if pool.revocations.revoke(id, r.terminate) {
            running.push(id.clone());
        }
    }
    if r.terminate {
        wire::ok(wire::terminated_text(&running))
    } else {
        wire::ok(wire::revoked_text(&r.task_ids))
    }
}

/// `shutdown`: the two-phase drain SIGTERM does. Celery sends no reply.
pub fn shutdown<S: StepRunner, R: ResultStore>(pool: &P<S, R>) -> Option<Value> {
    tracing::warn!("Got shutdown from remote");
    pool.broker.shutdown.send_replace(true);
    None
}

/// `heartbeat`: a `worker-heartbeat` event now.
pub fn heartbeat<S: StepRunner, R: ResultStore>(pool: &P<S, R>) -> Value {
    pool.events.manual_heartbeat();
    Value::Null
}

/// `enable_events` / `disable_events`.
pub fn events<S: StepRunner, R: ResultStore>(pool: &P<S, R>, on: bool) -> Value {
    if !pool.events.publishing() {
        return wire::error("event dispatcher unavailable");
    }
    let word = if on { "enabled" } else { "disabled" };
    if pool.events.set_task_events(on) {
        tracing::info!("task events {word}");
        wire::ok(format!("task events {word}"))
    } else {
        wire::ok(format!("task events already {word}"))
    }
}

fn queue_arg(req: &Request) -> Result<String, Value> {
    req.arg("queue")
        .and_then(Value::as_str)
        .filter(|q| !q.trim().is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            wire::error(format!(
                "TypeError(\"{}() missing 1 required positional argument: 'queue'\")",
                req.method
            ))
        })
}

/// `add_consumer`: declares the queue as Celery does and consumes it, now
/// and after every reconnection.
pub async fn add_consumer<S: StepRunner, R: ResultStore>(
    pool: &P<S, R>,
    session: &mut Session,
    req: &Request,
) -> Value {
    let queue = match queue_arg(req) {
        Ok(q) => q,
        Err(e) => return e,
    };
    if let Err(e) = session.add_queue(&queue, &pool.config.hostname).await {
        return wire::error(format!("cannot consume {queue}: {e}"));
    }
    let mut queues = pool.broker.queues();
    if !queues.contains(&queue) {
        queues.push(queue.clone());
        pool.broker.set_queues(queues);
    }
    tracing::info!(%queue, "consuming a queue added by remote control");
    wire::ok(format!("add consumer {queue}"))
}

/// `cancel_consumer`: stops consuming the queue (same reply whether it was).
pub async fn cancel_consumer<S: StepRunner, R: ResultStore>(
    pool: &P<S, R>,
    session: &mut Session,
    req: &Request,
) -> Value {
    let queue = match queue_arg(req) {
        Ok(q) => q,
        Err(e) => return e,
    };
    if let Err(e) = session.cancel_queue(&queue).await {
        return wire::error(format!("cannot cancel {queue}: {e}"));
    }
    let queues: Vec<String> = pool
        .broker
        .queues()
        .into_iter()
        .filter(|q| *q != queue)
        .collect();
    pool.broker.set_queues(queues);
    tracing::info!(%queue, "no longer consuming a queue, by remote control");
    wire::ok(format!("no longer consuming from {queue}"))
}

fn count(req: &Request) -> usize {
    match req.arg("n") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(1) as usize,
        Some(Value::String(s)) => s.parse().unwrap_or(1),
        _ => 1,
    }
}

/// `pool_grow`: more steps at once.
pub fn pool_grow<S: StepRunner, R: ResultStore>(pool: &Arc<P<S, R>>, req: &Request) -> Value {
    pool.grow(count(req));
    tracing::info!(
        concurrency = pool.concurrency(),
        "concurrency raised by remote control"
    );
    wire::ok("pool will grow")
}

/// `pool_shrink`: fewer steps at once (never below one).
pub fn pool_shrink<S: StepRunner, R: ResultStore>(pool: &Arc<P<S, R>>, req: &Request) -> Value {
    if pool.shrink(count(req)) == 0 {
        return wire::error("ValueError(\"Can't shrink pool. The concurrency is 1.\")");
    }
    tracing::info!(
        concurrency = pool.concurrency(),
        "concurrency lowered by remote control"
    );
    wire::ok("pool will shrink")
}

/// `autoscale`: the concurrency limit becomes `max` (Runway runs steps as
/// Jobs, so there are no idle processes to keep at `min`).
pub fn autoscale<S: StepRunner, R: ResultStore>(pool: &Arc<P<S, R>>, req: &Request) -> Value {
    let num = |k: &str| match req.arg(k) {
        Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    match (num("max"), num("min")) {
        (Some(max), min) if max >= 1 => {
            let min = min.unwrap_or(max).min(max);
            pool.resize(max);
            wire::ok(format!("autoscale now max={max} min={min}"))
        }
        _ => wire::error("TypeError(\"autoscale() needs max (at least 1) and min\")"),
    }
}

/// What a Runway worker does not do, in Celery's error form.
pub fn not_supported(method: &str) -> Value {
    let why = match method {
        "rate_limit" => {
            "runway worker does not rate-limit tasks: a step's pace is set by its Kubernetes Job"
        }
        "time_limit" => {
            "runway worker does not apply Celery time limits: the step's job_wait_timeout bounds it"
        }
        "pool_restart" => {
            "runway worker has no child processes to restart: steps run as Kubernetes Jobs"
        }
        _ => "runway worker does not revoke by stamped headers",
    };
    wire::error(format!("NotImplementedError('{why}')"))
}
