//! The run Job of K8sRunLauncher: launcher, code location and run tags
//! merged, then built.

use super::checks::*;
use super::*;

pub(super) fn render_k8s_run(
    case: &RunCase,
    launcher: &Launcher,
    env: &dyn Env,
) -> Result<Rendered, Error> {
    let base = ContainerContext::for_launcher(launcher, env)?;
    let mut user = ContainerContext::default();
    if truthy(&case.container_context) {
        let cc = ContainerContext::from_container_context(
            &case.container_context,
            env,
            "run.container_context",
        )?;
        user = user.merge(&cc)?;
    }
    let tag_layer = ContainerContext {
        run_k8s_config: user_config_from_tags(&case.tags, "tags")?,
        namespace: None,
    };
    user = user.merge(&tag_layer)?;

    let mut dropped = Vec::new();
    if let Some(allow) = &launcher.only_allow_user_defined_k8s_config_fields {
        let allow =
            Allowlist::from_config(allow, "launcher.only_allow_user_defined_k8s_config_fields")?;
        let ns_set = user.namespace.as_ref().is_some_and(|n| !n.is_empty());
        check_allowlist(&allow, &user.run_k8s_config, ns_set)?;
    }
    if let Some(names) = &launcher.only_allow_user_defined_env_vars {
        let allowed = names.iter().cloned().collect();
        dropped = filter_env_vars(&allowed, &mut user.run_k8s_config, "container_config")?;
    }
    let merged = base.merge(&user)?;

    let job_config = JobConfig {
        job_image: case.image.clone().or_else(|| launcher.job_image.clone()),
        dagster_home: Some(launcher.dagster_home.clone()),
        instance_config_map: Some(launcher.instance_config_map.clone()),
        postgres_password_secret: launcher.postgres_password_secret.clone(),
        ..JobConfig::default()
    };
    let mut labels = vec![
        ("dagster/job".to_owned(), case.job_name.clone()),
        ("dagster/run-id".to_owned(), case.run_id.clone()),
    ];
    if let Some(name) = deployment_name(&merged.run_k8s_config)? {
        labels.push(("dagster/deployment-name".into(), name));
    }
    if let Some(location) = &case.location_name {
        labels.push(("dagster/code-location".into(), location.clone()));
    }
    let job_name = run_job_name(&case.run_id, case.resume_attempt);
    let job = build_job(
        &JobRequest {
            job_config: &job_config,
            args: case.args.clone(),
            job_name: &job_name,
            pod_name: &job_name,
            user: &merged.run_k8s_config,
            component: "run_worker",
            labels,
            env_vars: vec![("DAGSTER_RUN_JOB_NAME".into(), case.job_name.clone())],
        },
        env,
    )?;
    require_image(&job)?;
    Ok(Rendered {
        job,
        namespace: merged
            .namespace
            .unwrap_or_else(|| launcher.job_namespace.clone()),
        dropped_env_vars: dropped,
    })
}
