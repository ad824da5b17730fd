//! The dev cluster driven by the unmodified kube-rs client: typed APIs,
//! errors, `watcher` with `default_backoff` (plain and streaming lists),
//! `reflector` through dropped watches and 410 Gone, pod logs and deletion
//! propagation.
//!
//! The scenarios run against an in-process dev cluster. With
//! `RUNWAY_CONFORMANCE_KUBECONFIG=<path>` the scenarios that need no dev
//! cluster internals run against that cluster instead (a real one), each in
//! a namespace of its own; the fault scenarios always use the dev cluster.

// Helpers outside #[test] fns are test code too: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod cluster;
mod discovery;
mod fields;
mod jobs;
mod support;
mod watch;
