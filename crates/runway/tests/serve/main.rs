//! `runway serve` against the dev cluster (simulated kubelet), driven by a
//! generated tonic client exactly as `dagster-runway` drives it: launch,
//! idempotent relaunch, resume, terminate, health in both modes, debug info,
//! WatchRuns through dropped watches and 410 Gone, API fault injection, and
//! SIGTERM during a burst.

#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

//!
//! One test binary, one file per concern; `harness` starts what they share.

mod harness;
mod hostile;
mod launch;
mod operations;
mod otlp;
mod reset;
mod runs;
mod watch_runs;
