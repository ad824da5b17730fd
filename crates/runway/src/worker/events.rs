//! Sending Celery's worker and task events (`--task-events`), so Flower and
//! `celery events` show Runway workers and their tasks. Events go out
//! through a bounded queue on the publishing channel; when the broker is away
//! or the queue is full they are dropped and counted, as Celery drops them
//! when its buffer is off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::broker::amqp::CELERYEV;
use runway_core::celery::events::{routing_key, Sender};

/// The event sender; `None` inside when events are off.
#[derive(Debug)]
pub struct Events {
    tx: Option<mpsc::Sender<Value>>,
    sender: Sender,
    clock: AtomicU64,
    pub dropped: AtomicU64,
}

const QUEUE: usize = 4096;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl Events {
    fn new(hostname: &str, tx: Option<mpsc::Sender<Value>>) -> Arc<Events> {
        Arc::new(Events {
            tx,
            sender: Sender {
                hostname: hostname.to_owned(),
                pid: std::process::id(),
                utcoffset: 0.0,
            },
            clock: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn disabled(hostname: &str) -> Arc<Events> {
        Events::new(hostname, None)
    }

    /// The sender and the task that publishes its events on the current channel.
    pub fn start(
        hostname: &str,
        channel: watch::Receiver<Option<Channel>>,
        mut stop: watch::Receiver<bool>,
    ) -> (Arc<Events>, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Value>(QUEUE);
        let events = Events::new(hostname, Some(tx));
        let me = events.clone();
        let task = tokio::spawn(async move {
            let mut headers = FieldTable::default();
            headers.insert(
                "hostname".into(),
                AMQPValue::LongString(LongString::from(me.sender.hostname.as_bytes().to_vec())),
            );
            loop {
                let ev = tokio::select! {
                    _ = crate::stop::stopped(&mut stop) => return,
                    ev = rx.recv() => match ev {
                        Some(ev) => ev,
                        None => return,
                    },
                };
                let Some(ch) = channel.borrow().clone() else {
                    me.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let ty = ev["type"].as_str().unwrap_or("").to_owned();
                let props = BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_content_encoding("utf-8".into())
                    .with_delivery_mode(1)
                    .with_headers(headers.clone());
                let body = ev.to_string();
                // Events are not worth a confirm round trip; a lost one is
                // superseded by the next heartbeat or task event.
                if ch
                    .basic_publish(
                        CELERYEV.into(),
                        routing_key(&ty).as_str().into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        props,
                    )
                    .await
                    .is_err()
                {
                    me.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        (events, task)
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    fn push(&self, ev: Value) {
        if let Some(tx) = &self.tx {
            if tx.try_send(ev).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn task(&self, event_type: &str, fields: Vec<(&str, Value)>) {
        if self.enabled() {
            let ev = self.sender.event(event_type, self.tick(), now(), fields);
            self.push(ev);
        }
    }

    pub fn worker(&self, event_type: &str, active: usize, processed: u64) {
        if self.enabled() {
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            let mut it = load.split_whitespace().map(|x| x.parse().unwrap_or(0.0));
            let loadavg = [
                it.next().unwrap_or(0.0),
                it.next().unwrap_or(0.0),
                it.next().unwrap_or(0.0),
            ];
            let ev = self
                .sender
                .worker(event_type, self.tick(), now(), active, processed, loadavg);
            self.push(ev);
        }
    }
}
