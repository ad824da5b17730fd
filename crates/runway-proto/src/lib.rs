//! The gRPC contract of `proto/runway/v1` (package `runway.v1`): the run
//! launcher (`RunLauncher`) and the step executor (`StepExecutor`),
//! generated at build time for both the service and its tests.

#![allow(
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_debug_implementations,
    unused_qualifications
)]

pub mod codec;

tonic::include_proto!("runway.v1");

/// The encoded descriptors of every message and service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("runway_descriptor");
