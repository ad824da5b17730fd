//! Dagster's side of the model: its config type system (as far as the launcher
//! schemas use it), the K8s launcher configs, container contexts, run tags,
//! celery-k8s task kwargs, names and labels, and serdes-compatible JSON.
//! Pure code: environment lookups come in through [`Env`].

pub mod config;
pub mod context;
mod error;
pub mod events;
pub mod instance;
pub mod launcher;
pub mod names;
pub mod pyfmt;
pub mod rules;
pub mod serdes;
pub mod step;
pub mod tags;
pub mod version;

pub use error::Error;

/// Reads an environment variable of the launcher process. Pure code never
/// touches the process environment itself, so tests and the parity harness can
/// give each case its own.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

impl Env for std::collections::BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// `parse_env_var`: `"K=V"` splits on the first `=`; a bare `"K"` takes its value
/// from the launcher's environment at launch time.
pub fn parse_env_var(spec: &str, env: &dyn Env, at: &str) -> Result<(String, String), Error> {
    match spec.split_once('=') {
        Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
        None => env
            .var(spec)
            .map(|v| (spec.to_owned(), v))
            .ok_or_else(|| Error::EnvVarNotSet {
                path: at.to_owned(),
                var: spec.to_owned(),
            }),
    }
}
