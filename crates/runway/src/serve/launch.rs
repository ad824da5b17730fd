//! LaunchRun and ResumeRun: validate, render with the cached config, create
//! the Job, and on a 409 decide whether the existing Job is this run's.

use super::*;
use runway_core::dagster::version::Target;

impl<K: JobApi> Launch<K> {
    /// LaunchRun and ResumeRun.
    pub async fn launch(
        &self,
        req: &proto::LaunchRunRequest,
        resume: bool,
    ) -> Result<Launched, Error> {
        let run = check_run(req, resume)?;
        // A Dagster version outside the supported ranges is refused before
        // anything is rendered.
        let target = Target::parse(&req.dagster_version)
            .map_err(|e| invalid("dagster_version", e.to_string()))?;
        let env: BTreeMap<String, String> = req
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let launcher = self.launcher(req.launcher.as_ref(), &env)?;
        let case = run_case(run, launcher.class, target)?;
        runway_core::dagster::tags::check_tags(&case.tags, "run.tags")
            .map_err(render::Error::from)?;
        let mut rendered = render::render_run_loaded(&case, &launcher, &env)?;
        if !self.tracker.watches(&rendered.namespace) {
            return Err(Error::NamespaceNotWatched {
                namespace: rendered.namespace,
                watched: self.tracker.namespaces().to_vec(),
            });
        }
        add_managed_by(&mut rendered.job);
        self.create_idempotent(run, rendered).await
    }

    /// Creates the run's Job. A 409 is this run's Job when its run-id label
    /// says so (a retried launch); twice at most, since an existing Job that
    /// vanishes between the 409 and the read is created again.
    async fn create_idempotent(
        &self,
        run: &proto::Run,
        rendered: render::Rendered,
    ) -> Result<Launched, Error> {
        let name = run_job_name(&run.run_id, run.resume_attempt);
        let ns = rendered.namespace.clone();
        for _ in 0..2 {
            match self.kube.create_job(&ns, &rendered.job).await {
                Ok(job) => {
                    self.tracker
                        .update(|ix, now, out| ix.insert_created(&job, now, out));
                    return Ok(Launched::of(
                        &job,
                        name,
                        ns,
                        true,
                        rendered.dropped_env_vars,
                    ));
                }
                Err(cluster::Error::AlreadyExists { .. }) => {
                    let Some(existing) = self.kube.get_job(&ns, &name).await? else {
                        continue;
                    };
                    check_existing(&existing, run, &name, &ns)?;
                    return Ok(Launched::of(
                        &existing,
                        name,
                        ns,
                        false,
                        rendered.dropped_env_vars,
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Kube(cluster::Error::Transport(format!(
            "Job {name} kept disappearing between create (409) and read"
        ))))
    }
}

/// The request's run, with the fields a launch cannot do without.
fn check_run(req: &proto::LaunchRunRequest, resume: bool) -> Result<&proto::Run, Error> {
    let run = req
        .run
        .as_ref()
        .ok_or_else(|| invalid("run", "missing: describe the run to launch"))?;
    runs::check_run_id(&run.run_id).map_err(|e| match e {
        Error::Invalid { message, .. } => invalid("run.run_id", message),
        other => other,
    })?;
    if run.job_name.is_empty() {
        return Err(invalid("run.job_name", "missing: the Dagster job name"));
    }
    if run.args.is_empty() {
        return Err(invalid(
            "run.args",
            "missing: the run worker argv Dagster computed (`dagster api execute_run ...`)",
        ));
    }
    if resume && run.resume_attempt == 0 {
        return Err(invalid(
            "run.resume_attempt",
            "ResumeRun needs the resume attempt (1 or more)",
        ));
    }
    if !resume && run.resume_attempt != 0 {
        return Err(invalid(
            "run.resume_attempt",
            "LaunchRun starts attempt 0; use ResumeRun for a resumed worker",
        ));
    }
    Ok(run)
}

/// The render pipeline's view of the run.
fn run_case(run: &proto::Run, class: LauncherClass, target: Target) -> Result<RunCase, Error> {
    Ok(RunCase {
        target,
        launcher_class: class,
        launcher: Value::Null,
        run_id: run.run_id.clone(),
        job_name: run.job_name.clone(),
        location_name: Some(run.location_name.clone()).filter(|s| !s.is_empty()),
        image: run.image.clone(),
        container_context: parse_json(&run.container_context_json, "run.container_context_json")?,
        tags: run
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
        args: run.args.clone(),
        resume_attempt: run.resume_attempt,
        run_config: parse_json(&run.run_config_json, "run.run_config_json")?,
    })
}

/// An existing Job under the run's name answers the launch only when it is
/// this run's and is not being deleted.
fn check_existing(
    existing: &k8s_openapi::api::batch::v1::Job,
    run: &proto::Run,
    name: &str,
    ns: &str,
) -> Result<(), Error> {
    let owner = label(existing, "dagster/run-id");
    if owner != Some(run.run_id.as_str()) {
        return Err(Error::Conflict {
            job: name.to_owned(),
            namespace: ns.to_owned(),
            run: run.run_id.clone(),
            other_run: owner.map(str::to_owned),
        });
    }
    if existing.metadata.deletion_timestamp.is_some() {
        return Err(Error::BeingDeleted {
            job: name.to_owned(),
            namespace: ns.to_owned(),
        });
    }
    Ok(())
}
