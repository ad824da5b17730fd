//! The process environment, as the pure core's [`Env`] reads it: `{env: VAR}`
//! sources and `env_vars` entries resolve against the variables this process
//! was started with, as the Dagster daemon resolves them.

use runway_core::dagster::Env;

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}
