//! Runway: a Kubernetes-native run launcher and step executor for Dagster.
//!
//! # Layout
//! The modules follow the data flow: `dagster` (Dagster's config model,
//! names, serdes JSON) -> `k8s::config` (key conversion, merging,
//! allowlists) -> `k8s::job` (the Job builder) -> `render` (the whole pure
//! pipeline from a launch or step task to a Job). Nothing in these modules
//! performs I/O.

pub mod bench;
pub mod dagster;
pub mod devcluster;
pub mod k8s;
pub mod render;
