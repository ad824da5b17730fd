//! `runway client`: a small command-line client of `runway serve`, for
//! operators and the demo: launch a case file, ask health and debug info,
//! terminate, and follow `WatchRuns`.

use runway_proto as proto;
use std::collections::HashMap;

use futures::StreamExt;
use serde_json::{json, Value};
use thiserror::Error;
use tonic::transport::Channel;

use runway_proto::run_launcher_client::RunLauncherClient;
use runway_proto::step_executor_client::StepExecutorClient;
use runway_proto::{self, WorkerStatus};

#[derive(Debug, Error)]
pub enum Error {
    #[error("case file: {0}")]
    Case(String),
    #[error("cannot reach {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("the token: {0}")]
    Token(String),
}

fn case_err(m: impl Into<String>) -> Error {
    Error::Case(m.into())
}

/// The launch request of a `{"kind": "run", ...}` case file (`runway render`'s input).
pub fn request_from_case(
    case: &Value,
    run_id: Option<&str>,
) -> Result<proto::LaunchRunRequest, Error> {
    if case["kind"] != "run" {
        return Err(case_err("kind: only run cases can be launched"));
    }
    let run = case
        .get("run")
        .and_then(Value::as_object)
        .ok_or_else(|| case_err("run: expected an object"))?;
    let text = |k: &str| {
        run.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let json_or_empty = |k: &str| match run.get(k) {
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    };
    let config_json = case
        .get("launcher")
        .cloned()
        .unwrap_or_else(|| json!({}))
        .to_string();
    Ok(proto::LaunchRunRequest {
        run: Some(proto::Run {
            run_id: run_id.map(str::to_owned).unwrap_or_else(|| text("run_id")),
            job_name: text("job_name"),
            location_name: text("location_name"),
            image: run.get("image").and_then(Value::as_str).map(str::to_owned),
            container_context_json: json_or_empty("container_context"),
            tags: run
                .get("tags")
                .and_then(Value::as_object)
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str()
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| v.to_string()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            args: run
                .get("args")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            resume_attempt: run
                .get("resume_attempt")
                .and_then(Value::as_u64)
                .unwrap_or(0) as u32,
            run_config_json: json_or_empty("run_config"),
        }),
        launcher: Some(proto::LauncherConfig {
            launcher_class: case["launcher_class"]
                .as_str()
                .unwrap_or("K8sRunLauncher")
                .to_owned(),
            digest: crate::serve::sha256_hex(config_json.as_bytes()),
            config_json,
        }),
        env: HashMap::new(),
        dagster_version: case
            .get("dagster_version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// A connected client that adds the bearer token, when there is one.
#[derive(Debug, Clone)]
pub struct Client {
    inner: RunLauncherClient<Channel>,
    steps: StepExecutorClient<Channel>,
    token: Option<String>,
}

pub fn status_name(code: i32) -> &'static str {
    match WorkerStatus::try_from(code) {
        Ok(WorkerStatus::Running) => "RUNNING",
        Ok(WorkerStatus::NotFound) => "NOT_FOUND",
        Ok(WorkerStatus::Failed) => "FAILED",
        Ok(WorkerStatus::Success) => "SUCCESS",
        Ok(WorkerStatus::Unknown) => "UNKNOWN",
        _ => "UNSPECIFIED",
    }
}

impl Client {
    pub async fn connect(endpoint: &str, token: Option<String>) -> Result<Client, Error> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|source| Error::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?
            .connect()
            .await
            .map_err(|source| Error::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        Ok(Client {
            inner: RunLauncherClient::new(channel.clone()),
            steps: StepExecutorClient::new(channel),
            token,
        })
    }

    fn req<T>(&self, msg: T) -> Result<tonic::Request<T>, Error> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            let v = format!("Bearer {t}")
                .parse()
                .map_err(|_| Error::Token("not a valid header value".into()))?;
            r.metadata_mut().insert("authorization", v);
        }
        Ok(r)
    }

    /// Publishes a step task; returns its id, queue and priority.
    pub async fn submit_step(&mut self, req: proto::SubmitStepRequest) -> Result<Value, Error> {
        let r = self.steps.submit_step(self.req(req)?).await?.into_inner();
        Ok(json!({"task_id": r.task_id, "queue": r.queue, "priority": r.priority}))
    }

    /// Follows a step task until its final state, printing each state.
    pub async fn watch_step(
        &mut self,
        task_id: &str,
        mut print: impl FnMut(&Value),
    ) -> Result<(), Error> {
        let req = self.req(proto::WatchStepRequest {
            task_id: task_id.to_owned(),
        })?;
        let mut stream = self.steps.watch_step(req).await?.into_inner();
        while let Some(s) = stream.next().await {
            let s = s?;
            print(
                &json!({"task_id": s.task_id, "state": s.state, "events": s.events,
                          "exc_type": s.exc_type, "exc_module": s.exc_module,
                          "exc_message": s.exc_message, "meta": s.meta_json}),
            );
        }
        Ok(())
    }

    pub async fn launch(&mut self, req: proto::LaunchRunRequest) -> Result<Value, Error> {
        let r = self.inner.launch_run(self.req(req)?).await?.into_inner();
        Ok(
            json!({"job_name": r.job_name, "namespace": r.namespace, "uid": r.uid,
                  "image": r.image, "created": r.created, "dropped_env_vars": r.dropped_env_vars}),
        )
    }

    pub async fn health(
        &mut self,
        run_id: &str,
        run_status: &str,
        compat: bool,
    ) -> Result<Value, Error> {
        let mode = if compat {
            proto::HealthMode::DagsterCompat
        } else {
            proto::HealthMode::Diagnose
        };
        let r = self
            .inner
            .check_run_worker_health(self.req(proto::CheckRunWorkerHealthRequest {
                run_id: run_id.into(),
                run_status: run_status.into(),
                mode: mode as i32,
                ..Default::default()
            })?)
            .await?
            .into_inner();
        Ok(
            json!({"status": status_name(r.status), "message": r.message, "reason": r.reason,
                  "job_name": r.job_name, "transient": r.transient}),
        )
    }

    pub async fn debug_info(&mut self, run_id: &str) -> Result<String, Error> {
        let r = self
            .inner
            .get_run_worker_debug_info(self.req(proto::GetRunWorkerDebugInfoRequest {
                run_id: run_id.into(),
                include_container_logs: true,
                ..Default::default()
            })?)
            .await?
            .into_inner();
        Ok(r.text)
    }

    pub async fn terminate(&mut self, run_id: &str) -> Result<Value, Error> {
        let r = self
            .inner
            .terminate_run(self.req(proto::TerminateRunRequest {
                run_id: run_id.into(),
                include_step_jobs: true,
                ..Default::default()
            })?)
            .await?
            .into_inner();
        Ok(
            json!({"terminated": r.terminated, "deleted_jobs": r.deleted_jobs, "deleted_pods": r.deleted_pods}),
        )
    }

    /// Prints each transition as a JSON line; with `until_final`, returns
    /// once every run in `run_ids` reached SUCCESS or FAILED.
    pub async fn watch(
        &mut self,
        run_ids: &[String],
        until_final: bool,
        mut print: impl FnMut(&Value),
    ) -> Result<(), Error> {
        let mut stream = self
            .inner
            .watch_runs(self.req(proto::WatchRunsRequest {
                run_ids: run_ids.to_vec(),
                include_current: true,
                ..Default::default()
            })?)
            .await?
            .into_inner();
        let mut done = std::collections::HashSet::new();
        while let Some(t) = stream.next().await {
            let t = t?;
            let status = status_name(t.status);
            print(
                &json!({"run_id": t.run_id, "job_name": t.job_name, "status": status,
                          "reason": t.reason, "message": t.message, "deleted": t.deleted}),
            );
            if matches!(status, "SUCCESS" | "FAILED") {
                done.insert(t.run_id);
            }
            if until_final && !run_ids.is_empty() && run_ids.iter().all(|r| done.contains(r)) {
                break;
            }
        }
        Ok(())
    }
}
