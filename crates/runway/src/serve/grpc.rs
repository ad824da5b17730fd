//! The tonic side of `runway serve`: proto in, [`Launch`] calls, proto out,
//! errors as gRPC statuses that name the field and the fix.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::{watch, Semaphore};
use tonic::{Request, Response, Status};

use super::{status_name, Error, Launch};
use crate::cluster::{self, JobApi};
use crate::metrics::RpcLabels;
use runway_core::track::WorkerStatus;
use runway_proto as proto;
use runway_proto::run_launcher_server::RunLauncher;

fn worker_status(s: WorkerStatus) -> proto::WorkerStatus {
    match s {
        WorkerStatus::Running => proto::WorkerStatus::Running,
        WorkerStatus::NotFound => proto::WorkerStatus::NotFound,
        WorkerStatus::Failed => proto::WorkerStatus::Failed,
        WorkerStatus::Success => proto::WorkerStatus::Success,
        WorkerStatus::Unknown => proto::WorkerStatus::Unknown,
    }
}

/// The longest status message sent: an error never carries the caller's
/// input back at length (past 16 KiB of metadata a client would see only
/// RESOURCE_EXHAUSTED, not the reason).
const MAX_STATUS_CHARS: usize = 2048;

/// The gRPC status of an error.
pub fn to_status(e: &Error) -> Status {
    let msg = runway_core::text::clip(&e.to_string(), MAX_STATUS_CHARS).into_owned();
    match e {
        Error::Invalid { .. } | Error::Render(_) => Status::invalid_argument(msg),
        Error::UnknownDigest { .. } => {
            let mut s = Status::failed_precondition(msg);
            s.metadata_mut().insert(
                "runway-reason",
                tonic::metadata::MetadataValue::from_static("UNKNOWN_CONFIG_DIGEST"),
            );
            s
        }
        Error::NamespaceNotWatched { .. } | Error::BeingDeleted { .. } => {
            Status::failed_precondition(msg)
        }
        Error::Conflict { .. } => Status::already_exists(msg),
        Error::NotFound { .. } => Status::not_found(msg),
        Error::Kube(k) => match k {
            cluster::Error::Throttled(t) => {
                let mut s = Status::resource_exhausted(msg);
                let ms = t.retry_after.as_millis().max(1).to_string();
                if let Ok(v) = ms.parse() {
                    s.metadata_mut().insert("retry-after-ms", v);
                }
                s
            }
            cluster::Error::Api {
                code: 422 | 400, ..
            } => Status::invalid_argument(msg),
            cluster::Error::Api { code: 401, .. } => Status::unauthenticated(msg),
            cluster::Error::Api { code: 403, .. } => Status::permission_denied(msg),
            cluster::Error::Api { code: 404, .. } => Status::not_found(msg),
            cluster::Error::Api { code: 409, .. } | cluster::Error::AlreadyExists { .. } => {
                Status::aborted(msg)
            }
            cluster::Error::Api { code, .. } if *code >= 500 || *code == 429 => {
                Status::unavailable(msg)
            }
            cluster::Error::Api { .. } => Status::failed_precondition(msg),
            cluster::Error::Transport(_) | cluster::Error::Timeout(_) => Status::unavailable(msg),
            cluster::Error::Config(_) => Status::internal(msg),
        },
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::Aborted => "ABORTED",
        _ => "OTHER",
    }
}

/// The service object tonic serves.
#[derive(Debug)]
pub struct Grpc<K> {
    launch: Arc<Launch<K>>,
    stop: watch::Receiver<bool>,
    /// One permit per open WatchRuns stream.
    streams: Arc<Semaphore>,
    max_streams: usize,
}

impl<K> Grpc<K> {
    /// `stop` ends open WatchRuns streams when it turns true (shutdown); at
    /// most `max_streams` are open at once.
    pub fn new(launch: Arc<Launch<K>>, stop: watch::Receiver<bool>, max_streams: usize) -> Grpc<K> {
        Grpc {
            launch,
            stop,
            streams: Arc::new(Semaphore::new(max_streams)),
            max_streams,
        }
    }
}

/// Current states sent per read of the index (`include_current`): a stream
/// holds one page at a time, never a copy of the whole index.
const PAGE: usize = 256;

impl<K: JobApi> Grpc<K> {
    fn record<T>(&self, method: &'static str, r: &Result<T, Status>) {
        let code = match r {
            Ok(_) => "OK",
            Err(s) => code_name(s.code()),
        };
        self.launch
            .metrics()
            .rpcs
            .get_or_create(&RpcLabels { method, code })
            .inc();
    }

    async fn launch_or_resume(
        &self,
        req: Request<proto::LaunchRunRequest>,
        resume: bool,
    ) -> Result<Response<proto::LaunchRunResponse>, Status> {
        let method = if resume { "ResumeRun" } else { "LaunchRun" };
        let started = Instant::now();
        let req = req.into_inner();
        let run_id = req
            .run
            .as_ref()
            .map(|r| r.run_id.as_str())
            .unwrap_or_default();
        let span = tracing::info_span!("launch", run_id = %run_id, resume);
        let result =
            tracing::Instrument::instrument(self.launch.launch(&req, resume), span.clone()).await;
        let result = result
            .map(|l| {
                tracing::info!(parent: &span, job = %l.job_name, namespace = %l.namespace, created = l.created, "run worker Job accepted");
                Response::new(proto::LaunchRunResponse {
                    job_name: l.job_name,
                    namespace: l.namespace,
                    uid: l.uid,
                    image: l.image,
                    created: l.created,
                    dropped_env_vars: l.dropped_env_vars,
                })
            })
            .map_err(|e| {
                tracing::warn!(parent: &span, error = %e, "launch refused");
                to_status(&e)
            });
        self.record(method, &result);
        let code = match &result {
            Ok(_) => "OK",
            Err(s) => code_name(s.code()),
        };
        self.launch
            .metrics()
            .launch_latency
            .get_or_create(&RpcLabels { method, code })
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

mod auth;
mod stream;

pub use auth::TokenCheck;
use stream::{to_proto, Current, Filter, StreamState};

type TransitionStream = Pin<Box<dyn Stream<Item = Result<proto::RunTransition, Status>> + Send>>;

#[tonic::async_trait]
impl<K: JobApi> RunLauncher for Grpc<K> {
    async fn launch_run(
        &self,
        req: Request<proto::LaunchRunRequest>,
    ) -> Result<Response<proto::LaunchRunResponse>, Status> {
        self.launch_or_resume(req, false).await
    }

    async fn resume_run(
        &self,
        req: Request<proto::LaunchRunRequest>,
    ) -> Result<Response<proto::LaunchRunResponse>, Status> {
        self.launch_or_resume(req, true).await
    }

    async fn terminate_run(
        &self,
        req: Request<proto::TerminateRunRequest>,
    ) -> Result<Response<proto::TerminateRunResponse>, Status> {
        let req = req.into_inner();
        let span = tracing::info_span!("terminate", run_id = %req.run_id);
        let result = tracing::Instrument::instrument(self.launch.terminate(&req), span)
            .await
            .map(|t| {
                Response::new(proto::TerminateRunResponse {
                    terminated: t.terminated,
                    deleted_jobs: t.jobs,
                    deleted_pods: t.pods,
                })
            })
            .map_err(|e| to_status(&e));
        self.record("TerminateRun", &result);
        result
    }

    async fn check_run_worker_health(
        &self,
        req: Request<proto::CheckRunWorkerHealthRequest>,
    ) -> Result<Response<proto::CheckRunWorkerHealthResponse>, Status> {
        let req = req.into_inner();
        let result = self
            .launch
            .health(&req)
            .map(|(job_name, h)| {
                tracing::debug!(run_id = %req.run_id, status = status_name(h.status), "health");
                Response::new(proto::CheckRunWorkerHealthResponse {
                    status: worker_status(h.status) as i32,
                    message: h.message,
                    reason: h.reason,
                    job_name,
                    transient: h.transient,
                })
            })
            .map_err(|e| to_status(&e));
        self.record("CheckRunWorkerHealth", &result);
        result
    }

    async fn get_run_worker_debug_info(
        &self,
        req: Request<proto::GetRunWorkerDebugInfoRequest>,
    ) -> Result<Response<proto::GetRunWorkerDebugInfoResponse>, Status> {
        let req = req.into_inner();
        let result = self
            .launch
            .debug_info(&req)
            .await
            .map(|text| Response::new(proto::GetRunWorkerDebugInfoResponse { text }))
            .map_err(|e| to_status(&e));
        self.record("GetRunWorkerDebugInfo", &result);
        result
    }

    type WatchRunsStream = TransitionStream;

    async fn watch_runs(
        &self,
        req: Request<proto::WatchRunsRequest>,
    ) -> Result<Response<Self::WatchRunsStream>, Status> {
        let req = req.into_inner();
        let filter = Filter {
            runs: req.run_ids.iter().cloned().collect(),
            namespace: req.namespace.clone(),
            steps: req.include_step_jobs,
        };
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            self.launch.metrics().watch_streams_refused.inc();
            return Err(Status::resource_exhausted(format!(
                "this server has {} WatchRuns streams open, its limit (--max-watch-streams); close idle ones or raise the limit",
                self.max_streams
            )));
        };
        let tracker = self.launch.tracker().clone();
        // Subscribe before paging through the current states, so nothing
        // falls between them.
        let rx = tracker.subscribe();
        let metrics = self.launch.metrics().clone();
        metrics.watch_streams.inc();
        let state = StreamState {
            current: req.include_current.then(|| Current {
                tracker,
                after: None,
                page: Vec::new().into_iter(),
            }),
            rx,
            filter,
            stop: self.stop.clone(),
            metrics,
            done: false,
            _permit: permit,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            if let Some(t) = st.next_current() {
                return Some((Ok(to_proto(&t)), st));
            }
            st.next_live().await.map(|item| (item, st))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// How long an idle stream's keepalive waits.
pub const KEEPALIVE: Duration = Duration::from_secs(30);
