//! The step Job of an `execute_step_k8s_job` task.

use super::*;

/// A step Job, as the `execute_step_k8s_job` task of `task.target` builds it.
pub fn render_step(task: &StepTask, env: &dyn Env) -> Result<Rendered, Error> {
    let rules = &task.target.rules;
    let mut labels = vec![
        ("dagster/job".to_owned(), task.job_name.clone()),
        ("dagster/op".to_owned(), task.step_key.clone()),
        ("dagster/run-id".to_owned(), task.run_id.clone()),
    ];
    if let Some(loc) = task
        .code_location
        .as_ref()
        .filter(|_| rules.code_location_label)
    {
        labels.push(("dagster/code-location".to_owned(), loc.clone()));
    }
    let job = build_job(
        JobRequest {
            target: &task.target,
            job_config: &task.job_config,
            args: task.args.clone(),
            job_name: &task.k8s_job_name,
            pod_name: &task.k8s_job_name,
            user: task.user.clone(),
            component: "step_worker",
            labels,
            env_vars: vec![
                env_var("DAGSTER_RUN_JOB_NAME", &task.job_name),
                env_var("DAGSTER_RUN_STEP_KEY", &task.step_key),
            ],
        },
        env,
    )?;
    Ok(Rendered {
        job,
        namespace: task.namespace.clone(),
        dropped_env_vars: Vec::new(),
    })
}
