//! The run Job of K8sRunLauncher: launcher, code location and run tags
//! merged as the caller's release merges them, then built.

use super::checks::*;
use super::*;
use crate::dagster::context::{FieldsContext, Layer, MergedFields, MergedRaw};
use crate::dagster::version::{Layering, Rules};

/// The tags' layer of a run without Kubernetes tags.
fn no_tags() -> Layer {
    Layer::tags(UserConfig::default())
}

/// Where a code location's container context sits in a run case, for errors.
const LOCATION_AT: &str = "run.container_context";

/// The run's code location layer, when it has a container context, and where
/// errors name it.
fn location_of(case: &RunCase) -> (Option<&Value>, &'static str) {
    let context = Some(&case.container_context).filter(|c| truthy(c));
    (context, LOCATION_AT)
}

/// The merged layers: the Job config, the user config and the namespace.
struct Merged {
    job_config: JobConfig,
    user: UserConfig,
    namespace: String,
    /// Container-context `env` entries the release puts before `DAGSTER_HOME`.
    early_env: Vec<Value>,
    dropped_env_vars: Vec<String>,
}

pub(super) fn render_k8s_run(
    case: &RunCase,
    launcher: &Launcher,
    env: &dyn Env,
) -> Result<Rendered, Error> {
    let rules = &case.target.rules;
    let merged = match rules.layering {
        Layering::Raw => merge_raw(case, launcher, env)?,
        Layering::Fields => merge_fields(case, launcher, env)?,
    };

    let mut labels = vec![
        ("dagster/job".to_owned(), case.job_name.clone()),
        ("dagster/run-id".to_owned(), case.run_id.clone()),
    ];
    if rules.deployment_name_label {
        if let Some(name) = deployment_name(&merged.user)? {
            labels.push(("dagster/deployment-name".into(), name));
        }
    }
    if rules.code_location_label {
        if let Some(location) = &case.location_name {
            labels.push(("dagster/code-location".into(), location.clone()));
        }
    }
    require_launcher_image(&merged.job_config, rules)?;
    let mut env_vars = vec![env_var("DAGSTER_RUN_JOB_NAME", &case.job_name)];
    env_vars.extend(merged.early_env);
    let job_name = run_job_name(&case.run_id, case.resume_attempt);
    let job = build_job(
        JobRequest {
            target: &case.target,
            job_config: &merged.job_config,
            args: case.args.clone(),
            job_name: &job_name,
            pod_name: &job_name,
            user: merged.user,
            component: "run_worker",
            labels,
            env_vars,
        },
        env,
    )?;
    require_image(&job, rules)?;
    Ok(Rendered {
        job,
        namespace: merged.namespace,
        dropped_env_vars: merged.dropped_env_vars,
    })
}

/// From 1.7: raw config, launcher ⊕ (code location ⊕ tags, checked against
/// the launcher's allowlists).
fn merge_raw(case: &RunCase, launcher: &Launcher, env: &dyn Env) -> Result<Merged, Error> {
    let rules = &case.target.rules;
    let kept = launcher.prepared.merged::<ContainerContext, Error>(
        launcher,
        rules,
        env,
        location_of(case),
        &case.tags,
        |base, location, tags, env| merge_raw_layers(launcher, rules, base, location, tags, env),
    )?;
    let (merged, dropped_env_vars) = MergedRaw::clone(&kept);
    Ok(Merged {
        job_config: JobConfig {
            job_image: case.image.clone().or_else(|| launcher.job_image.clone()),
            dagster_home: Some(launcher.dagster_home.clone()),
            instance_config_map: Some(launcher.instance_config_map.clone()),
            postgres_password_secret: launcher.postgres_password_secret.clone(),
            ..JobConfig::default()
        },
        user: merged.run_k8s_config,
        namespace: merged
            .namespace
            .unwrap_or_else(|| launcher.job_namespace.clone()),
        early_env: Vec::new(),
        dropped_env_vars,
    })
}

/// Code location ⊕ tags, checked against the launcher's allowlists, merged
/// onto the launcher's layer; with the env var names the allowlist dropped.
fn merge_raw_layers(
    launcher: &Launcher,
    rules: &Rules,
    base: &ContainerContext,
    location: Option<&ContainerContext>,
    tags: Option<&ContainerContext>,
    env: &dyn Env,
) -> Result<MergedRaw, Error> {
    let mut user = ContainerContext::default();
    if let Some(location) = location {
        user = user.merge_owned(location)?;
    }
    user = match tags {
        Some(tags) => user.merge_owned(tags)?,
        // Runs without Kubernetes tags still merge an empty layer (DEEP).
        None => user.merge_owned(&ContainerContext::fold(&[no_tags()], env)?)?,
    };
    let dropped_env_vars = apply_allowlists(launcher, &mut user, rules)?;
    Ok((base.clone().merge_owned(&user)?, dropped_env_vars))
}

fn apply_allowlists(
    launcher: &Launcher,
    user: &mut ContainerContext,
    rules: &Rules,
) -> Result<Vec<String>, Error> {
    if let Some(allow) = &launcher.only_allow_user_defined_k8s_config_fields {
        let allow =
            Allowlist::from_config(allow, "launcher.only_allow_user_defined_k8s_config_fields")?;
        let ns_set = user.namespace.as_ref().is_some_and(|n| !n.is_empty());
        check_allowlist(&allow, &user.run_k8s_config, ns_set, rules.namespace_rule())?;
    }
    match &launcher.only_allow_user_defined_env_vars {
        Some(names) => {
            let allowed = names.iter().cloned().collect();
            Ok(filter_env_vars(
                &allowed,
                &mut user.run_k8s_config,
                "container_config",
            )?)
        }
        None => Ok(Vec::new()),
    }
}

/// Until 1.7: the launcher's, the code location's and the tags' fields merged
/// one by one; the merged fields are the Job config.
fn merge_fields(case: &RunCase, launcher: &Launcher, env: &dyn Env) -> Result<Merged, Error> {
    let rules = &case.target.rules;
    let kept = launcher.prepared.merged::<FieldsContext, Error>(
        launcher,
        rules,
        env,
        location_of(case),
        &case.tags,
        |base, location, tags, env| merge_field_layers(launcher, rules, base, location, tags, env),
    )?;
    let (context, dropped_env_vars) = MergedFields::clone(&kept);
    context.check_security_context(rules)?;
    let job_config = context.job_config(case.image.clone(), launcher);
    Ok(Merged {
        job_config,
        user: context.run_k8s_config,
        namespace: context
            .namespace
            .unwrap_or_else(|| launcher.job_namespace.clone()),
        early_env: context.fields.env,
        dropped_env_vars,
    })
}

/// The fields layers merged as the release merges them, with the env var
/// names the allowlist dropped.
fn merge_field_layers(
    launcher: &Launcher,
    rules: &Rules,
    base: &FieldsContext,
    location: Option<&FieldsContext>,
    tags: Option<&FieldsContext>,
    env: &dyn Env,
) -> Result<MergedFields, Error> {
    let no_tags = FieldsContext::from_layer(&no_tags())?;
    let tags = tags.unwrap_or(&no_tags);
    if rules.allowlists {
        // From 1.6.3 the code location and tags are merged first, checked
        // against the launcher's allowlists, then merged onto the launcher.
        let mut user = FieldsContext::default();
        if let Some(location) = location {
            user = user.merge(location)?;
        }
        user = user.merge(tags)?;
        let dropped_env_vars = user.apply_allowlists(launcher, env, rules)?;
        return Ok((base.merge(&user)?, dropped_env_vars));
    }
    let context = match location {
        Some(location) => base.merge(location)?,
        None => base.clone(),
    };
    Ok((context.merge(tags)?, Vec::new()))
}
