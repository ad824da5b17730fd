//! Prometheus metrics of `runway serve` (and later `runway worker`), in one
//! registry rendered at `/metrics`.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeLabels {
    pub verb: &'static str,
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabel {
    pub verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

/// The crate version and the git revision the binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = env!("RUNWAY_REVISION");

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 100 µs .. ~26 s
    exponential_buckets(0.0001, 2.0, 19)
}

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub launch_latency: Family<RpcLabels, Histogram>,
    pub rpcs: Family<RpcLabels, Counter>,
    pub kube_requests: Family<KubeLabels, Counter>,
    pub kube_latency: Family<VerbLabel, Histogram>,
    pub kube_retries: Counter,
    pub kube_throttled: Counter,
    pub kube_rate_limit_wait: Histogram,
    pub watch_restarts: Family<KindLabel, Counter>,
    pub watch_relists: Family<KindLabel, Counter>,
    pub cluster_resets: Counter,
    pub index_jobs: Gauge<i64, AtomicI64>,
    pub index_pods: Gauge<i64, AtomicI64>,
    pub index_runs: Gauge<i64, AtomicI64>,
    pub health_checks: Family<StatusLabel, Counter>,
    pub transitions: Counter,
    pub watch_streams: Gauge<i64, AtomicI64>,
    pub watch_streams_cut: Counter,
    pub watch_streams_refused: Counter,
    /// `runway worker`: tasks by final state.
    pub tasks: Family<StatusLabel, Counter>,
    pub tasks_in_flight: Gauge<i64, AtomicI64>,
    /// Deliveries refused before running (undecodable, unregistered).
    pub tasks_rejected: Counter,
    /// Redeliveries answered from an existing result or a running copy.
    pub tasks_deduplicated: Counter,
    pub broker_connects: Counter,
    /// From the end of the wait on the step Job to the stored result.
    pub result_latency: Histogram,
    pub result_store_retries: Counter,
    /// Held deliveries handed to a parked copy at the ack deadline.
    pub tasks_parked: Counter,
    pub claims_lost: Counter,
    pub event_write_retries: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("runway");
        let launch_latency = Family::<RpcLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let kube_latency = Family::<VerbLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let m = Metrics {
            launch_latency,
            rpcs: Family::default(),
            kube_requests: Family::default(),
            kube_latency,
            kube_retries: Counter::default(),
            kube_throttled: Counter::default(),
            kube_rate_limit_wait: Histogram::new(latency_buckets()),
            watch_restarts: Family::default(),
            watch_relists: Family::default(),
            cluster_resets: Counter::default(),
            index_jobs: Gauge::default(),
            index_pods: Gauge::default(),
            index_runs: Gauge::default(),
            health_checks: Family::default(),
            transitions: Counter::default(),
            watch_streams: Gauge::default(),
            watch_streams_cut: Counter::default(),
            watch_streams_refused: Counter::default(),
            tasks: Family::default(),
            tasks_in_flight: Gauge::default(),
            tasks_rejected: Counter::default(),
            tasks_deduplicated: Counter::default(),
            broker_connects: Counter::default(),
            result_latency: Histogram::new(latency_buckets()),
            result_store_retries: Counter::default(),
            tasks_parked: Counter::default(),
            claims_lost: Counter::default(),
            event_write_retries: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "build",
            "The version and git revision this binary was built from",
            Info::new(BuildLabels {
                version: VERSION,
                revision: REVISION,
            }),
        );
        registry.register(
            "launch_duration_seconds",
            "LaunchRun/ResumeRun latency, request to Job accepted",
            m.launch_latency.clone(),
        );
        registry.register(
            "grpc_requests",
            "gRPC calls by method and status code",
            m.rpcs.clone(),
        );
        registry.register(
            "kube_requests",
            "Kubernetes API calls by verb, resource and HTTP status (\"error\": no response)",
            m.kube_requests.clone(),
        );
        registry.register(
            "kube_request_duration_seconds",
            "Kubernetes API call latency by verb",
            m.kube_latency.clone(),
        );
        registry.register(
            "kube_retries",
            "Kubernetes API calls retried",
            m.kube_retries.clone(),
        );
        registry.register(
            "kube_throttled",
            "Kubernetes API calls refused because the client-side rate limit queue was full",
            m.kube_throttled.clone(),
        );
        registry.register(
            "kube_rate_limit_wait_seconds",
            "Time spent waiting for the client-side rate limiter",
            m.kube_rate_limit_wait.clone(),
        );
        registry.register(
            "watch_restarts",
            "Watch streams that failed and were restarted",
            m.watch_restarts.clone(),
        );
        registry.register(
            "watch_relists",
            "Full relists by the watches (start, 410 Gone)",
            m.watch_relists.clone(),
        );
        registry.register(
            "cluster_resets",
            "Times the Kubernetes API was found to have lost its state (watches relisted)",
            m.cluster_resets.clone(),
        );
        registry.register(
            "index_jobs",
            "Jobs in the watch index",
            m.index_jobs.clone(),
        );
        registry.register(
            "index_pods",
            "Pods in the watch index",
            m.index_pods.clone(),
        );
        registry.register(
            "index_runs",
            "Runs in the watch index",
            m.index_runs.clone(),
        );
        registry.register(
            "health_checks",
            "CheckRunWorkerHealth answers by status",
            m.health_checks.clone(),
        );
        registry.register(
            "transitions",
            "Run status transitions seen by the index",
            m.transitions.clone(),
        );
        registry.register(
            "watch_runs_streams",
            "Open WatchRuns streams",
            m.watch_streams.clone(),
        );
        registry.register(
            "watch_runs_streams_cut",
            "WatchRuns streams ended because the consumer fell behind",
            m.watch_streams_cut.clone(),
        );
        registry.register(
            "watch_streams_refused",
            "WatchRuns streams refused at the --max-watch-streams limit",
            m.watch_streams_refused.clone(),
        );
        registry.register(
            "worker_tasks",
            "Celery tasks finished, by state",
            m.tasks.clone(),
        );
        registry.register(
            "worker_tasks_in_flight",
            "Celery tasks running",
            m.tasks_in_flight.clone(),
        );
        registry.register(
            "worker_tasks_rejected",
            "Deliveries refused before running (not decodable, not registered)",
            m.tasks_rejected.clone(),
        );
        registry.register(
            "worker_tasks_deduplicated",
            "Redeliveries answered from a stored result or a running copy",
            m.tasks_deduplicated.clone(),
        );
        registry.register(
            "worker_broker_connects",
            "Connections made to the broker",
            m.broker_connects.clone(),
        );
        registry.register(
            "worker_result_latency_seconds",
            "From the step Job's end to the stored result",
            m.result_latency.clone(),
        );
        registry.register(
            "worker_result_store_retries",
            "Result writes retried",
            m.result_store_retries.clone(),
        );
        registry.register(
            "worker_tasks_parked",
            "Held deliveries acknowledged after parking a copy at the ack deadline",
            m.tasks_parked.clone(),
        );
        registry.register(
            "worker_claims_lost",
            "Tasks whose claim lapsed while they ran (a pause past its lifetime); another worker took them over and this one reported nothing",
            m.claims_lost.clone(),
        );
        registry.register(
            "worker_event_write_retries",
            "Event-log writes retried because PostgreSQL did not take them",
            m.event_write_retries.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn kube_request(&self, verb: &'static str, resource: &str, code: &str, seconds: f64) {
        self.kube_requests
            .get_or_create(&KubeLabels {
                verb,
                resource: resource.to_owned(),
                code: code.to_owned(),
            })
            .inc();
        self.kube_latency
            .get_or_create(&VerbLabel { verb })
            .observe(seconds);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
