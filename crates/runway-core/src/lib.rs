//! Runway's pure core: everything that turns Dagster's inputs into
//! Kubernetes Jobs and Celery messages, and judges what the watches report,
//! without I/O.
//!
//! # Layout
//! The modules follow the data flow: `dagster` (Dagster's config model,
//! names, serdes JSON) -> `k8s::config` (key conversion, merging,
//! allowlists) -> `k8s::job` (the Job builder) -> `render` (the whole
//! pipeline from a launch or step task to a Job). `celery` holds Celery 5.7's
//! wire formats (task messages, result metas, queue topology, events);
//! `track` the watch index, health rules and debug-info text; `recent` the
//! small store of values computed from inputs that repeat.
//!
//! The crate depends on no async runtime and no client (its manifest is the
//! proof), and reads no process state: the environment comes in through
//! [`dagster::Env`] and the clock as arguments.

pub mod celery;
pub mod dagster;
pub mod k8s;
pub mod recent;
pub mod render;
pub mod text;
pub mod track;
