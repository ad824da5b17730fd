//! Sending Celery's worker and task events, so Flower and `celery events`
//! show Runway workers and their tasks. As in Celery, worker events
//! (online, heartbeat, offline) always go out, and task events only while
//! enabled (`--task-events`, or the `enable_events` control command Flower
//! sends every few seconds). Events go out through a bounded queue on the
//! publishing channel; when the broker is away or the queue is full they are
//! dropped and counted, as Celery drops them when its buffer is off.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::broker::amqp::CELERYEV;
use runway_core::celery::events::{routing_key, Sender};

/// The event sender. Its Lamport clock is the worker's (`app.clock`): the
/// control commands forward it too.
#[derive(Debug)]
pub struct Events {
    tx: Option<mpsc::Sender<Value>>,
    sender: Sender,
    clock: AtomicU64,
    task_events: AtomicBool,
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
    fn new(hostname: &str, tx: Option<mpsc::Sender<Value>>, task_events: bool) -> Arc<Events> {
        Arc::new(Events {
            tx,
            task_events: AtomicBool::new(task_events),
            sender: Sender {
                hostname: hostname.to_owned(),
                pid: std::process::id(),
                utcoffset: 0.0,
            },
            clock: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// A sender that sends nothing (tests of the pool).
    pub fn disabled(hostname: &str) -> Arc<Events> {
        Events::new(hostname, None, false)
    }

    /// The sender and the task that publishes its events on the current channel.
    /// The sender and the task that publishes its events on the current
    /// channel; task events start enabled or not.
    pub fn start(
        hostname: &str,
        task_events: bool,
        channel: watch::Receiver<Option<Channel>>,
        mut stop: watch::Receiver<bool>,
    ) -> (Arc<Events>, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Value>(QUEUE);
        let events = Events::new(hostname, Some(tx), task_events);
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

    /// Whether task events go out (`enable_events` / `disable_events`).
    pub fn task_events(&self) -> bool {
        self.tx.is_some() && self.task_events.load(Ordering::Relaxed)
    }

    /// Turns task events on or off; `false` when they already were.
    pub fn set_task_events(&self, on: bool) -> bool {
        self.task_events.swap(on, Ordering::Relaxed) != on
    }

    /// Whether events go out at all (a publisher runs).
    pub fn publishing(&self) -> bool {
        self.tx.is_some()
    }

    /// The worker's Lamport clock.
    pub fn clock(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    /// A message stamped `seen` arrived: the clock moves past it.
    pub fn forward(&self, seen: u64) -> u64 {
        let mut now = self.clock.load(Ordering::Relaxed);
        loop {
            let next = now.max(seen) + 1;
            match self
                .clock
                .compare_exchange(now, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => now = actual,
            }
        }
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
        if self.task_events() {
            let ev = self.sender.event(event_type, self.tick(), now(), fields);
            self.push(ev);
        }
    }

    /// The `heartbeat` control command's event.
    pub fn manual_heartbeat(&self) {
        let ev = self.sender.manual_heartbeat(self.tick(), now());
        self.push(ev);
    }

    pub fn worker(&self, event_type: &str, active: usize, processed: u64) {
        if self.publishing() {
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
