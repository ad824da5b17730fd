//! Celery's wire formats as celery/kombu 5.7 write them (dagster-compat.md
//! §g): task messages of protocol v2 with the JSON serializer, and result
//! metadata as the Redis and `rpc://` backends store it. Pure: bytes and
//! values in, bytes and values out; the AMQP and Redis clients live in the
//! worker.

pub mod control;
pub mod events;
pub mod message;
pub mod pyval;
pub mod result;
pub mod topology;

pub use message::{decode, DecodeError, TaskMessage};
pub use result::{result_meta, ResultState, TaskError};

/// The one task a celery-k8s executor sends: `dagster_celery_k8s`'s
/// `execute_step_k8s_job`, the task `runway worker` runs.
pub const STEP_TASK: &str = "execute_step_k8s_job";
