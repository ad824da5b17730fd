//! Celery result backends: writing results byte-compatible with Celery 5.7
//! (`backend`, used by the worker) and reading them as they land (`watch`,
//! used by `WatchStep`).

pub mod backend;
#[cfg(test)]
pub mod memory;
mod redis_store;
mod redis_url;
pub mod watch;
