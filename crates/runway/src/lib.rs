//! The `runway` service: everything around the pure core
//! ([`runway_core`]) that talks to the world.
//!
//! # Layout
//! - `serve`: the gRPC run launcher and step executor (`runway serve`).
//! - `worker`: the Celery worker pool for `execute_step_k8s_job`
//!   (`runway worker`).
//! - Shared infrastructure, so that `serve` and `worker` never import each
//!   other: `cluster` (Kubernetes access: the rate-limit/retry gate, the
//!   watches feeding the index), `broker` (AMQP topology, confirmed
//!   publishing), `results` (the Celery result backends and their readers),
//!   `ops` (the /metrics /live /ready port), `settings` (flags, environment
//!   and config-file layering), `tls` (TLS to PostgreSQL, Redis and RabbitMQ),
//!   `metrics`, `telemetry`, `retry`, `stop`.
//! - `client`: `runway client`, a command-line client of the service.
//! - `app`: the one place that wires concrete types together.
//! - `bench` and `dev_cluster` (feature `dev-cluster`): the load generators
//!   and the local control plane; not in the production build.

pub mod app;
#[cfg(feature = "dev-cluster")]
pub mod bench;
pub mod broker;
pub mod client;
pub mod cluster;
pub mod env;
pub mod metrics;
pub mod ops;
pub mod results;
pub mod retry;
pub mod serve;
pub mod settings;
pub mod stop;
pub mod telemetry;
pub mod tls;
pub mod worker;
