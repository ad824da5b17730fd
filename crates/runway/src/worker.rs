//! `runway worker`: a Celery-protocol-v2 worker pool for
//! `execute_step_k8s_job`. Deliveries are acknowledged only once their
//! result is stored (acks late); a redelivered task that is running here, or
//! whose result already exists, is answered without running twice; step Jobs
//! are created under deterministic names, so a takeover reuses the Job.
//!
//! - `consume`: the AMQP session, the consume loop, reconnection and drain.
//! - `pool`: from a decoded task to its stored result (claims, dedupe,
//!   parking), generic over the broker's acks, the result store and the
//!   step runner, so its rules are tested with in-memory fakes.
//! - `ledger`: running and finished tasks with their held deliveries.
//! - `task`: the `execute_step_k8s_job` body; `wait`: waits on Jobs, runs
//!   and revokes; `pg`: Dagster's PostgreSQL storage; `events`: Celery
//!   events; `outcome`: result metas and task events.

pub mod ack;
pub mod consume;
pub mod control;
pub mod events;
pub mod ledger;
pub mod outcome;
pub mod pg;
pub mod pool;
pub mod registry;
pub mod revoke;
pub mod runner;
pub mod settings;
pub mod task;
pub mod wait;

pub use consume::{AmqpBroker, ConsumerConfig};
pub use pool::{Pool, PoolConfig, TASK};
