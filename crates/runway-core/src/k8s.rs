//! Kubernetes knowledge that needs no API server: the model field table, key
//! conversion and merging of raw config (`config`), and the Job builder (`job`).

pub mod config;
pub mod job;
