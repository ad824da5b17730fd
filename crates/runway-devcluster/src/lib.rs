//! `runway dev-cluster`: a local Kubernetes API server (namespaces, Jobs, Pods,
//! ConfigMaps, Secrets, Events, ServiceAccounts, watches, logs) with a Job
//! controller, a scheduler and a kubelet that runs containers as local
//! processes (or simulates them, for load tests).

pub mod api;
pub mod clock;
pub mod controller;
pub mod faults;
pub mod http;
pub mod kubelet;
pub mod logs;
pub mod openapi;
pub mod patch;
pub mod runner;
pub mod seed;
pub mod selector;
pub mod server;
pub mod status;
pub mod store;
pub mod validate;
mod yaml;

pub use runner::{kubeconfig_yaml, DevCluster, DevClusterConfig};
