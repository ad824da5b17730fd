//! Checks the renders share, and the `dagster/deployment-name` label.

use super::*;
use crate::dagster::version::{Rules, RunImage};

/// `get_deployment_id_label`: the value of `DAGSTER_CLOUD_DEPLOYMENT_NAME` in
/// the merged container env, if set.
pub(super) fn deployment_name(user: &UserConfig) -> Result<Option<String>, Error> {
    let Some(Value::Array(env)) = user.get(Section::ContainerConfig).get("env") else {
        return Ok(None);
    };
    for (i, entry) in env.iter().enumerate() {
        let at = path::index("container_config.env", i);
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| case_err(&at, "every env entry needs a \"name\""))?;
        if name == "DAGSTER_CLOUD_DEPLOYMENT_NAME" {
            return match entry.get("value") {
                Some(Value::String(v)) => Ok(Some(v.clone())),
                Some(Value::Null) | None => Err(case_err(
                    &at,
                    "DAGSTER_CLOUD_DEPLOYMENT_NAME must have a literal \"value\" (it becomes \
                     the dagster/deployment-name label); valueFrom cannot be used for it",
                )),
                Some(other) => Ok(Some(dagster::pyfmt::dumps_sorted(other))),
            };
        }
    }
    Ok(None)
}

/// Until 1.4.6 the launcher writes the `dagster/image` tag from its own
/// image before building the Job, and fails without one.
pub(super) fn require_launcher_image(job_config: &JobConfig, rules: &Rules) -> Result<(), Error> {
    let has_image = job_config.job_image.as_ref().is_some_and(|i| !i.is_empty());
    if rules.run_image == RunImage::FromLauncher && !has_image {
        return Err(case_err(
            "run.image",
            &format!(
                "no image for the run worker: Dagster {} takes it from the code location's                  image or the launcher's job_image (an image in the dagster-k8s/config tag                  alone is not enough); set one of those",
                rules.version
            ),
        ));
    }
    Ok(())
}

/// From 1.8.5 the `dagster/image` tag is written from the built Job, which
/// must therefore have an image.
pub(super) fn require_image(job: &Value, rules: &Rules) -> Result<(), Error> {
    let image = job["spec"]["template"]["spec"]["containers"][0]["image"].as_str();
    match (rules.run_image, image) {
        (RunImage::InJob, None) => Err(case_err(
            "run.image",
            "no image for the run worker: set the code location's image, the launcher's \
             job_image, or container_config.image in the dagster-k8s/config tag",
        )),
        _ => Ok(()),
    }
}

pub(super) fn check_keys(obj: &Map, allowed: &[&str], at: &str) -> Result<(), Error> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(bad) => Err(Error::Case {
            path: path::key(at, bad),
            message: format!("unknown key (expected one of: {})", allowed.join(", ")),
        }),
        None => Ok(()),
    }
}

pub(super) fn case_err(at: &str, message: &str) -> Error {
    Error::Case {
        path: at.to_owned(),
        message: message.to_owned(),
    }
}

pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}
