//! The watch index: what `runway serve` and `runway worker` know about the
//! Jobs, pods and events of Dagster runs, kept from one labelled watch per
//! kind and namespace so that health answers need no API call.
//!
//! Everything here is pure: the watch loops (in `serve::watch`) feed it
//! objects and relist boundaries, and read transitions and answers back.

pub mod debug;
pub mod health;
pub mod index;

pub use health::{health, Health, HealthMode, WorkerStatus};
pub use index::{Index, JobEntry, PodEntry, Transition};
