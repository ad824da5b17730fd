//! The `--config` file: a YAML mapping of flag names to values, turned into
//! flags for whatever the command line and the environment left unset.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use serde_json::Value;
use thiserror::Error;

/// The largest config file read (a settings file is a few hundred bytes).
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Error)]
pub enum Error {
    #[error("reading config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
}

/// `argv` with the settings of the subcommand's `--config` file (or
/// `RUNWAY_CONFIG`) appended as flags, for every setting that no flag and
/// no environment variable gave. Anything clap itself would refuse (an
/// unknown flag, `--help`) is returned unchanged for clap to report.
pub fn with_config_file(cmd: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>, Error> {
    let Ok(matches) = cmd.clone().try_get_matches_from(&argv) else {
        return Ok(argv);
    };
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(argv);
    };
    let Some(sub_cmd) = cmd.find_subcommand(name) else {
        return Ok(argv);
    };
    let has_config = sub_cmd.get_arguments().any(|a| a.get_id() == "config");
    let path = match has_config
        .then(|| sub.get_one::<PathBuf>("config"))
        .flatten()
    {
        Some(p) => p.clone(),
        None => return Ok(argv),
    };
    let settings = read(&path)?;
    let mut argv = argv;
    argv.extend(flags_for(sub_cmd, sub, &path, settings)?);
    Ok(argv)
}

/// The file's top-level mapping, in file order.
fn read(path: &Path) -> Result<Vec<(String, Value)>, Error> {
    let shown = path.display().to_string();
    let invalid = |message: String| Error::Invalid {
        path: shown.clone(),
        message,
    };
    let read_err = |source| Error::Read {
        path: shown.clone(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > MAX_FILE_BYTES {
        return Err(invalid(format!(
            "{len} bytes is more than a settings file holds (at most {MAX_FILE_BYTES})"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc: Value =
        serde_saphyr::from_str(&text).map_err(|e| invalid(format!("not valid YAML: {e}")))?;
    match doc {
        Value::Null => Ok(Vec::new()),
        Value::Object(m) => Ok(m.into_iter().collect()),
        _ => Err(invalid(
            "expected a mapping of setting names to values".into(),
        )),
    }
}

/// The flags that carry the file's settings into `cmd`'s parser.
fn flags_for(
    cmd: &Command,
    given: &ArgMatches,
    path: &Path,
    settings: Vec<(String, Value)>,
) -> Result<Vec<OsString>, Error> {
    let invalid = |message: String| Error::Invalid {
        path: path.display().to_string(),
        message,
    };
    let mut out = Vec::new();
    for (key, value) in settings {
        let long = key.replace('_', "-");
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
        else {
            return Err(invalid(format!(
                "unknown setting {long:?}; valid settings: {}",
                valid_names(cmd).join(", ")
            )));
        };
        let source = given.value_source(arg.get_id().as_str());
        if matches!(
            source,
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let values = match &value {
            Value::Array(items) => items
                .iter()
                .map(|i| {
                    scalar(i).ok_or_else(|| invalid(format!("{long}: list items must be scalars")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            other => vec![scalar(other)
                .ok_or_else(|| invalid(format!("{long}: expected a scalar or a list")))?],
        };
        match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => {
                let on = matches!(values.as_slice(), [v] if v == "true");
                let off = matches!(values.as_slice(), [v] if v == "false");
                if !on && !off {
                    return Err(invalid(format!("{long}: expected true or false")));
                }
                if on == matches!(arg.get_action(), ArgAction::SetTrue) {
                    out.push(OsString::from(format!("--{long}")));
                }
            }
            action => match arg.get_value_delimiter() {
                Some(d) => out.push(OsString::from(format!(
                    "--{long}={}",
                    values.join(&d.to_string())
                ))),
                None if matches!(action, ArgAction::Append) || values.len() == 1 => {
                    out.extend(
                        values
                            .iter()
                            .map(|v| OsString::from(format!("--{long}={v}"))),
                    );
                }
                None => return Err(invalid(format!("{long}: takes one value, not a list"))),
            },
        }
    }
    Ok(out)
}

fn valid_names(cmd: &Command) -> Vec<&str> {
    cmd.get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "config" && *l != "help")
        .collect()
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
