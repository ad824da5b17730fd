//! Case documents: what `runway render` reads, and the run case they describe.

use super::checks::*;
use super::*;

/// Parses a case document (JSON or YAML text).
pub fn parse_case_text(text: &str) -> Result<Value, Error> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(json_err) => serde_saphyr::from_str::<Value>(text).map_err(|yaml_err| Error::Case {
            path: "<case>".into(),
            message: format!(
                "not valid JSON ({json_err}) nor YAML ({yaml_err}); give a JSON or YAML object"
            ),
        }),
    }
}

/// Renders any case document, as the release its optional top-level
/// `dagster_version` names (the newest supported when absent).
pub fn render_case(case: &Value, env: &dyn Env) -> Result<Rendered, Error> {
    prepare_case(case, env)?.render(env)
}

/// A case held the way a service holds its inputs: a run's launcher config
/// loaded once (serve caches it per config digest and environment), a step
/// task's kwargs as they arrive (every task brings its own).
#[derive(Debug, Clone)]
pub enum PreparedCase {
    Run {
        case: Box<RunCase>,
        launcher: Box<Launcher>,
    },
    Step {
        kwargs: Value,
        target: Target,
    },
}

impl PreparedCase {
    /// One launch or one step task: what serve and the worker do per request.
    pub fn render(&self, env: &dyn Env) -> Result<Rendered, Error> {
        match self {
            PreparedCase::Run { case, launcher } => render_run_loaded(case, launcher, env),
            PreparedCase::Step { kwargs, target } => {
                render_step(&StepTask::from_kwargs(kwargs, target)?, env)
            }
        }
    }
}

/// Checks a case document and loads what a service loads once.
pub fn prepare_case(case: &Value, env: &dyn Env) -> Result<PreparedCase, Error> {
    let obj = case
        .as_object()
        .ok_or_else(|| case_err("<case>", "expected an object"))?;
    let target = case_target(obj)?;
    match obj.get("kind").and_then(Value::as_str) {
        Some("run") => {
            check_keys(
                obj,
                &[
                    "kind",
                    "dagster_version",
                    "launcher_class",
                    "launcher",
                    "run",
                ],
                "",
            )?;
            let case = RunCase::from_value(obj, target)?;
            let launcher = Launcher::load(case.launcher_class, &case.launcher, env)?;
            Ok(PreparedCase::Run {
                case: Box::new(case),
                launcher: Box::new(launcher),
            })
        }
        Some("step") => {
            check_keys(obj, &["kind", "dagster_version", "task_kwargs"], "")?;
            let kwargs = obj.get("task_kwargs").ok_or_else(|| Error::Case {
                path: "task_kwargs".into(),
                message: "missing (the kwargs of the execute_step_k8s_job message)".into(),
            })?;
            Ok(PreparedCase::Step {
                kwargs: kwargs.clone(),
                target,
            })
        }
        _ => Err(case_err("kind", "expected \"run\" or \"step\"")),
    }
}

/// The case's `dagster_version`.
fn case_target(obj: &Map) -> Result<Target, Error> {
    match obj.get("dagster_version") {
        None | Some(Value::Null) => Ok(Target::newest()),
        Some(Value::String(text)) => {
            Target::parse(text).map_err(|e| case_err("dagster_version", &e.to_string()))
        }
        Some(_) => Err(case_err(
            "dagster_version",
            "expected a string such as \"1.1.9\" (dagster.__version__)",
        )),
    }
}

impl RunCase {
    fn from_value(obj: &Map, target: Target) -> Result<RunCase, Error> {
        let class_name = obj.get("launcher_class").and_then(Value::as_str);
        let launcher_class = class_name.and_then(LauncherClass::parse).ok_or_else(|| {
            case_err(
                "launcher_class",
                "expected \"K8sRunLauncher\" or \"CeleryK8sRunLauncher\"",
            )
        })?;
        let run = obj
            .get("run")
            .and_then(Value::as_object)
            .ok_or_else(|| case_err("run", "expected an object describing the run"))?;
        check_keys(
            run,
            &[
                "run_id",
                "job_name",
                "location_name",
                "image",
                "container_context",
                "tags",
                "args",
                "resume_attempt",
                "run_config",
            ],
            "run",
        )?;
        let string = |k: &str| -> Result<String, Error> {
            run.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| case_err(&path::key("run", k), "expected a string"))
        };
        let opt_string = |k: &str| -> Result<Option<String>, Error> {
            match run.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(case_err(&path::key("run", k), "expected a string or null")),
            }
        };
        let args = match run.get("args") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| case_err(&path::index("run.args", i), "expected a string"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(case_err(
                    "run.args",
                    "expected the argv Dagster computed (a list of strings)",
                ))
            }
        };
        let tags = match run.get("tags") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(t)) => t.clone(),
            Some(_) => return Err(case_err("run.tags", "expected an object of string tags")),
        };
        check_tags(&tags, "tags")?;
        let resume_attempt = match run.get("resume_attempt") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| case_err("run.resume_attempt", "expected a whole number >= 0"))?,
        };
        Ok(RunCase {
            target,
            launcher_class,
            launcher: obj.get("launcher").cloned().unwrap_or(Value::Null),
            run_id: string("run_id")?,
            job_name: string("job_name")?,
            location_name: opt_string("location_name")?,
            image: opt_string("image")?,
            container_context: run.get("container_context").cloned().unwrap_or(Value::Null),
            tags,
            args,
            resume_attempt,
            run_config: run.get("run_config").cloned().unwrap_or(Value::Null),
        })
    }
}
