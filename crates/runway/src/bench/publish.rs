//! `runway bench publish`: task messages published with confirms through
//! Runway's publisher (encode + publish, what SubmitStep does), next to the
//! raw ceiling of the same tool (lapin publishing the same pre-encoded bytes
//! with the same confirm window) and to Python Celery's `apply_async` of the
//! same kwargs, all against the same RabbitMQ in the same run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt as _};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::{Connection, ConnectionProperties};
use serde_json::{json, Value};
use thiserror::Error;

use crate::broker::amqp;
use crate::broker::publish::{properties, uuid4, Publisher};
use runway_core::celery::message::{encode, Encoded, NewTask};
use runway_core::celery::pyval::PyVal;
use runway_core::celery::topology::queue_spec;

#[derive(Debug, Error)]
pub enum Error {
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("publisher: {0}")]
    Publish(#[from] crate::broker::publish::Error),
    #[error("the broker refused a message")]
    Nacked,
    #[error("the Python peer: {0}")]
    Python(String),
}

/// The flags of `runway bench publish`.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishBench {
    #[arg(skip)]
    pub root: PathBuf,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672//")]
    pub broker_url: String,
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Body size of each task message, in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Publishes awaiting their confirm at once.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Python with celery for the peer (default: .venv/bin/python when present).
    #[arg(long)]
    pub python: Option<PathBuf>,
    #[arg(long, default_value_t = 2_000)]
    pub python_messages: usize,
}

/// Keyword arguments shaped like a step task's, padded so the encoded body
/// has about `size` bytes.
pub fn kwargs_of_size(size: usize) -> PyVal {
    let build = |pad: usize| {
        PyVal::Dict(vec![
            (
                "execute_step_args_packed".into(),
                PyVal::Dict(vec![
                    ("__class__".into(), PyVal::Str("ExecuteStepArgs".into())),
                    ("pad".into(), PyVal::Str("x".repeat(pad))),
                ]),
            ),
            ("job_config_dict".into(), PyVal::Dict(Vec::new())),
            ("job_namespace".into(), PyVal::Str("dagster".into())),
            ("load_incluster_config".into(), PyVal::Bool(true)),
            ("job_wait_timeout".into(), PyVal::Float(86400.0)),
        ])
    };
    let base = message(&build(0), "00000000-0000-4000-8000-000000000000")
        .body
        .len();
    build(size.saturating_sub(base))
}

fn message(kwargs: &PyVal, id: &str) -> Encoded {
    encode(&NewTask {
        id,
        task: runway_core::celery::STEP_TASK,
        kwargs,
        origin: "gen0@runway-bench",
        reply_to: "runway-bench",
        priority: 5,
    })
}

/// The raw ceiling: the same bytes and properties, no encoding, `window`
/// confirms outstanding.
async fn raw(url: &str, queue: &str, msg: &Encoded, n: usize, window: usize) -> Result<f64, Error> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    amqp::declare(&ch, &queue_spec(queue)).await?;
    let props = properties(msg);
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for _ in 0..n {
        if pending.len() >= window {
            if let Some(c) = pending.next().await {
                check(c)?;
            }
        }
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                msg.body.as_bytes(),
                props.clone(),
            )
            .await?;
        pending.push(confirm);
    }
    while let Some(c) = pending.next().await {
        check(c)?;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = conn.close(200, "bench done".into()).await;
    Ok(rate)
}

fn check(c: lapin::Result<lapin::Confirmation>) -> Result<(), Error> {
    if c?.is_nack() {
        return Err(Error::Nacked);
    }
    Ok(())
}

/// Runway's path: encode each message (its own task id) and publish through
/// the shared publisher, `window` callers at once.
async fn runway(
    url: &str,
    queue: &str,
    kwargs: &PyVal,
    n: usize,
    window: usize,
) -> Result<f64, Error> {
    let publisher = Publisher::new(url, Default::default());
    // Connect and declare outside the timing, as a running service has.
    publisher.publish(queue, &message(kwargs, &uuid4())).await?;
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for _ in 0..n {
        if pending.len() >= window {
            if let Some(r) = pending.next().await {
                r?;
            }
        }
        let publisher = &publisher;
        pending.push(async move {
            let msg = message(kwargs, &uuid4());
            publisher.publish(queue, &msg).await
        });
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn python_peer(b: &PublishBench, python: &Path, queue: &str) -> Result<Value, Error> {
    let args = [
        "--broker".to_owned(),
        b.broker_url.clone(),
        "--queue".into(),
        queue.to_owned(),
        "--messages".into(),
        b.python_messages.to_string(),
        "--size".into(),
        b.size.to_string(),
    ];
    super::python_json(
        python,
        &b.root.join("benches/python/celery_publish.py"),
        &args,
    )
    .map_err(Error::Python)
}

async fn cleanup(url: &str, queues: &[String]) -> Result<(), Error> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    for q in queues {
        let _ = ch
            .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await;
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "bench done".into()).await;
    Ok(())
}

pub async fn run(b: &PublishBench) -> Result<Vec<Value>, Error> {
    let tag = &uuid4()[..8];
    let (q_raw, q_rw, q_py) = (
        format!("runway-bench-raw-{tag}"),
        format!("runway-bench-rw-{tag}"),
        format!("runway-bench-py-{tag}"),
    );
    let kwargs = kwargs_of_size(b.size);
    let sample = message(&kwargs, &uuid4());
    let window = b.window.max(1);
    // Alternating rounds, best of each: the machine is shared and noisy.
    let (mut best_raw, mut best_rw) = (0f64, 0f64);
    for _ in 0..2 {
        best_raw = best_raw.max(raw(&b.broker_url, &q_raw, &sample, b.messages, window).await?);
        cleanup(&b.broker_url, std::slice::from_ref(&q_raw)).await?;
        best_rw = best_rw.max(runway(&b.broker_url, &q_rw, &kwargs, b.messages, window).await?);
        cleanup(&b.broker_url, std::slice::from_ref(&q_rw)).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut lines = vec![
        json!({"bench": "publish", "impl": "lapin raw", "what": "publishes with confirms, pre-encoded",
               "messages": b.messages, "body_bytes": sample.body.len(), "window": window,
               "publishes_per_s": best_raw}),
        json!({"bench": "publish", "impl": "runway", "what": "encode + publish with confirms (SubmitStep's path)",
               "messages": b.messages, "body_bytes": sample.body.len(), "window": window,
               "publishes_per_s": best_rw, "ratio_to_raw": best_rw / best_raw}),
    ];
    if let Some(python) = &b.python {
        let peer = python_peer(b, python, &q_py)?;
        let py = peer["publishes_per_s"].as_f64().unwrap_or(f64::NAN);
        lines.push(peer);
        lines.push(json!({"bench": "publish", "what": "ratio runway/python",
                          "publishes_per_s": best_rw / py}));
    }
    cleanup(&b.broker_url, &[q_raw, q_rw, q_py]).await?;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_reaches_the_asked_size() {
        for size in [600, 1024, 4096] {
            let len = message(&kwargs_of_size(size), &uuid4()).body.len();
            assert!(len.abs_diff(size) <= 2, "{size}: {len}");
        }
    }
}
