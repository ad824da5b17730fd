//! What the service answers about a launched run: terminate, health and
//! debug info, all from the watch index where it can.

use super::*;

impl<K: JobApi> Launch<K> {
    /// The namespace of a run's Job: as given, else where the index saw it,
    /// else the only watched namespace.
    pub(super) fn namespace_of(
        &self,
        run_id: &str,
        job_name: &str,
        given: &str,
    ) -> Result<String, Error> {
        if !given.is_empty() {
            return Ok(given.to_owned());
        }
        if let Some((key, _)) = self.tracker.read().find_run_job(run_id, job_name) {
            return Ok(key.namespace.to_string());
        }
        match self.tracker.namespaces() {
            [only] => Ok(only.clone()),
            _ => Err(invalid(
                "namespace",
                format!("the index has no Job {job_name} and this server watches several namespaces; give the namespace"),
            )),
        }
    }

    /// Deletes a Job as dagster-k8s's `delete_job` does: list its pods,
    /// delete the Job (propagation Background), then each pod.
    async fn delete_job_and_pods(
        &self,
        ns: &str,
        job: &str,
        out: &mut Terminated,
    ) -> Result<(), Error> {
        let pods = self.kube.job_pod_names(ns, job).await?;
        if self.kube.delete_job(ns, job).await? {
            out.jobs.push(job.to_owned());
        }
        for pod in pods {
            if self.kube.delete_pod(ns, &pod).await? {
                out.pods.push(pod);
            }
        }
        Ok(())
    }

    /// Deletes the run's Job (and its step Jobs), only in a watched
    /// namespace and only a Job Runway created for this run: anything else
    /// is NOT_FOUND and left alone.
    pub async fn terminate(&self, req: &proto::TerminateRunRequest) -> Result<Terminated, Error> {
        check_run_id(&req.run_id)?;
        let name = run_job_name(&req.run_id, req.resume_attempt);
        let ns = self.namespace_of(&req.run_id, &name, &req.namespace)?;
        self.check_owned(&ns, &name, &req.run_id).await?;
        let mut out = Terminated::default();
        self.delete_job_and_pods(&ns, &name, &mut out).await?;
        if req.include_step_jobs {
            let steps: Vec<(String, String)> = {
                let index = self.tracker.read();
                index
                    .run_jobs(&req.run_id)
                    .iter()
                    .filter(|k| index.job(k).is_some_and(|j| j.step_key.is_some()))
                    .map(|k| (k.namespace.to_string(), k.name.to_string()))
                    .collect()
            };
            for (ns, job) in steps {
                self.delete_job_and_pods(&ns, &job, &mut out).await?;
            }
        }
        out.terminated = !out.jobs.is_empty() || !out.pods.is_empty();
        Ok(out)
    }

    /// Whether `name` in `ns` is a Job Runway created for `run_id`: the
    /// watch index (which holds Runway's Jobs only) says so, or the Job's
    /// own labels do.
    async fn check_owned(&self, ns: &str, name: &str, run_id: &str) -> Result<(), Error> {
        let not_found = |why: String| Error::NotFound { what: why };
        if !self.tracker.watches(ns) {
            return Err(not_found(format!(
                "no Job of run {run_id} in namespace {ns}: this server does not watch that namespace (it watches {:?})",
                self.tracker.namespaces()
            )));
        }
        if let Some((key, _)) = self.tracker.read().find_run_job(run_id, name) {
            if &*key.namespace == ns {
                return Ok(());
            }
        }
        let Some(job) = self.kube.get_job(ns, name).await? else {
            return Err(not_found(format!("Job {name} not found in namespace {ns}")));
        };
        let labels = job.metadata.labels.unwrap_or_default();
        let ours = labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some("runway")
            && labels.get("dagster/run-id").map(String::as_str) == Some(run_id);
        if ours {
            Ok(())
        } else {
            Err(not_found(format!(
                "Job {name} in namespace {ns} was not created by Runway for run {run_id}; it is left alone"
            )))
        }
    }

    /// The answer, and the name of the Job it is about.
    pub fn health(
        &self,
        req: &proto::CheckRunWorkerHealthRequest,
    ) -> Result<(String, Health), Error> {
        check_run_id(&req.run_id)?;
        let celery = match req.launcher_class.as_str() {
            "" => false,
            name => class_of(name, "launcher_class")? == LauncherClass::CeleryK8s,
        };
        let mode = if self.options.force_dagster_compat
            || req.mode == proto::HealthMode::DagsterCompat as i32
        {
            HealthMode::DagsterCompat
        } else {
            HealthMode::Diagnose
        };
        let name = run_job_name(&req.run_id, req.resume_attempt);
        let index = self.tracker.read();
        let found = index
            .find_run_job(&req.run_id, &name)
            .map(|(key, job)| (job, index.pods_of(key)));
        let answer = runway_core::track::health(
            found,
            &HealthQuery {
                job_name: &name,
                run_status: &req.run_status,
                mode,
                celery,
                synced: self.tracker.is_synced(),
                now: cluster::tracker::now_secs(),
                grace_secs: self.options.unschedulable_grace_secs,
            },
        );
        drop(index);
        self.metrics
            .health_checks
            .get_or_create(&crate::metrics::StatusLabel {
                status: status_name(answer.status),
            })
            .inc();
        Ok((name, answer))
    }

    pub async fn debug_info(
        &self,
        req: &proto::GetRunWorkerDebugInfoRequest,
    ) -> Result<String, Error> {
        check_run_id(&req.run_id)?;
        let name = run_job_name(&req.run_id, req.resume_attempt);
        let lines = if req.log_lines == 0 {
            25
        } else {
            req.log_lines
        };
        // A copy, so no lock is held across the log reads.
        let (ns, job, pods) = {
            let index = self.tracker.read();
            match index.find_run_job(&req.run_id, &name) {
                Some((key, job)) => (
                    key.namespace.to_string(),
                    Some(job.clone()),
                    index
                        .pods_of(key)
                        .into_iter()
                        .map(|(k, p)| (k, p.clone()))
                        .collect::<Vec<_>>(),
                ),
                None => return Ok(String::new()),
            }
        };
        let mut blocks = Vec::with_capacity(pods.len());
        for (key, pod) in pods {
            let mut logs = HashMap::new();
            if req.include_container_logs {
                for c in debug::containers_with_logs(&pod) {
                    let got = self
                        .kube
                        .pod_log_tail(&ns, &key.name, c, lines)
                        .await
                        .map_err(|e| e.to_string());
                    logs.insert(c.to_owned(), got);
                }
            }
            let block = debug::pod_block(&key.name, &pod, req.include_container_logs, lines, &logs);
            blocks.push((key, block));
        }
        Ok(debug::debug_text(&name, job.as_ref(), &blocks))
    }
}

/// A run id a request may carry: given, and no longer than any Dagster run
/// id (a UUID) could be, so it is never echoed back at length.
pub(super) fn check_run_id(run_id: &str) -> Result<(), Error> {
    if run_id.is_empty() {
        return Err(invalid("run_id", "missing: the Dagster run id"));
    }
    if run_id.len() > MAX_RUN_ID_BYTES {
        return Err(invalid(
            "run_id",
            format!(
                "{} bytes is not a Dagster run id (a UUID, at most {MAX_RUN_ID_BYTES} bytes here)",
                run_id.len()
            ),
        ));
    }
    Ok(())
}

/// The longest run id taken (Dagster's are 36-character UUIDs).
const MAX_RUN_ID_BYTES: usize = 255;
