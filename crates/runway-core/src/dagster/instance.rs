//! What the step worker reads out of a task's `InstanceRef` (where Dagster's
//! run and event-log storage live) and out of a stored run record.

use serde_json::Value;

use super::{Env, Error};

/// A PostgreSQL database named by a `dagster_postgres` storage config.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    /// `params`: extra libpq parameters (`sslmode`, ...).
    pub params: Vec<(String, String)>,
}

impl std::fmt::Debug for PgTarget {
    // The password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgresql://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

/// Which storage of the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Run,
    EventLog,
}

impl Storage {
    fn field(self) -> &'static str {
        match self {
            Storage::Run => "run_storage_data",
            Storage::EventLog => "event_storage_data",
        }
    }
}

fn invalid(path: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Where `instance_ref`'s run or event-log storage lives. Only
/// `dagster_postgres` storage can be reached from a worker in another pod.
pub fn storage_target(
    instance_ref: &Value,
    which: Storage,
    env: &dyn Env,
) -> Result<PgTarget, Error> {
    let at = format!("instance_ref.{}", which.field());
    let data = instance_ref
        .get(which.field())
        .filter(|v| v.is_object())
        .or_else(|| instance_ref.get("storage_data").filter(|v| v.is_object()))
        .ok_or_else(|| invalid(&at, "the instance has no storage config"))?;
    let module = data
        .get("module_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let class = data.get("class_name").and_then(Value::as_str).unwrap_or("");
    if module != "dagster_postgres" {
        return Err(invalid(
            &at,
            format!(
                "storage {module}.{class} is not reachable from a worker: configure \
                 dagster_postgres storage in dagster.yaml, as the celery-k8s executor requires"
            ),
        ));
    }
    let yaml = data
        .get("config_yaml")
        .and_then(Value::as_str)
        .unwrap_or("");
    let config: Value = serde_saphyr::from_str(yaml)
        .map_err(|e| invalid(&format!("{at}.config_yaml"), format!("not YAML: {e}")))?;
    let at = format!("{at}.config_yaml");
    if let Some(url) = config.get("postgres_url") {
        let url = resolve(url, env, &format!("{at}.postgres_url"))?;
        return parse_url(&url, &format!("{at}.postgres_url"));
    }
    let db = config
        .get("postgres_db")
        .ok_or_else(|| invalid(&at, "needs postgres_url or postgres_db"))?;
    let at = format!("{at}.postgres_db");
    let field = |k: &str| -> Result<Option<String>, Error> {
        match db.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => resolve(v, env, &format!("{at}.{k}")).map(Some),
        }
    };
    let port = match db.get("port") {
        None | Some(Value::Null) => 5432,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| invalid(&format!("{at}.port"), "not a port number"))?,
        Some(v) => resolve(v, env, &format!("{at}.port"))?
            .parse()
            .map_err(|_| invalid(&format!("{at}.port"), "not a port number"))?,
    };
    let params = db
        .get("params")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_owned)))
                .collect()
        })
        .unwrap_or_default();
    Ok(PgTarget {
        host: field("hostname")?.ok_or_else(|| invalid(&at, "hostname is required"))?,
        port,
        user: field("username")?.ok_or_else(|| invalid(&at, "username is required"))?,
        password: field("password")?,
        dbname: field("db_name")?.ok_or_else(|| invalid(&at, "db_name is required"))?,
        params,
    })
}

/// A config value: a string, or `{env: VAR}` read from the worker's environment.
fn resolve(v: &Value, env: &dyn Env, at: &str) -> Result<String, Error> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Object(m) => match m.get("env").and_then(Value::as_str) {
            Some(var) => env.var(var).ok_or_else(|| Error::EnvVarNotSet {
                path: at.to_owned(),
                var: var.to_owned(),
            }),
            None => Err(invalid(at, "expected a string or {env: VAR}")),
        },
        _ => Err(invalid(at, "expected a string or {env: VAR}")),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `postgresql[+driver]://user:password@host:port/db?k=v`.
pub fn parse_url(url: &str, at: &str) -> Result<PgTarget, Error> {
    let bad = || {
        invalid(
            at,
            "expected postgresql://user:password@host:port/database (the scheme may carry a \
             +driver suffix)",
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let base = scheme.split('+').next().unwrap_or("");
    if base != "postgresql" && base != "postgres" {
        return Err(bad());
    }
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (auth_host, dbname) = rest.split_once('/').unwrap_or((rest, ""));
    let (auth, hostport) = match auth_host.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, auth_host),
    };
    let (user, password) = match auth {
        Some(a) => match a.split_once(':') {
            Some((u, p)) => (percent_decode(u), Some(percent_decode(p))),
            None => (percent_decode(a), None),
        },
        None => ("postgres".to_owned(), None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
        None => (hostport.to_owned(), 5432),
    };
    if host.is_empty() {
        return Err(bad());
    }
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Ok(PgTarget {
        host,
        port,
        user,
        password,
        dbname: if dbname.is_empty() {
            "postgres".into()
        } else {
            percent_decode(dbname)
        },
        params,
    })
}

/// What the step worker needs of a stored `DagsterRun`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub status: String,
    pub job_name: String,
    pub code_location: Option<String>,
}

/// The `runs` row: its status column and serialized `run_body`.
pub fn run_record(status: &str, run_body: &str) -> Result<RunRecord, Error> {
    let body: Value = serde_json::from_str(run_body)
        .map_err(|e| invalid("runs.run_body", format!("not JSON: {e}")))?;
    let either = |v: &Value, a: &str, b: &str| v.get(a).or_else(|| v.get(b)).cloned();
    let job_name = either(&body, "pipeline_name", "job_name")
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| invalid("runs.run_body", "the run has no job name"))?;
    let code_location = either(&body, "external_pipeline_origin", "remote_job_origin")
        .and_then(|o| either(&o, "external_repository_origin", "repository_origin"))
        .and_then(|r| either(&r, "repository_location_origin", "code_location_origin"))
        .and_then(|l| {
            l.get("location_name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    Ok(RunRecord {
        status: status.to_owned(),
        job_name,
        code_location,
    })
}

/// The run status an event of this type leaves a run in, for the run-level
/// events (`DagsterRunStatus` by `DagsterEventType`).
pub fn status_after(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "PIPELINE_ENQUEUED" => "QUEUED",
        "PIPELINE_STARTING" => "STARTING",
        "PIPELINE_START" => "STARTED",
        "PIPELINE_SUCCESS" => "SUCCESS",
        "PIPELINE_FAILURE" => "FAILURE",
        "PIPELINE_CANCELING" => "CANCELING",
        "PIPELINE_CANCELED" => "CANCELED",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([("DAGSTER_PG_PASSWORD".to_owned(), "s3cret".to_owned())])
    }

    #[test]
    fn postgres_db_with_env_password() {
        let r = json!({"run_storage_data": {
            "module_name": "dagster_postgres", "class_name": "PostgresRunStorage",
            "config_yaml": "postgres_db:\n  db_name: dagster\n  hostname: pg\n  params: {sslmode: disable}\n  password:\n    env: DAGSTER_PG_PASSWORD\n  port: 5433\n  username: dagsterpg\n"}});
        let t = storage_target(&r, Storage::Run, &env()).unwrap();
        assert_eq!(t.host, "pg");
        assert_eq!(t.port, 5433);
        assert_eq!(t.password.as_deref(), Some("s3cret"));
        assert_eq!(t.params, vec![("sslmode".to_owned(), "disable".to_owned())]);
        assert_eq!(format!("{t:?}"), "postgresql://dagsterpg@pg:5433/dagster");
    }

    #[test]
    fn missing_password_env_names_the_variable() {
        let r = json!({"storage_data": {
            "module_name": "dagster_postgres", "class_name": "DagsterPostgresStorage",
            "config_yaml": "postgres_db:\n  db_name: d\n  hostname: h\n  password:\n    env: PG_PW\n  username: u\n"}});
        let e = storage_target(&r, Storage::EventLog, &env()).unwrap_err();
        assert!(e.to_string().contains("PG_PW"), "{e}");
    }

    #[test]
    fn url_form_and_sqlite_refusal() {
        let r = json!({"run_storage_data": {"module_name": "dagster_postgres",
            "class_name": "PostgresRunStorage",
            "config_yaml": "postgres_url: postgresql+psycopg2://u:p%40ss@db:6000/runs?sslmode=require\n"}});
        let t = storage_target(&r, Storage::Run, &env()).unwrap();
        assert_eq!(
            (t.user.as_str(), t.password.as_deref()),
            ("u", Some("p@ss"))
        );
        assert_eq!(
            (t.host.as_str(), t.port, t.dbname.as_str()),
            ("db", 6000, "runs")
        );
        let r = json!({"run_storage_data": {"module_name": "dagster._core.storage.runs",
            "class_name": "SqliteRunStorage", "config_yaml": "{}"}});
        let e = storage_target(&r, Storage::Run, &env()).unwrap_err();
        assert!(e.to_string().contains("dagster_postgres"), "{e}");
        assert!(parse_url("mysql://x", "u").is_err());
    }

    #[test]
    fn run_record_reads_storage_names() {
        let body = r#"{"__class__": "PipelineRun", "pipeline_name": "my_job",
            "external_pipeline_origin": {"__class__": "ExternalPipelineOrigin",
              "external_repository_origin": {"repository_location_origin":
                {"location_name": "loc"}}}}"#;
        let r = run_record("STARTED", body).unwrap();
        assert_eq!(r.job_name, "my_job");
        assert_eq!(r.code_location.as_deref(), Some("loc"));
        assert!(run_record("STARTED", "{}").is_err());
        assert_eq!(status_after("PIPELINE_CANCELING"), Some("CANCELING"));
        assert_eq!(status_after("STEP_START"), None);
    }
}
