//! The pure Job builder: `construct_dagster_k8s_job` for run and step Jobs.

mod builder;

pub use builder::{build_job, env_var, JobConfig, JobRequest};
