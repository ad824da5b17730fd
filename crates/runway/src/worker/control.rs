//! Celery's remote control for a Runway worker: what `celery inspect`,
//! `celery control`, `celery status` and Flower send to the worker's
//! mailbox, answered in Celery 5.7's reply shapes. Requests not meant for
//! this node are ignored; casts (no `reply_to`) act without replying, as
//! kombu's `Node.dispatch` does. `inspect` reads the pool; `act` changes it.

mod act;
mod inspect;

use lapin::message::Delivery;
use serde_json::Value;

use super::consume::{AmqpBroker, Session};
use super::pool::Pool;
use super::runner::StepRunner;
use crate::broker::amqp;
use crate::results::backend::ResultStore;
use runway_core::celery::control::{self as wire, Request};

/// One mailbox message: run it if it is meant for this node, and reply
/// when the caller waits for one.
pub async fn handle<S: StepRunner, R: ResultStore>(
    pool: &std::sync::Arc<Pool<S, R, AmqpBroker>>,
    session: &mut Session,
    delivery: &Delivery,
) {
    let req = match Request::parse(&delivery.data) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "ignored a malformed control message");
            return;
        }
    };
    if !req.is_for(&pool.config.hostname) {
        return;
    }
    let clock = pool.events.forward(clock_of(delivery));
    tracing::debug!(method = %req.method, "control request");
    let Some(value) = dispatch(pool, session, &req).await else {
        return;
    };
    let (Some(reply_to), Some(control)) = (&req.reply_to, &session.control) else {
        return;
    };
    let body = Request::reply_body(&pool.config.hostname, value);
    if let Err(e) =
        amqp::publish_reply(control, reply_to, req.ticket.as_deref(), clock, &body).await
    {
        tracing::warn!(method = %req.method, error = %e, "sending a control reply failed");
    }
}

/// The request's Lamport clock: kombu's `clock` header.
fn clock_of(delivery: &Delivery) -> u64 {
    delivery
        .properties
        .headers()
        .as_ref()
        .map(amqp::headers_to_json)
        .and_then(|h| h.get("clock").and_then(Value::as_u64))
        .unwrap_or(0)
}

/// The reply value; `None` for a command that sends no reply (`shutdown`).
async fn dispatch<S: StepRunner, R: ResultStore>(
    pool: &std::sync::Arc<Pool<S, R, AmqpBroker>>,
    session: &mut Session,
    req: &Request,
) -> Option<Value> {
    let value = match req.method.as_str() {
        "ping" => wire::ok("pong"),
        "clock" => serde_json::json!({"clock": pool.events.clock()}),
        "stats" => inspect::stats(pool),
        "active" | "dump_active" => inspect::active(pool, req),
        "reserved" | "dump_reserved" => inspect::reserved(pool, req),
        "scheduled" | "dump_schedule" => inspect::scheduled(pool, req),
        "registered" | "dump_tasks" => inspect::registered(pool),
        "active_queues" => inspect::active_queues(pool),
        "revoked" | "dump_revoked" => inspect::revoked(pool),
        "conf" | "dump_conf" => inspect::conf(pool),
        "report" => wire::ok(inspect::report(pool)),
        "query_task" => inspect::query_task(pool, req),
        "memsample" => Value::Null,
        "memdump" => Value::from(inspect::memdump()),
        "objgraph" => wire::error("ImportError('Requires the objgraph library')"),
        "hello" => inspect::hello(pool, req),
        "election" => Value::Null,
        "revoke" | "terminate" => act::revoke(pool, req),
        "shutdown" => return act::shutdown(pool),
        "heartbeat" => act::heartbeat(pool),
        "enable_events" => act::events(pool, true),
        "disable_events" => act::events(pool, false),
        "add_consumer" => act::add_consumer(pool, session, req).await,
        "cancel_consumer" => act::cancel_consumer(pool, session, req).await,
        "pool_grow" => act::pool_grow(pool, req),
        "pool_shrink" => act::pool_shrink(pool, req),
        "autoscale" => act::autoscale(pool, req),
        "rate_limit" | "time_limit" | "pool_restart" | "revoke_by_stamped_headers" => {
            act::not_supported(&req.method)
        }
        other => wire::unknown_method(other),
    };
    Some(value)
}
