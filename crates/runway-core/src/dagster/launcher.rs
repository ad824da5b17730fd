//! `run_launcher.config` of K8sRunLauncher and CeleryK8sRunLauncher exactly as
//! dagster.yaml accepts it: the config schema (seed 1.1.9 keys and current
//! ones), defaults, `{env: VAR}` sources, and what each class's `__init__`
//! refuses on top of the schema.

use serde_json::Value;

use super::config::{dflt, implicit, opt, process, req, Field, Mode, Ty};
use super::context::PreparedLayers;
use super::rules::Rules;
use super::{Env, Error};
use crate::k8s::config::{path, Map};

const NAME_SHAPE: &[Field] = &[req("name", Ty::StringSource)];
const VOLUME_MOUNT_FIELDS: &[Field] = &[
    req("name", Ty::StringSource),
    opt("mount_path", Ty::StringSource),
    opt("mount_propagation", Ty::StringSource),
    opt("read_only", Ty::BoolSource),
    opt("sub_path", Ty::StringSource),
    opt("sub_path_expr", Ty::StringSource),
];
const VOLUME_FIELDS: &[Field] = &[req("name", Ty::Str)];
const RESOURCES_FIELDS: &[Field] = &[opt("limits", Ty::Any), opt("requests", Ty::Any)];

/// `DagsterK8sJobConfig.config_type_container()`.
pub const CONTAINER_FIELDS: &[Field] = &[
    opt("image_pull_policy", Ty::Noneable(&Ty::StringSource)),
    opt(
        "image_pull_secrets",
        Ty::Noneable(&Ty::Array(&Ty::Shape(NAME_SHAPE))),
    ),
    opt("service_account_name", Ty::Noneable(&Ty::StringSource)),
    opt(
        "env_config_maps",
        Ty::Noneable(&Ty::Array(&Ty::StringSource)),
    ),
    opt("env_secrets", Ty::Noneable(&Ty::Array(&Ty::StringSource))),
    opt("env_vars", Ty::Noneable(&Ty::Array(&Ty::Str))),
    dflt(
        "volume_mounts",
        Ty::Array(&Ty::Permissive(VOLUME_MOUNT_FIELDS)),
        "[]",
    ),
    dflt("volumes", Ty::Array(&Ty::Permissive(VOLUME_FIELDS)), "[]"),
    opt("labels", Ty::Any),
    opt("resources", Ty::Noneable(&Ty::Shape(RESOURCES_FIELDS))),
    opt("scheduler_name", Ty::Noneable(&Ty::StringSource)),
    opt("security_context", Ty::Any),
];

/// The six raw-config sections a run may set.
pub const RUN_K8S_SECTIONS: &[Field] = &[
    implicit("container_config", Ty::Any),
    implicit("pod_template_spec_metadata", Ty::Any),
    implicit("pod_spec_config", Ty::Any),
    implicit("job_config", Ty::Any),
    implicit("job_metadata", Ty::Any),
    implicit("job_spec_config", Ty::Any),
];

/// `USER_DEFINED_K8S_JOB_CONFIG_SCHEMA`: the six sections plus `merge_behavior`.
pub const USER_DEFINED_SCHEMA: &[Field] = &[
    implicit("container_config", Ty::Any),
    implicit("pod_template_spec_metadata", Ty::Any),
    implicit("pod_spec_config", Ty::Any),
    implicit("job_config", Ty::Any),
    implicit("job_metadata", Ty::Any),
    implicit("job_spec_config", Ty::Any),
    opt("merge_behavior", Ty::Enum(&["DEEP", "SHALLOW"])),
];

const ALLOWLIST_FIELDS: &[Field] = &[
    opt("container_config", Ty::Map(&Ty::Bool)),
    opt("pod_spec_config", Ty::Map(&Ty::Bool)),
    opt("pod_template_spec_metadata", Ty::Map(&Ty::Bool)),
    opt("job_metadata", Ty::Map(&Ty::Bool)),
    opt("job_spec_config", Ty::Map(&Ty::Bool)),
    opt("namespace", Ty::BoolSource),
];

/// Keys `config_type_run_launcher()` adds to the job fields.
const RUN_LAUNCHER_EXTRA: &[Field] = &[
    opt("job_image", Ty::Noneable(&Ty::StringSource)),
    req("instance_config_map", Ty::StringSource),
    opt("postgres_password_secret", Ty::StringSource),
    dflt(
        "dagster_home",
        Ty::StringSource,
        "\"/opt/dagster/dagster_home\"",
    ),
    dflt("load_incluster_config", Ty::Bool, "true"),
    dflt("kubeconfig_file", Ty::Noneable(&Ty::Str), "null"),
    dflt("k8s_api_ssl_ca_cert_file", Ty::Noneable(&Ty::Str), "null"),
    opt("fail_pod_on_run_failure", Ty::Bool),
    opt("run_k8s_config", Ty::Shape(RUN_K8S_SECTIONS)),
    dflt("job_namespace", Ty::StringSource, "\"default\""),
    opt(
        "only_allow_user_defined_k8s_config_fields",
        Ty::Shape(ALLOWLIST_FIELDS),
    ),
    opt("only_allow_user_defined_env_vars", Ty::Array(&Ty::Str)),
];

const RETRY_OPTIONS: &[(&str, Ty)] = &[("enabled", Ty::Shape(&[])), ("disabled", Ty::Shape(&[]))];

/// `CELERY_CONFIG` of dagster-celery.
pub const CELERY_FIELDS: &[Field] = &[
    opt("broker", Ty::Noneable(&Ty::StringSource)),
    dflt("backend", Ty::Noneable(&Ty::StringSource), "\"rpc://\""),
    opt("include", Ty::Array(&Ty::Str)),
    opt("config_source", Ty::Noneable(&Ty::Permissive(&[]))),
    dflt("retries", Ty::Selector(RETRY_OPTIONS), "{\"enabled\": {}}"),
];

/// Keys CeleryK8sRunLauncher's `__init__` takes; any other schema key is a TypeError.
const CELERY_INIT_KEYS: &[&str] = &[
    "instance_config_map",
    "dagster_home",
    "postgres_password_secret",
    "load_incluster_config",
    "kubeconfig_file",
    "k8s_api_ssl_ca_cert_file",
    "broker",
    "backend",
    "include",
    "config_source",
    "retries",
    "env_config_maps",
    "env_secrets",
    "volume_mounts",
    "volumes",
    "service_account_name",
    "image_pull_policy",
    "image_pull_secrets",
    "labels",
    "fail_pod_on_run_failure",
    "job_namespace",
];

/// Which stock launcher a config belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LauncherClass {
    K8s,
    CeleryK8s,
}

impl LauncherClass {
    pub fn parse(name: &str) -> Option<LauncherClass> {
        match name {
            "K8sRunLauncher" => Some(LauncherClass::K8s),
            "CeleryK8sRunLauncher" => Some(LauncherClass::CeleryK8s),
            _ => None,
        }
    }

    fn fields(self) -> Vec<Field> {
        let mut fields: Vec<Field> = CONTAINER_FIELDS.to_vec();
        fields.extend_from_slice(RUN_LAUNCHER_EXTRA);
        if self == LauncherClass::CeleryK8s {
            fields.extend_from_slice(CELERY_FIELDS);
        }
        fields
    }
}

/// A launcher's config after schema processing and `__init__`'s checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Launcher {
    pub class: LauncherClass,
    pub job_image: Option<String>,
    pub dagster_home: String,
    pub image_pull_policy: String,
    pub image_pull_secrets: Vec<Value>,
    pub service_account_name: Option<String>,
    pub instance_config_map: String,
    pub postgres_password_secret: Option<String>,
    pub env_config_maps: Vec<String>,
    pub env_secrets: Vec<String>,
    pub env_vars: Vec<String>,
    pub volume_mounts: Vec<Value>,
    pub volumes: Vec<Value>,
    pub labels: Map,
    pub resources: Map,
    pub scheduler_name: Option<String>,
    pub security_context: Map,
    pub run_k8s_config: Map,
    pub fail_pod_on_run_failure: Option<bool>,
    pub job_namespace: String,
    pub load_incluster_config: bool,
    pub kubeconfig_file: Option<String>,
    pub only_allow_user_defined_k8s_config_fields: Option<Map>,
    pub only_allow_user_defined_env_vars: Option<Vec<String>>,
    /// The processed config value, as `from_config_value` receives it.
    pub processed: Map,
    /// The top-level keys the config gave (before defaults were filled in).
    pub given: Vec<String>,
    /// This launcher's layer, merged once per release family.
    pub prepared: PreparedLayers,
}

impl Launcher {
    /// Loads `run_launcher.config` as Dagster does: `process_config` against the
    /// class's schema, then the class's `__init__`.
    pub fn load(class: LauncherClass, config: &Value, env: &dyn Env) -> Result<Launcher, Error> {
        const AT: &str = "launcher";
        let config = if config.is_null() {
            Value::Object(Map::new())
        } else {
            config.clone()
        };
        let given = config
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let shape: &'static [Field] = match class {
            LauncherClass::K8s => k8s_schema(),
            LauncherClass::CeleryK8s => celery_schema(),
        };
        let processed = process(&Ty::Shape(shape), &config, AT, env, Mode::Process)?;
        let Value::Object(processed) = processed else {
            return Err(Error::Invalid {
                path: AT.into(),
                message: "expected an object".into(),
            });
        };

        if class == LauncherClass::CeleryK8s {
            if let Some(bad) = processed
                .keys()
                .find(|k| !CELERY_INIT_KEYS.contains(&k.as_str()))
            {
                return Err(Error::Invalid {
                    path: path::key(AT, bad),
                    message: "CeleryK8sRunLauncher does not take this key (its __init__ refuses \
                              it); for step Jobs set it in the celery-k8s executor config or in \
                              op tags instead"
                        .into(),
                });
            }
            for key in ["postgres_password_secret"] {
                if !processed.contains_key(key) {
                    return Err(Error::Missing {
                        path: AT.into(),
                        key: key.into(),
                    });
                }
            }
        }

        let get = |k: &str| processed.get(k).filter(|v| !v.is_null());
        let string = |k: &str| get(k).and_then(Value::as_str).map(str::to_owned);
        let strings = |k: &str| -> Vec<String> {
            get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let list = |k: &str| {
            get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let object = |k: &str| {
            get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };

        let service_account_name = string("service_account_name");
        if class == LauncherClass::K8s && service_account_name.is_none() {
            return Err(Error::Invalid {
                path: path::key(AT, "service_account_name"),
                message: "K8sRunLauncher requires a service account name string (its __init__ \
                          refuses a missing or null value); set service_account_name"
                    .into(),
            });
        }
        let labels = object("labels");
        if let Some((k, v)) = labels.iter().find(|(_, v)| !v.is_string()) {
            return Err(Error::WrongType {
                path: path::key(&path::key(AT, "labels"), k),
                expected: "a string label value".into(),
                got: crate::k8s::config::error_kind(v),
            });
        }
        let load_incluster_config = get("load_incluster_config")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let kubeconfig_file = string("kubeconfig_file");
        if load_incluster_config && kubeconfig_file.is_some() {
            return Err(Error::Invalid {
                path: path::key(AT, "kubeconfig_file"),
                message: "`kubeconfig_file` is set but `load_incluster_config` is True; set \
                          load_incluster_config: false to use a kubeconfig file"
                    .into(),
            });
        }

        Ok(Launcher {
            class,
            job_image: string("job_image"),
            dagster_home: string("dagster_home").unwrap_or_default(),
            image_pull_policy: string("image_pull_policy").unwrap_or_else(|| "IfNotPresent".into()),
            image_pull_secrets: list("image_pull_secrets"),
            service_account_name,
            instance_config_map: string("instance_config_map").unwrap_or_default(),
            postgres_password_secret: string("postgres_password_secret"),
            env_config_maps: strings("env_config_maps"),
            env_secrets: strings("env_secrets"),
            env_vars: strings("env_vars"),
            volume_mounts: list("volume_mounts"),
            volumes: list("volumes"),
            labels,
            resources: object("resources"),
            scheduler_name: string("scheduler_name"),
            security_context: object("security_context"),
            run_k8s_config: object("run_k8s_config"),
            fail_pod_on_run_failure: get("fail_pod_on_run_failure").and_then(Value::as_bool),
            job_namespace: string("job_namespace").unwrap_or_else(|| "default".into()),
            load_incluster_config,
            kubeconfig_file,
            only_allow_user_defined_k8s_config_fields: get(
                "only_allow_user_defined_k8s_config_fields",
            )
            .and_then(Value::as_object)
            .cloned(),
            only_allow_user_defined_env_vars: get("only_allow_user_defined_env_vars")
                .map(|_| strings("only_allow_user_defined_env_vars")),
            processed,
            given,
            prepared: PreparedLayers::default(),
        })
    }

    /// Refuses keys the caller's release does not know: its schema (or its
    /// `__init__`) rejects them, so the stock launcher would not load.
    pub fn check_release(&self, rules: &Rules) -> Result<(), Error> {
        let celery = self.class == LauncherClass::CeleryK8s;
        let allowlist_namespace = self
            .only_allow_user_defined_k8s_config_fields
            .as_ref()
            .is_some_and(|a| a.contains_key("namespace"));
        let late: [(&str, bool, bool, &'static str, &'static str); 5] = [
            (
                "launcher.job_namespace",
                celery && !rules.celery_launcher_namespace,
                self.gave("job_namespace"),
                "1.2.2",
                "set job_namespace in the celery_k8s_job_executor config instead",
            ),
            (
                "launcher.k8s_api_ssl_ca_cert_file",
                !rules.service_spec_config,
                self.gave("k8s_api_ssl_ca_cert_file"),
                "1.12.20",
                "remove it (the release reads the CA from the kubeconfig)",
            ),
            (
                "launcher.only_allow_user_defined_k8s_config_fields",
                !rules.allowlists,
                self.gave("only_allow_user_defined_k8s_config_fields"),
                "1.6.3",
                "remove it, or upgrade Dagster",
            ),
            (
                "launcher.only_allow_user_defined_env_vars",
                !rules.allowlists,
                self.gave("only_allow_user_defined_env_vars"),
                "1.6.3",
                "remove it, or upgrade Dagster",
            ),
            (
                "launcher.only_allow_user_defined_k8s_config_fields.namespace",
                !rules.metadata_sections,
                allowlist_namespace,
                "1.8.11",
                "remove it, or upgrade Dagster",
            ),
        ];
        match late
            .into_iter()
            .find(|(_, unknown, used, _, _)| *unknown && *used)
        {
            Some((key, _, _, since, fix)) => Err(Error::NotInVersion {
                path: key.to_owned(),
                version: rules.version.to_string(),
                since,
                fix,
            }),
            None => Ok(()),
        }
    }

    fn gave(&self, key: &str) -> bool {
        self.given.iter().any(|k| k == key)
    }
}

fn k8s_schema() -> &'static [Field] {
    static SCHEMA: std::sync::OnceLock<Vec<Field>> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| LauncherClass::K8s.fields())
}

fn celery_schema() -> &'static [Field] {
    static SCHEMA: std::sync::OnceLock<Vec<Field>> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| LauncherClass::CeleryK8s.fields())
}
