//! What runs a step: the `execute_step_k8s_job` task body in production,
//! a scripted step in the pool's tests.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::{Map, Value};

use super::revoke::RevokeWait;
use super::task::{self, Ctx, Finish};
use crate::cluster::JobApi;

/// Runs one step task to its end.
pub trait StepRunner: Send + Sync + 'static {
    /// Runs the task with these kwargs; `revoke` turns true when it is
    /// revoked, and `job_done` is set when the watch saw the step Job end.
    fn run(
        &self,
        kwargs: &Map<String, Value>,
        revoke: RevokeWait,
        job_done: &OnceLock<Instant>,
    ) -> impl Future<Output = Finish> + Send;
}

impl<K: JobApi> StepRunner for Ctx<K> {
    fn run(
        &self,
        kwargs: &Map<String, Value>,
        revoke: RevokeWait,
        job_done: &OnceLock<Instant>,
    ) -> impl Future<Output = Finish> + Send {
        task::execute(self, kwargs, revoke, job_done)
    }
}
