//! What runs a step: the `execute_step_k8s_job` task body in production,
//! a scripted step in the pool's tests; and the [`Fence`] it checks before
//! it reports anything learnt after a wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde_json::{Map, Value};

use super::revoke::RevokeWait;
use super::task::{self, Ctx, Finish};
use crate::cluster::JobApi;

type Check = dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync;

/// Whether this worker still holds the task's claim. A worker that was
/// paused past its claim (a GC-like stall, a frozen VM) must not report
/// what it finds when it resumes: another worker has taken the task over.
#[derive(Clone)]
pub struct Fence(Arc<Check>);

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fence")
    }
}

impl Fence {
    pub fn new(
        check: impl Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync + 'static,
    ) -> Fence {
        Fence(Arc::new(check))
    }

    /// A fence that always holds (tests, backends without claims).
    pub fn open() -> Fence {
        Fence::new(|| Box::pin(async { true }))
    }

    pub async fn held(&self) -> bool {
        (self.0)().await
    }
}

/// Runs one step task to its end.
pub trait StepRunner: Send + Sync + 'static {
    /// Runs the task with these kwargs; `revoke` turns true when it is
    /// revoked, `job_done` is set when the watch saw the step Job end, and
    /// `fence` says whether the claim is still this worker's.
    fn run(
        &self,
        kwargs: &Map<String, Value>,
        revoke: RevokeWait,
        job_done: &OnceLock<Instant>,
        fence: &Fence,
    ) -> impl Future<Output = Finish> + Send;
}

impl<K: JobApi> StepRunner for Ctx<K> {
    fn run(
        &self,
        kwargs: &Map<String, Value>,
        revoke: RevokeWait,
        job_done: &OnceLock<Instant>,
        fence: &Fence,
    ) -> impl Future<Output = Finish> + Send {
        task::execute(self, kwargs, revoke, job_done, fence)
    }
}
