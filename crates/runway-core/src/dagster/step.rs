//! The kwargs of an `execute_step_k8s_job` Celery task, and the step Job they
//! describe (dagster-celery-k8s's task body up to `create_namespaced_job`).

mod args;
mod configs;
mod zlib;

use base64::Engine as _;
use serde_json::Value;

use super::config::{dflt, opt, process, process_shape, req, Field, Mode, Ty};
use super::rules::Rules;
use super::version::Target;
use super::{names, Env, Error};
use crate::k8s::config::schema::ids;
use crate::k8s::config::{merge_user_configs, path, snake_case_dict, Map, UserConfig};
use crate::k8s::job::JobConfig;
use args::{entry_point, normalize_step_args, object_field, retry_attempt, str_field};
use zlib::zlib_compress;

/// A step Job request derived from the task kwargs alone.
#[derive(Debug, Clone)]
pub struct StepTask {
    /// The Dagster whose task body this is (the kwargs do not say; the
    /// worker is told).
    pub target: Target,
    pub run_id: String,
    pub step_key: String,
    /// `pipeline_origin.pipeline_name` (the run record's job name in Dagster).
    pub job_name: String,
    /// The run's code location (`dagster/code-location`), known from the run
    /// record only (errata 6).
    pub code_location: Option<String>,
    pub k8s_job_name: String,
    pub namespace: String,
    pub job_config: JobConfig,
    pub user: UserConfig,
    pub args: Vec<String>,
    pub job_wait_timeout: f64,
    pub load_incluster_config: bool,
    pub kubeconfig_file: Option<String>,
}

const JOB_CONFIG_KEYS: &[&str] = &[
    "job_image",
    "dagster_home",
    "image_pull_policy",
    "image_pull_secrets",
    "service_account_name",
    "instance_config_map",
    "postgres_password_secret",
    "env_config_maps",
    "env_secrets",
    "env_vars",
    "volume_mounts",
    "volumes",
    "labels",
    "resources",
    "scheduler_name",
    "security_context",
];

const KWARG_FIELDS: &[Field] = &[
    req("execute_step_args_packed", Ty::Any),
    req("job_config_dict", Ty::Any),
    req("job_namespace", Ty::Str),
    req("load_incluster_config", Ty::Bool),
    req("job_wait_timeout", Ty::Float),
    // Absent from 1.1.9 executors (errata 4): accepted either way.
    opt("per_step_k8s_config", Ty::Noneable(&Ty::Any)),
    opt("user_defined_k8s_config_dict", Ty::Noneable(&Ty::Any)),
    dflt("kubeconfig_file", Ty::Noneable(&Ty::Str), "null"),
];

/// Where the kwargs' fields are named from in errors.
const AT: &str = "task_kwargs";

struct NoEnv;
impl Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

/// Whether the signature takes kwarg `name` as any object (`Ty::Any`): the
/// step input, the executor's Job config and the user's k8s configs, most
/// of a message.
fn opaque(name: &str) -> bool {
    KWARG_FIELDS
        .iter()
        .any(|f| f.name == name && matches!(f.ty, Ty::Any | Ty::Noneable(Ty::Any)))
}

/// The kwargs checked against the task signature. The check asks no more of
/// an opaque kwarg than to be an object, so it is shown an empty one: the
/// same verdict and error without copying the object (the caller reads it
/// from the message).
fn shape_checked(kwargs: &Map) -> Result<Map, Error> {
    let skeleton: Map = kwargs
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Object(_) if opaque(k) => Value::Object(Map::new()),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    process_shape(KWARG_FIELDS, &skeleton, AT, &NoEnv, Mode::Process)
}

impl StepTask {
    /// Reads the kwargs exactly as the task signature of `target` takes them.
    pub fn from_kwargs(kwargs: &Value, target: &Target) -> Result<StepTask, Error> {
        match kwargs {
            Value::Object(map) => StepTask::from_map(map, target),
            other => {
                // Not an object: the error the kwargs' shape gives for it.
                process(&Ty::Shape(KWARG_FIELDS), other, AT, &NoEnv, Mode::Process)?;
                Err(Error::Invalid {
                    path: AT.into(),
                    message: "expected an object of task kwargs".into(),
                })
            }
        }
    }

    /// [`StepTask::from_kwargs`] of the kwargs map a decoded message holds.
    pub fn from_map(kwargs: &Map, target: &Target) -> Result<StepTask, Error> {
        let rules = &target.rules;
        let kw = shape_checked(kwargs)?;
        let get = |k: &str| kw.get(k).filter(|v| !v.is_null());
        // The opaque kwargs are read from the message itself (see `opaque`).
        let opaque = |k: &str| kwargs.get(k).and_then(Value::as_object);
        let no_args = Map::new();
        let packed = opaque("execute_step_args_packed").unwrap_or(&no_args);
        let args_at = path::key(AT, "execute_step_args_packed");
        let step_args = normalize_step_args(packed, &args_at, rules)?;
        let run_id = str_field(
            step_args.get("pipeline_run_id"),
            "pipeline_run_id",
            &args_at,
        )?;
        let step_keys = step_args
            .get("step_keys_to_execute")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let step_key = match step_keys {
            [Value::String(k)] => k.clone(),
            _ => {
                return Err(Error::Invalid {
                    path: path::key(&args_at, "step_keys_to_execute"),
                    message: "Celery K8s task executor can only execute 1 step at a time; give \
                              exactly one step key"
                        .into(),
                })
            }
        };
        let origin = object_field(
            step_args.get("pipeline_origin"),
            "pipeline_origin",
            &args_at,
        )?;
        let origin_at = path::key(&args_at, "pipeline_origin");
        let job_name = str_field(origin.get("pipeline_name"), "pipeline_name", &origin_at)?;
        let entry_point = entry_point(origin, &origin_at)?;
        let attempt = retry_attempt(step_args.get("known_state"), &step_key);

        let (serialized, shared) = step_args.dumps();
        let compressed =
            zlib_compress(serialized.as_bytes(), shared).map_err(|e| Error::Invalid {
                path: args_at.clone(),
                message: format!("could not compress the step arguments: {e}"),
            })?;
        let mut args = entry_point;
        args.extend([
            "api".into(),
            "execute_step".into(),
            "--compressed-input-json".into(),
            base64::engine::general_purpose::STANDARD.encode(compressed),
        ]);

        let per_step = kwargs.get("per_step_k8s_config").filter(|v| !v.is_null());
        let inputs = configs::Inputs {
            target,
            job_config_dict: opaque("job_config_dict"),
            user_config_dict: opaque("user_defined_k8s_config_dict"),
            per_step_given: per_step.is_some(),
            per_step_entry: per_step
                .and_then(Value::as_object)
                .and_then(|m| m.get(&step_key)),
        };
        let (job_config, user) =
            configs::converted(inputs, |inputs| convert_configs(inputs, &step_key))?;

        let k8s_job_name = names::step_job_name(&run_id, &step_key, attempt);
        Ok(StepTask {
            target: target.clone(),
            run_id,
            step_key,
            job_name,
            code_location: None,
            k8s_job_name,
            namespace: get("job_namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned(),
            job_config,
            user,
            args,
            job_wait_timeout: get("job_wait_timeout")
                .and_then(Value::as_f64)
                .unwrap_or(86400.0),
            load_incluster_config: get("load_incluster_config")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            kubeconfig_file: get("kubeconfig_file")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// The executor's Job config and the step's user config, as the task reads
/// them from its kwargs.
fn convert_configs(
    inputs: &configs::Inputs<'_>,
    step_key: &str,
) -> Result<(JobConfig, UserConfig), Error> {
    let rules = &inputs.target.rules;
    let job_config =
        job_config_from_dict(inputs.job_config_dict, &path::key(AT, "job_config_dict"))?;
    let no_config = Map::new();
    let tag_config = UserConfig::from_dict_as(
        inputs.user_config_dict.unwrap_or(&no_config),
        &path::key(AT, "user_defined_k8s_config_dict"),
        rules.user_sections(),
        rules.merge_default(),
    )?;
    let user = with_per_step_config(tag_config, inputs, step_key, rules)?;
    Ok((job_config, user))
}

/// From 1.7.15 the op's `per_step_k8s_config` entry merges onto its tag
/// config; before, the task signature has no such kwarg (a task carrying one
/// comes from a newer publisher and fails in the stock worker).
fn with_per_step_config(
    tag_config: UserConfig,
    inputs: &configs::Inputs<'_>,
    step_key: &str,
    rules: &Rules,
) -> Result<UserConfig, Error> {
    const AT: &str = "task_kwargs.per_step_k8s_config";
    if !inputs.per_step_given {
        return Ok(tag_config);
    }
    if !rules.per_step_k8s_config {
        return Err(Error::NotInVersion {
            path: AT.into(),
            version: rules.version.to_string(),
            since: "1.7.15",
            fix: "the task comes from a newer Dagster than this worker serves: run the \
                  worker with --dagster-version set to the publisher's version",
        });
    }
    let none = Map::new();
    let entry = inputs
        .per_step_entry
        .and_then(Value::as_object)
        .unwrap_or(&none);
    let entry = UserConfig::from_dict(entry, &path::key(AT, step_key))?;
    Ok(merge_user_configs(&tag_config, &entry)?)
}

/// `DagsterK8sJobConfig.from_dict(job_config_dict)`.
pub fn job_config_from_dict(dict: Option<&Map>, at: &str) -> Result<JobConfig, Error> {
    let empty = Map::new();
    let dict = dict.unwrap_or(&empty);
    if let Some(bad) = dict.keys().find(|k| !JOB_CONFIG_KEYS.contains(&k.as_str())) {
        return Err(Error::UnknownKey {
            path: path::key(at, bad),
            expected: JOB_CONFIG_KEYS.join(", "),
        });
    }
    let get = |k: &str| dict.get(k).filter(|v| !v.is_null());
    let string = |k: &str| -> Result<Option<String>, Error> {
        match get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(Error::WrongType {
                path: path::key(at, k),
                expected: "a string".into(),
                got: crate::k8s::config::error_kind(other),
            }),
        }
    };
    let list = |k: &str| -> Result<Vec<Value>, Error> {
        match get(k) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(other) => Err(Error::WrongType {
                path: path::key(at, k),
                expected: "a list".into(),
                got: crate::k8s::config::error_kind(other),
            }),
        }
    };
    let strings = |k: &str| -> Result<Vec<String>, Error> {
        list(k)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(Error::WrongType {
                    path: path::index(&path::key(at, k), i),
                    expected: "a string".into(),
                    got: crate::k8s::config::error_kind(other),
                }),
            })
            .collect()
    };
    let object = |k: &str| -> Result<Map, Error> {
        match get(k) {
            None => Ok(Map::new()),
            Some(Value::Object(o)) => Ok(o.clone()),
            Some(other) => Err(Error::WrongType {
                path: path::key(at, k),
                expected: "an object".into(),
                got: crate::k8s::config::error_kind(other),
            }),
        }
    };
    let convert = |k: &str, model: usize| -> Result<Vec<Value>, Error> {
        list(k)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let here = path::index(&path::key(at, k), i);
                let obj = v.as_object().ok_or_else(|| Error::WrongType {
                    path: here.clone(),
                    expected: "an object".into(),
                    got: crate::k8s::config::error_kind(v),
                })?;
                Ok(Value::Object(snake_case_dict(model, obj, &here)?))
            })
            .collect()
    };
    let labels = object("labels")?;
    if let Some((k, v)) = labels.iter().find(|(_, v)| !v.is_string()) {
        return Err(Error::WrongType {
            path: path::key(&path::key(at, "labels"), k),
            expected: "a string label value".into(),
            got: crate::k8s::config::error_kind(v),
        });
    }
    let pull_secrets = list("image_pull_secrets")?;
    if let Some((i, v)) = pull_secrets
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_object())
    {
        return Err(Error::WrongType {
            path: path::index(&path::key(at, "image_pull_secrets"), i),
            expected: "an object like {name: <secret>}".into(),
            got: crate::k8s::config::error_kind(v),
        });
    }
    Ok(JobConfig {
        job_image: string("job_image")?,
        dagster_home: string("dagster_home")?,
        image_pull_policy: Some(string("image_pull_policy")?.unwrap_or_else(|| "Always".into())),
        image_pull_secrets: pull_secrets,
        service_account_name: string("service_account_name")?,
        instance_config_map: string("instance_config_map")?,
        postgres_password_secret: string("postgres_password_secret")?,
        env_config_maps: strings("env_config_maps")?,
        env_secrets: strings("env_secrets")?,
        env_vars: strings("env_vars")?,
        volume_mounts: convert("volume_mounts", ids::VOLUME_MOUNT)?,
        volumes: convert("volumes", ids::VOLUME)?,
        labels,
        resources: object("resources")?,
        scheduler_name: string("scheduler_name")?,
        security_context: object("security_context")?,
    })
}
