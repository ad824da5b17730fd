//! `runway.v1.StepExecutor`: publishing celery-k8s step tasks exactly as
//! Dagster's executor does, and streaming their results from the backend.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::broker::publish::{uuid4, Publisher};
use crate::results::watch::Results;
use crate::stop::stopped;
use runway_core::celery::message::{encode, NewTask};
use runway_core::celery::pyval::PyVal;
use runway_core::celery::result::is_ready;
use runway_core::celery::STEP_TASK as TASK;
use runway_proto as proto;
use runway_proto::step_executor_server::StepExecutor;

/// The service. Without a broker, SubmitStep is refused; without a Redis
/// backend, WatchStep is.
#[derive(Debug)]
pub struct Steps {
    pub publisher: Option<Arc<Publisher>>,
    pub results: Option<Arc<Results>>,
    /// `gen<pid>@<hostname>`, Celery's `origin` header.
    pub origin: String,
    /// The `reply_to` every message carries (Celery sets it even with a
    /// Redis backend).
    pub reply_to: String,
    pub stop: watch::Receiver<bool>,
}

fn invalid(field: &str, why: &str) -> Status {
    Status::invalid_argument(format!("{field}: {why}"))
}

type StateStream = Pin<Box<dyn Stream<Item = Result<proto::StepState, Status>> + Send>>;

/// A StepState from a stored meta.
pub fn state_of(task_id: &str, meta: &str) -> proto::StepState {
    let v: serde_json::Value = serde_json::from_str(meta).unwrap_or_default();
    let status = v["status"].as_str().unwrap_or("UNKNOWN").to_owned();
    let mut s = proto::StepState {
        task_id: task_id.to_owned(),
        state: status.clone(),
        meta_json: meta.to_owned(),
        ..Default::default()
    };
    match &v["result"] {
        serde_json::Value::Array(events) if status == "SUCCESS" => {
            s.events = events
                .iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect();
        }
        serde_json::Value::Object(err) => {
            let get = |k: &str| err.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
            s.exc_type = get("exc_type");
            s.exc_module = get("exc_module");
            s.exc_message = err
                .get("exc_message")
                .and_then(|m| m.as_array())
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_str().map_or(x.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
        }
        _ => {}
    }
    s
}

#[tonic::async_trait]
impl StepExecutor for Steps {
    async fn submit_step(
        &self,
        req: Request<proto::SubmitStepRequest>,
    ) -> Result<Response<proto::SubmitStepResponse>, Status> {
        let req = req.into_inner();
        let publisher = self.publisher.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "SubmitStep needs a broker: start runway serve with --broker-url",
            )
        })?;
        let kwargs: PyVal = serde_json::from_str(&req.kwargs_json)
            .map_err(|e| invalid("kwargs_json", &format!("not JSON: {e}")))?;
        if !matches!(kwargs, PyVal::Dict(_)) {
            return Err(invalid(
                "kwargs_json",
                "give the task's keyword arguments as a JSON object",
            ));
        }
        let queue = if req.queue.is_empty() {
            "dagster".to_owned()
        } else {
            req.queue.clone()
        };
        if queue.len() > 255 {
            return Err(invalid("queue", "AMQP queue names have at most 255 bytes"));
        }
        let priority = req.priority.unwrap_or(5);
        if priority > 10 {
            return Err(invalid(
                "priority",
                "give 0..10 (the queues' x-max-priority is 10)",
            ));
        }
        let task_id = if req.task_id.is_empty() {
            uuid4()
        } else {
            req.task_id.clone()
        };
        let task = if req.task_name.is_empty() {
            TASK
        } else {
            req.task_name.as_str()
        };
        let msg = encode(&NewTask {
            id: &task_id,
            task,
            kwargs: &kwargs,
            origin: &self.origin,
            reply_to: &self.reply_to,
            priority: priority as u8,
        });
        publisher.publish(&queue, &msg).await.map_err(|e| {
            tracing::warn!(error = %e, %task_id, "SubmitStep failed");
            Status::unavailable(e.to_string())
        })?;
        tracing::info!(%task_id, %queue, priority, "step published");
        Ok(Response::new(proto::SubmitStepResponse {
            task_id,
            queue,
            priority,
        }))
    }

    type WatchStepStream = StateStream;

    async fn watch_step(
        &self,
        req: Request<proto::WatchStepRequest>,
    ) -> Result<Response<Self::WatchStepStream>, Status> {
        let req = req.into_inner();
        if req.task_id.is_empty() {
            return Err(invalid("task_id", "required"));
        }
        let results = self.results.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "WatchStep needs the Redis result backend: start runway serve with \
                 --result-backend redis://...",
            )
        })?;
        let mut wait = results
            .wait(&req.task_id)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let id = req.task_id;
        let mut stop = self.stop.clone();
        let stream = async_stream(move |tx| async move {
            // PENDING while nothing is stored, then every stored state
            // (STARTED when a step starts) until a final one ends the stream.
            let mut last = wait.rx.borrow_and_update().clone();
            if last.is_none() {
                let pending = proto::StepState {
                    task_id: id.clone(),
                    state: "PENDING".into(),
                    ..Default::default()
                };
                if tx.send(Ok(pending)).await.is_err() {
                    return;
                }
            }
            loop {
                if let Some(meta) = last.take() {
                    let done = is_ready(&meta);
                    if tx.send(Ok(state_of(&id, &meta))).await.is_err() || done {
                        return;
                    }
                }
                tokio::select! {
                    _ = stopped(&mut stop) => {
                        let _ = tx.send(Err(Status::unavailable("runway serve is shutting down; watch again"))).await;
                        return;
                    }
                    changed = wait.rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        last = wait.rx.borrow_and_update().clone();
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task through a small bounded channel.
fn async_stream<F, Fut>(f: F) -> StateStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<proto::StepState, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metas_become_states() {
        let s = state_of(
            "t",
            r#"{"status": "SUCCESS", "result": ["a", "b"], "traceback": null, "children": [], "date_done": "x", "task_id": "t"}"#,
        );
        assert_eq!((s.state.as_str(), s.events.len()), ("SUCCESS", 2));
        let s = state_of(
            "t",
            r#"{"status": "REVOKED", "result": {"exc_type": "TaskRevokedError", "exc_message": ["revoked"], "exc_module": "celery.exceptions"}}"#,
        );
        assert_eq!(s.exc_type, "TaskRevokedError");
        assert_eq!(s.exc_message, "revoked");
    }
}
