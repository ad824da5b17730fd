//! Runway: a Kubernetes-native run launcher and step executor for Dagster.
//!
//! # Layout
//! The modules follow the data flow: `dagster` (Dagster's config model,
//! names, serdes JSON) -> `k8s::config` (key conversion, merging,
//! allowlists) -> `k8s::job` (the Job builder) -> `render` (the whole pure
//! pipeline from a launch or step task to a Job). Nothing in these modules
//! performs I/O. `track` (the watch index, health and debug info) is pure
//! too. The I/O lives in `cluster` (Kubernetes), `serve` (gRPC), `devcluster`
//! and `app`, which wires them.

pub mod app;
pub mod bench;
pub mod celery;
pub mod civil;
pub mod client;
pub mod cluster;
pub mod dagster;
pub mod devcluster;
pub mod k8s;
pub mod metrics;
pub mod render;
pub mod serve;
pub mod stop;
pub mod telemetry;
pub mod track;
pub mod worker;

/// The gRPC contract of `proto/runway/v1`, generated at build time.
#[allow(
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_debug_implementations,
    unused_qualifications
)]
pub mod proto {
    tonic::include_proto!("runway.v1");
    /// For server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("runway_descriptor");
}
