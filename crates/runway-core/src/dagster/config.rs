//! The slice of Dagster's config type system that the launcher, container
//! context, tag and executor schemas use, with `process_config` semantics:
//! unknown keys refused, nulls only where `Noneable`, defaults filled,
//! `{env: VAR}` sources resolved wherever a `*Source` type stands (arrays too).

use serde_json::Value;

use super::{Env, Error};
use crate::k8s::config::path::At;
use crate::k8s::config::Map;

/// A Dagster config type.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// Python `str`: a literal string only.
    Str,
    StringSource,
    IntSource,
    BoolSource,
    Bool,
    Float,
    /// `dict` / `Permissive()` with no declared fields: any object, untouched.
    Any,
    Noneable(&'static Ty),
    Array(&'static Ty),
    /// `Map[str, T]`.
    Map(&'static Ty),
    /// Closed object: unknown keys are refused.
    Shape(&'static [Field]),
    /// Open object: declared fields are checked, other keys pass through.
    Permissive(&'static [Field]),
    /// Exactly one of the named keys.
    Selector(&'static [(&'static str, Ty)]),
    Enum(&'static [&'static str]),
}

/// How a field behaves when absent.
#[derive(Debug, Clone, Copy)]
pub enum Presence {
    Required,
    Optional,
    /// Absent means this literal (a JSON document).
    Default(&'static str),
    /// Dagster gives bare all-optional object types an implicit `{}`.
    ImplicitEmpty,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub presence: Presence,
}

/// Shorthand constructors for the schema tables.
pub const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        presence: Presence::Required,
    }
}
pub const fn opt(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        presence: Presence::Optional,
    }
}
pub const fn dflt(name: &'static str, ty: Ty, default: &'static str) -> Field {
    Field {
        name,
        ty,
        presence: Presence::Default(default),
    }
}
pub const fn implicit(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        presence: Presence::ImplicitEmpty,
    }
}

/// Whether defaults are filled (`process_config`) or only checked (`validate_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Process,
    Validate,
}

/// Checks `value` against `ty` and returns the processed value.
pub fn process(
    ty: &Ty,
    value: &Value,
    at: &str,
    env: &dyn Env,
    mode: Mode,
) -> Result<Value, Error> {
    process_at(ty, value, &At::Root(at), env, mode)
}

/// [`process`] of a closed shape over an object already in hand: the map
/// itself, with no `Value` around it to build or take apart.
pub fn process_shape(
    fields: &[Field],
    obj: &Map,
    at: &str,
    env: &dyn Env,
    mode: Mode,
) -> Result<Map, Error> {
    process_fields(fields, true, obj, &At::Root(at), env, mode)
}

/// [`process`] with the field path kept unrendered until an error needs it.
fn process_at(
    ty: &Ty,
    value: &Value,
    at: &At<'_>,
    env: &dyn Env,
    mode: Mode,
) -> Result<Value, Error> {
    if value.is_null() {
        return match ty {
            Ty::Noneable(_) => Ok(Value::Null),
            _ => Err(Error::Null {
                path: at.render(),
                expected: describe(ty),
            }),
        };
    }
    match ty {
        Ty::Str => match value {
            Value::String(_) => Ok(value.clone()),
            _ => Err(wrong(at, ty, value)),
        },
        Ty::Bool => match value {
            Value::Bool(_) => Ok(value.clone()),
            _ => Err(wrong(at, ty, value)),
        },
        Ty::Float => match value {
            Value::Number(n) => Ok(n.as_f64().map(Value::from).unwrap_or(Value::Null)),
            _ => Err(wrong(at, ty, value)),
        },
        Ty::StringSource => match value {
            Value::String(_) => Ok(value.clone()),
            Value::Object(_) => env_source(value, at, env).map(Value::String),
            _ => Err(wrong(at, ty, value)),
        },
        Ty::IntSource => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            Value::Object(_) => {
                let raw = env_source(value, at, env)?;
                super::pyfmt::parse_int(&raw)
                    .map(Value::from)
                    .ok_or_else(|| Error::Invalid {
                        path: at.render(),
                        message: "the environment variable's value cannot be coerced into an int"
                            .into(),
                    })
            }
            _ => Err(wrong(at, ty, value)),
        },
        Ty::BoolSource => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::Object(_) => {
                let raw = env_source(value, at, env)?;
                let falsy = ["false", "none", "0", ""].contains(&raw.to_lowercase().as_str());
                Ok(Value::Bool(!falsy))
            }
            _ => Err(wrong(at, ty, value)),
        },
        Ty::Any => match value {
            Value::Object(_) => Ok(value.clone()),
            _ => Err(wrong(at, ty, value)),
        },
        Ty::Noneable(inner) => process_at(inner, value, at, env, mode),
        Ty::Array(inner) => match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| process_at(inner, v, &At::Index(at, i), env, mode))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            _ => Err(wrong(at, ty, value)),
        },
        Ty::Map(inner) => {
            let obj = value.as_object().ok_or_else(|| wrong(at, ty, value))?;
            let mut out = Map::new();
            for (k, v) in obj {
                out.insert(k.clone(), process_at(inner, v, &At::Key(at, k), env, mode)?);
            }
            Ok(Value::Object(out))
        }
        Ty::Shape(fields) | Ty::Permissive(fields) => {
            let obj = value.as_object().ok_or_else(|| wrong(at, ty, value))?;
            let closed = matches!(ty, Ty::Shape(_));
            process_fields(fields, closed, obj, at, env, mode).map(Value::Object)
        }
        Ty::Selector(options) => {
            let obj = value.as_object().ok_or_else(|| wrong(at, ty, value))?;
            let names = || {
                options
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut entries = obj.iter();
            let (key, inner) = match (entries.next(), entries.next()) {
                (Some(entry), None) => entry,
                _ => {
                    return Err(Error::Invalid {
                        path: at.render(),
                        message: format!("must have exactly one of: {}", names()),
                    })
                }
            };
            let (_, inner_ty) =
                options
                    .iter()
                    .find(|(n, _)| n == key)
                    .ok_or_else(|| Error::UnknownKey {
                        path: At::Key(at, key).render(),
                        expected: names(),
                    })?;
            // A selector's branch may be written as null: `{disabled: }`.
            let inner = if inner.is_null() {
                Value::Object(Map::new())
            } else {
                inner.clone()
            };
            let processed = process_at(inner_ty, &inner, &At::Key(at, key), env, mode)?;
            let mut out = Map::new();
            out.insert(key.clone(), processed);
            Ok(Value::Object(out))
        }
        Ty::Enum(values) => match value {
            Value::String(s) if values.contains(&s.as_str()) => Ok(value.clone()),
            _ => Err(Error::WrongType {
                path: at.render(),
                expected: format!("one of {}", values.join(", ")),
                got: crate::k8s::config::error_kind(value),
            }),
        },
    }
}

fn process_fields(
    fields: &[Field],
    closed: bool,
    obj: &Map,
    at: &At<'_>,
    env: &dyn Env,
    mode: Mode,
) -> Result<Map, Error> {
    if closed {
        if let Some(bad) = obj
            .keys()
            .find(|k| !fields.iter().any(|f| f.name == k.as_str()))
        {
            let mut names: Vec<_> = fields.iter().map(|f| f.name).collect();
            names.sort_unstable();
            return Err(Error::UnknownKey {
                path: At::Key(at, bad).render(),
                expected: names.join(", "),
            });
        }
    }
    let mut out = Map::new();
    for (k, v) in obj {
        if !fields.iter().any(|f| f.name == k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    for field in fields {
        match obj.get(field.name) {
            Some(v) => {
                let here = At::Key(at, field.name);
                out.insert(
                    field.name.to_owned(),
                    process_at(&field.ty, v, &here, env, mode)?,
                );
            }
            None => match field.presence {
                Presence::Required => {
                    return Err(Error::Missing {
                        path: match at.render() {
                            root if root.is_empty() => "<root>".into(),
                            path => path,
                        },
                        key: field.name.to_owned(),
                    })
                }
                Presence::Optional => {}
                Presence::Default(doc) if mode == Mode::Process => {
                    let v: Value = serde_json::from_str(doc).unwrap_or(Value::Null);
                    out.insert(field.name.to_owned(), v);
                }
                Presence::ImplicitEmpty if mode == Mode::Process => {
                    let v = process_at(
                        &field.ty,
                        &Value::Object(Map::new()),
                        &At::Key(at, field.name),
                        env,
                        mode,
                    )?;
                    out.insert(field.name.to_owned(), v);
                }
                Presence::Default(_) | Presence::ImplicitEmpty => {}
            },
        }
    }
    Ok(out)
}

/// `{env: VAR}` resolved against the launcher's environment.
fn env_source(value: &Value, at: &At<'_>, env: &dyn Env) -> Result<String, Error> {
    let obj = value.as_object().filter(|o| o.len() == 1);
    match obj.and_then(|o| o.get("env")) {
        Some(Value::String(var)) => env.var(var).ok_or_else(|| Error::EnvVarNotSet {
            path: at.render(),
            var: var.clone(),
        }),
        _ => Err(Error::WrongType {
            path: at.render(),
            expected: "a string or {env: VARIABLE_NAME}".into(),
            got: crate::k8s::config::error_kind(value),
        }),
    }
}

fn wrong(at: &At<'_>, ty: &Ty, value: &Value) -> Error {
    Error::WrongType {
        path: at.render(),
        expected: describe(ty),
        got: crate::k8s::config::error_kind(value),
    }
}

fn describe(ty: &Ty) -> String {
    match ty {
        Ty::Str => "a string".into(),
        Ty::StringSource => "a string or {env: VARIABLE_NAME}".into(),
        Ty::IntSource => "an integer or {env: VARIABLE_NAME}".into(),
        Ty::BoolSource => "a boolean or {env: VARIABLE_NAME}".into(),
        Ty::Bool => "a boolean".into(),
        Ty::Float => "a number".into(),
        Ty::Any | Ty::Map(_) => "an object".into(),
        Ty::Noneable(inner) => format!("{} or null", describe(inner)),
        Ty::Array(inner) => format!("a list of {}", describe(inner)),
        Ty::Shape(fields) | Ty::Permissive(fields) => {
            let names: Vec<_> = fields.iter().map(|f| f.name).collect();
            if names.is_empty() {
                "an object".into()
            } else {
                format!("an object with keys {}", names.join(", "))
            }
        }
        Ty::Selector(options) => {
            let names: Vec<_> = options.iter().map(|(n, _)| *n).collect();
            format!("an object with exactly one of {}", names.join(", "))
        }
        Ty::Enum(values) => format!("one of {}", values.join(", ")),
    }
}
