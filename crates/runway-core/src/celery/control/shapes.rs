//! The reply values of Celery 5.7's inspect commands, in the shapes
//! `celery/worker/control.py` gives them and Flower 2.2 reads: task info
//! (`active`, `reserved`, `query_task`), queue info (`active_queues`, kombu's
//! `Queue.as_dict`), `stats` and `conf`.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::py_repr;
use crate::celery::topology::QueueSpec;

/// Where a task's message came from (`delivery_info`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryInfo {
    pub exchange: String,
    pub routing_key: String,
    pub priority: Option<u8>,
    pub redelivered: bool,
}

/// A task this worker holds, as `Request.info` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    pub id: String,
    pub name: String,
    /// The task's kwargs, and their `kwargsrepr` header (for `safe`). Shared
    /// with the task itself: a held task's kwargs are not copied for the
    /// inspect replies that may never come.
    pub kwargs: Arc<Map<String, Value>>,
    pub kwargsrepr: String,
    pub hostname: String,
    /// Unix seconds the step started; `None` while reserved.
    pub time_start: Option<f64>,
    pub acknowledged: bool,
    pub delivery_info: DeliveryInfo,
    pub worker_pid: Option<u32>,
    /// The step Job Runway runs it as (a field Celery's workers lack).
    pub step_job: Option<String>,
}

impl TaskInfo {
    /// With `safe`, args and kwargs are their reprs (what `active(safe=True)`
    /// and Flower ask for); otherwise the values.
    pub fn to_value(&self, safe: bool) -> Value {
        let (args, kwargs) = if safe {
            (Value::from("()"), Value::from(self.kwargsrepr.clone()))
        } else {
            (json!([]), Value::Object(Map::clone(&self.kwargs)))
        };
        json!({
            "id": self.id,
            "name": self.name,
            "args": args,
            "kwargs": kwargs,
            "type": self.name,
            "hostname": self.hostname,
            "time_start": self.time_start,
            "acknowledged": self.acknowledged,
            "delivery_info": {
                "exchange": self.delivery_info.exchange,
                "routing_key": self.delivery_info.routing_key,
                "priority": self.delivery_info.priority,
                "redelivered": self.delivery_info.redelivered,
            },
            "worker_pid": self.worker_pid,
            "step_job": self.step_job,
        })
    }
}

/// One consumed queue, as kombu's `Queue.as_dict(recurse=True)`.
pub fn queue_info(spec: &QueueSpec) -> Value {
    json!({
        "name": spec.queue,
        "exchange": {
            "name": spec.exchange,
            "type": "direct",
            "arguments": null,
            "durable": spec.durable,
            "passive": false,
            "auto_delete": spec.auto_delete,
            "delivery_mode": null,
            "no_declare": false,
        },
        "routing_key": spec.binding_key,
        "queue_arguments": {"x-max-priority": spec.max_priority},
        "binding_arguments": null,
        "consumer_arguments": null,
        "durable": spec.durable,
        "exclusive": false,
        "auto_delete": spec.auto_delete,
        "no_ack": false,
        "alias": null,
        "bindings": [],
        "no_declare": null,
        "expires": null,
        "message_ttl": null,
        "max_length": null,
        "max_length_bytes": null,
        "max_priority": spec.max_priority,
    })
}

/// `getrusage(RUSAGE_SELF)` as `stats` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rusage {
    pub utime: f64,
    pub stime: f64,
    /// Kilobytes.
    pub maxrss: u64,
    pub minflt: u64,
    pub majflt: u64,
    pub nvcsw: u64,
    pub nivcsw: u64,
}

impl Rusage {
    pub fn to_value(&self) -> Value {
        json!({
            "utime": self.utime, "stime": self.stime, "maxrss": self.maxrss,
            "ixrss": 0, "idrss": 0, "isrss": 0,
            "minflt": self.minflt, "majflt": self.majflt, "nswap": 0,
            "inblock": 0, "oublock": 0, "msgsnd": 0, "msgrcv": 0, "nsignals": 0,
            "nvcsw": self.nvcsw, "nivcsw": self.nivcsw,
        })
    }
}

/// What `stats` reports of a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub task_name: String,
    /// Tasks taken on (Celery's `total`, counted at start).
    pub processed: u64,
    pub pid: u32,
    pub clock: u64,
    pub uptime_secs: u64,
    pub concurrency: usize,
    /// The step Jobs running now.
    pub running: Vec<String>,
    pub broker_url: String,
    pub heartbeat_secs: u16,
    pub prefetch_count: u16,
    pub rusage: Option<Rusage>,
}

impl Stats {
    pub fn to_value(&self) -> Value {
        json!({
            "total": {self.task_name.clone(): self.processed},
            "pid": self.pid,
            "clock": self.clock.to_string(),
            "uptime": self.uptime_secs,
            "pool": {
                "implementation": "runway.worker:StepJobPool",
                "max-concurrency": self.concurrency,
                "processes": [self.pid],
                "max-tasks-per-child": "N/A",
                "put-guarded-by-semaphore": false,
                "timeouts": [0, 0],
                "running-step-jobs": self.running,
            },
            "broker": broker_info(&self.broker_url, self.heartbeat_secs),
            "prefetch_count": self.prefetch_count,
            "rusage": self.rusage.map_or_else(|| Value::from("N/A"), |r| r.to_value()),
        })
    }
}

/// The parts of an AMQP URL `stats.broker` shows (never the password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub ssl: bool,
    pub userid: String,
    pub password: Option<String>,
    pub hostname: String,
    pub port: u16,
    pub virtual_host: String,
}

/// Parses `amqp[s]://user:password@host:port/vhost` (`//` is the vhost `/`).
pub fn parse_broker_url(url: &str) -> Option<BrokerUrl> {
    let (scheme, rest) = url.split_once("://")?;
    let ssl = scheme.eq_ignore_ascii_case("amqps");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (creds, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (user, password) = match creds.split_once(':') {
        Some((u, p)) => (u, Some(decode(p))),
        None => (creds, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, if ssl { 5671 } else { 5672 }),
    };
    let vhost = if path.is_empty() {
        "/".to_owned()
    } else {
        decode(path)
    };
    Some(BrokerUrl {
        ssl,
        userid: if user.is_empty() {
            "guest".into()
        } else {
            decode(user)
        },
        password,
        hostname: if host.is_empty() {
            "localhost".into()
        } else {
            host.into()
        },
        port,
        virtual_host: vhost,
    })
}

/// Percent-decoding of URL parts.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `stats.broker`: kombu's `Connection.info()` without the password.
pub fn broker_info(url: &str, heartbeat_secs: u16) -> Value {
    let b = parse_broker_url(url).unwrap_or(BrokerUrl {
        ssl: false,
        userid: String::new(),
        password: None,
        hostname: String::new(),
        port: 0,
        virtual_host: "/".into(),
    });
    json!({
        "hostname": b.hostname, "userid": b.userid, "virtual_host": b.virtual_host,
        "port": b.port, "insist": false, "ssl": b.ssl, "transport": "amqp",
        "connect_timeout": 4, "transport_options": {}, "login_method": "PLAIN",
        "uri_prefix": null, "heartbeat": f64::from(heartbeat_secs),
        "failover_strategy": "round-robin", "alternates": [], "credential_provider": null,
    })
}

/// A URL with its password replaced by eight asterisks, as Celery masks it.
pub fn mask_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:********{}", &url[..s + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// The settings `conf` reports (lowercase Celery names, secrets masked).
#[derive(Debug, Clone, PartialEq)]
pub struct Conf {
    pub broker_url: String,
    pub result_backend: String,
    pub result_expires_secs: u64,
    pub concurrency: usize,
    pub prefetch_count: u16,
    pub queues: Vec<QueueSpec>,
    pub task_events: bool,
    pub version: String,
}

impl Conf {
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_owned(), v);
        };
        put("broker_url", mask_url(&self.broker_url).into());
        put("result_backend", mask_url(&self.result_backend).into());
        put("result_expires", self.result_expires_secs.into());
        put("result_serializer", "json".into());
        put("task_serializer", "json".into());
        put("accept_content", json!(["json"]));
        put("task_acks_late", true.into());
        put("worker_concurrency", self.concurrency.into());
        put(
            "worker_prefetch_multiplier",
            (usize::from(self.prefetch_count) / self.concurrency.max(1))
                .max(1)
                .into(),
        );
        put("worker_send_task_events", self.task_events.into());
        put("task_queues", self.queues.iter().map(queue_info).collect());
        put("include", json!([]));
        put("runway_version", self.version.clone().into());
        Value::Object(m)
    }

    /// The text of `report`: software, platform and settings.
    pub fn report(&self) -> String {
        let transport =
            parse_broker_url(&self.broker_url)
                .map_or("amqp", |b| if b.ssl { "amqps" } else { "amqp" });
        let mut out = format!(
            "\nsoftware -> runway:{} (Celery 5.7 protocol v2, task execute_step_k8s_job)\n\
             platform -> system:Linux arch:64bit\n\
             settings -> transport:{transport} results:{}\n\n",
            self.version,
            mask_url(&self.result_backend)
        );
        let conf = self.to_value();
        if let Some(m) = conf.as_object() {
            for (k, v) in m {
                let shown = match v {
                    Value::String(s) => py_repr(s),
                    other => other.to_string(),
                };
                out.push_str(&format!("{k}: {shown}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
