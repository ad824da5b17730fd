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
use std::collections::VecDeque;

use serde_json::Value;

use super::super::version::Target;
use super::super::Error;
use crate::k8s::config::{Map, UserConfig};
use crate::k8s::job::JobConfig;

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

struct Kept {
    target: Target,
    job_config_dict: Option<Map>,
    user_config_dict: Option<Map>,
    per_step_given: bool,
    per_step_entry: Option<Value>,
    converted: (JobConfig, UserConfig),
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

thread_local! {
    static KEPT: RefCell<VecDeque<Kept>> = const { RefCell::new(VecDeque::new()) };
}

/// `convert(inputs)`, or a copy of what it gave for equal inputs before.
pub(super) fn converted(
    inputs: Inputs<'_>,
    convert: impl FnOnce(&Inputs<'_>) -> Result<(JobConfig, UserConfig), Error>,
) -> Result<(JobConfig, UserConfig), Error> {
    let hit = KEPT.with(|kept| {
        let kept = kept.borrow();
        kept.iter()
            .find(|k| k.inputs() == inputs)
            .map(|k| k.converted.clone())
    });
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let fresh = convert(&inputs)?;
    KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.len() == CAPACITY {
            kept.pop_front();
        }
        kept.push_back(Kept {
            target: inputs.target.clone(),
            job_config_dict: inputs.job_config_dict.cloned(),
            user_config_dict: inputs.user_config_dict.cloned(),
            per_step_given: inputs.per_step_given,
            per_step_entry: inputs.per_step_entry.cloned(),
            converted: fresh.clone(),
        });
    });
    Ok(fresh)
}

#[cfg(test)]
mod tests;
