//! The Job config and user config of a task, converted once per distinct
//! input on each thread.
//!
//! Every step of a run carries the same `job_config_dict`, and the steps of
//! one op the same tag and per-step configs, so a worker sees few distinct
//! inputs; converting them (snake_case models, merges) was a tenth of a step
//! Job's render. A hit is found by comparing the raw kwargs with the ones
//! converted, so it is exact; a failed conversion is not kept and fails the
//! same way again.

use std::cell::RefCell;

use serde_json::Value;

use super::super::version::Target;
use super::super::Error;
use crate::k8s::config::{Map, UserConfig};
use crate::k8s::job::JobConfig;
use crate::recent::Recent;

/// Inputs remembered per thread: a worker's concurrent runs and ops.
const CAPACITY: usize = 8;

/// The raw kwargs a conversion read.
#[derive(PartialEq)]
pub(super) struct Inputs<'a> {
    pub target: &'a Target,
    pub job_config_dict: Option<&'a Map>,
    pub user_config_dict: Option<&'a Map>,
    /// Whether `per_step_k8s_config` is given at all (some releases refuse it).
    pub per_step_given: bool,
    /// The step's own entry of `per_step_k8s_config`.
    pub per_step_entry: Option<&'a Value>,
}

/// [`Inputs`] owned, as a kept entry's key.
struct Kept {
    target: Target,
    job_config_dict: Option<Map>,
    user_config_dict: Option<Map>,
    per_step_given: bool,
    per_step_entry: Option<Value>,
}

impl Kept {
    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            target: &self.target,
            job_config_dict: self.job_config_dict.as_ref(),
            user_config_dict: self.user_config_dict.as_ref(),
            per_step_given: self.per_step_given,
            per_step_entry: self.per_step_entry.as_ref(),
        }
    }
}

type Converted = (JobConfig, UserConfig);

thread_local! {
    static KEPT: RefCell<Recent<Kept, Converted>> = const { RefCell::new(Recent::new(CAPACITY)) };
}

/// `convert(inputs)`, or a copy of what it gave for equal inputs before.
pub(super) fn converted(
    inputs: Inputs<'_>,
    convert: impl FnOnce(&Inputs<'_>) -> Result<Converted, Error>,
) -> Result<Converted, Error> {
    let hit = KEPT.with(|kept| kept.borrow().find(|k| k.inputs() == inputs).cloned());
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let fresh = convert(&inputs)?;
    let key = Kept {
        target: inputs.target.clone(),
        job_config_dict: inputs.job_config_dict.cloned(),
        user_config_dict: inputs.user_config_dict.cloned(),
        per_step_given: inputs.per_step_given,
        per_step_entry: inputs.per_step_entry.cloned(),
    };
    KEPT.with(|kept| kept.borrow_mut().keep(key, fresh.clone()));
    Ok(fresh)
}

#[cfg(test)]
mod tests;
