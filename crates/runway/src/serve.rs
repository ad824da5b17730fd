//! `runway serve`: the launcher's logic behind the gRPC contract. This
//! module decides; [`grpc`] translates; `app` wires the concrete client.

pub mod grpc;
pub mod settings;
pub mod steps;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::cluster::tracker::add_managed_by;
use crate::cluster::{self, JobApi, Tracker};
use crate::metrics::Metrics;
use runway_core::dagster::launcher::{Launcher, LauncherClass};
use runway_core::dagster::names::run_job_name;
use runway_core::k8s::config::Map;
use runway_core::render::{self, RunCase};
use runway_core::track::debug;
use runway_core::track::health::{HealthQuery, WorkerStatus};
use runway_core::track::{Health, HealthMode};
use runway_proto as proto;

/// Why a request failed. Every variant names the field or the cause and the fix.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("launcher.digest {digest} is not known to this server; resend the request with launcher.config_json")]
    UnknownDigest { digest: String },
    #[error(transparent)]
    Render(#[from] render::Error),
    #[error("namespace {namespace:?} is not watched by this server (it watches {watched:?}); add it with --namespace, or the run's Job could never be tracked")]
    NamespaceNotWatched {
        namespace: String,
        watched: Vec<String>,
    },
    #[error("Job {job} already exists in namespace {namespace} but belongs to run {other_run:?}, not {run}")]
    Conflict {
        job: String,
        namespace: String,
        run: String,
        other_run: Option<String>,
    },
    #[error("Job {job} in namespace {namespace} is being deleted; launch again once it is gone")]
    BeingDeleted { job: String, namespace: String },
    #[error(transparent)]
    Kube(#[from] cluster::Error),
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Server-wide options of the launcher logic.
#[derive(Debug, Clone)]
pub struct Options {
    /// Answer every health check with dagster-k8s's exact rules.
    pub force_dagster_compat: bool,
    pub unschedulable_grace_secs: i64,
    /// Parsed launcher configs kept.
    pub config_cache: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            force_dagster_compat: false,
            unschedulable_grace_secs: 120,
            config_cache: 64,
        }
    }
}

/// The result of a launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    pub job_name: String,
    pub namespace: String,
    pub uid: String,
    pub image: String,
    pub created: bool,
    pub dropped_env_vars: Vec<String>,
}

/// The result of a terminate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terminated {
    pub terminated: bool,
    pub jobs: Vec<String>,
    pub pods: Vec<String>,
}

/// The launcher logic, over any [`JobApi`].
#[derive(Debug)]
pub struct Launch<K> {
    kube: K,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    options: Options,
    configs: Mutex<HashMap<(LauncherClass, String), Arc<Launcher>>>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn parse_json(text: &str, field: &str) -> Result<Value, Error> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| invalid(field, format!("not valid JSON: {e}")))
}

fn class_of(name: &str, field: &str) -> Result<LauncherClass, Error> {
    LauncherClass::parse(name).ok_or_else(|| {
        invalid(
            field,
            "expected \"K8sRunLauncher\" or \"CeleryK8sRunLauncher\"",
        )
    })
}

fn label<'a>(job: &'a k8s_openapi::api::batch::v1::Job, key: &str) -> Option<&'a str> {
    job.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

impl Launched {
    fn of(
        job: &k8s_openapi::api::batch::v1::Job,
        job_name: String,
        namespace: String,
        created: bool,
        dropped_env_vars: Vec<String>,
    ) -> Launched {
        Launched {
            job_name,
            namespace,
            uid: job.metadata.uid.clone().unwrap_or_default(),
            image: job
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            created,
            dropped_env_vars,
        }
    }
}

impl<K: JobApi> Launch<K> {
    pub fn new(
        kube: K,
        tracker: Arc<Tracker>,
        metrics: Arc<Metrics>,
        options: Options,
    ) -> Launch<K> {
        Launch {
            kube,
            tracker,
            metrics,
            options,
            configs: Mutex::new(HashMap::new()),
        }
    }

    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The parsed launcher config, from the cache when its digest is known.
    fn launcher(
        &self,
        config: Option<&proto::LauncherConfig>,
        env: &BTreeMap<String, String>,
    ) -> Result<Arc<Launcher>, Error> {
        let config = config.ok_or_else(|| {
            invalid(
                "launcher",
                "missing: send the launcher config in force (class, digest, config_json)",
            )
        })?;
        let class = class_of(&config.launcher_class, "launcher.launcher_class")?;
        let digest = if config.config_json.is_empty() {
            if config.digest.is_empty() {
                return Err(invalid(
                    "launcher.digest",
                    "give the digest, the config_json, or both",
                ));
            }
            config.digest.to_ascii_lowercase()
        } else {
            let actual = sha256_hex(config.config_json.as_bytes());
            if !config.digest.is_empty() && !config.digest.eq_ignore_ascii_case(&actual) {
                return Err(invalid(
                    "launcher.digest",
                    format!("{} is not the SHA-256 of config_json ({actual}); compute it over the exact bytes sent", config.digest),
                ));
            }
            actual
        };
        let key = (class, digest);
        if let Some(hit) = self.lock_configs().get(&key) {
            return Ok(hit.clone());
        }
        if config.config_json.is_empty() {
            return Err(Error::UnknownDigest { digest: key.1 });
        }
        let value = parse_json(&config.config_json, "launcher.config_json")?;
        let value = match value {
            Value::Null => Value::Object(Map::new()),
            v => v,
        };
        let parsed = Arc::new(Launcher::load(class, &value, env).map_err(render::Error::from)?);
        let mut cache = self.lock_configs();
        if cache.len() >= self.options.config_cache.max(1) {
            // Configs change rarely; dropping all beats tracking recency.
            cache.clear();
        }
        cache.insert(key, parsed.clone());
        Ok(parsed)
    }

    fn lock_configs(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(LauncherClass, String), Arc<Launcher>>> {
        self.configs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// LaunchRun and ResumeRun.
    pub async fn launch(
        &self,
        req: &proto::LaunchRunRequest,
        resume: bool,
    ) -> Result<Launched, Error> {
        let run = req
            .run
            .as_ref()
            .ok_or_else(|| invalid("run", "missing: describe the run to launch"))?;
        if run.run_id.is_empty() {
            return Err(invalid("run.run_id", "missing: the Dagster run id"));
        }
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
        let env: BTreeMap<String, String> = req
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let launcher = self.launcher(req.launcher.as_ref(), &env)?;
        let case = RunCase {
            launcher_class: launcher.class,
            launcher: Value::Null,
            run_id: run.run_id.clone(),
            job_name: run.job_name.clone(),
            location_name: Some(run.location_name.clone()).filter(|s| !s.is_empty()),
            image: run.image.clone(),
            container_context: parse_json(
                &run.container_context_json,
                "run.container_context_json",
            )?,
            tags: run
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
            args: run.args.clone(),
            resume_attempt: run.resume_attempt,
            run_config: parse_json(&run.run_config_json, "run.run_config_json")?,
        };
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
        let name = run_job_name(&run.run_id, run.resume_attempt);
        let ns = rendered.namespace.clone();
        // Twice at most: an existing Job that vanishes between the 409 and
        // the read is created again.
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
                    let owner = label(&existing, "dagster/run-id");
                    if owner != Some(run.run_id.as_str()) {
                        return Err(Error::Conflict {
                            job: name,
                            namespace: ns,
                            run: run.run_id.clone(),
                            other_run: owner.map(str::to_owned),
                        });
                    }
                    if existing.metadata.deletion_timestamp.is_some() {
                        return Err(Error::BeingDeleted {
                            job: name,
                            namespace: ns,
                        });
                    }
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

    /// The namespace of a run's Job: as given, else where the index saw it,
    /// else the only watched namespace.
    fn namespace_of(&self, run_id: &str, job_name: &str, given: &str) -> Result<String, Error> {
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

    pub async fn terminate(&self, req: &proto::TerminateRunRequest) -> Result<Terminated, Error> {
        if req.run_id.is_empty() {
            return Err(invalid("run_id", "missing: the Dagster run id"));
        }
        let name = run_job_name(&req.run_id, req.resume_attempt);
        let ns = self.namespace_of(&req.run_id, &name, &req.namespace)?;
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

    /// The answer, and the name of the Job it is about.
    pub fn health(
        &self,
        req: &proto::CheckRunWorkerHealthRequest,
    ) -> Result<(String, Health), Error> {
        if req.run_id.is_empty() {
            return Err(invalid("run_id", "missing: the Dagster run id"));
        }
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
        if req.run_id.is_empty() {
            return Err(invalid("run_id", "missing: the Dagster run id"));
        }
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

pub fn status_name(s: WorkerStatus) -> &'static str {
    match s {
        WorkerStatus::Running => "RUNNING",
        WorkerStatus::NotFound => "NOT_FOUND",
        WorkerStatus::Failed => "FAILED",
        WorkerStatus::Success => "SUCCESS",
        WorkerStatus::Unknown => "UNKNOWN",
    }
}
