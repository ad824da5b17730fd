//! Key conversion and value coercion, as dagster-k8s's `models.py` does them:
//! `k8s_snake_case_dict` (camelCase or snake_case in, snake_case out) and
//! `k8s_model_from_dict` followed by the client's `sanitize_for_serialization`
//! (snake_case in, wire camelCase JSON out, values coerced to the field types).

use serde_json::Value;
use smallvec::SmallVec;

use super::error::{kind_of, Error};
use super::path::{self, At};
use super::schema::{Model, Ty};
use super::Map;
use crate::dagster::pyfmt;

/// Renames every key of `dict` to its snake_case attribute name for `model`,
/// recursing into nested models only. Opaque values (labels, quantities,
/// IntOrString) keep their inner keys.
pub fn snake_case_dict(model: usize, dict: &Map, at: &str) -> Result<Map, Error> {
    snake_dict(model, dict, &At::Root(at))
}

fn snake_dict(model: usize, dict: &Map, at: &At<'_>) -> Result<Map, Error> {
    let m = Model::get(model);
    let mut out = Map::new();
    for (key, value) in dict {
        let field = match m.by_camel(key) {
            Some(f) if f.snake != key.as_str() => {
                if dict.contains_key(f.snake) {
                    return Err(Error::BothForms {
                        path: at.render(),
                        camel: key.clone(),
                        snake: f.snake.to_owned(),
                        model: m.name,
                    });
                }
                f
            }
            Some(f) => f,
            None => m.by_snake(key).ok_or_else(|| unknown_key(m, key, at))?,
        };
        let here = At::Key(at, key);
        out.insert(
            field.snake.to_owned(),
            snake_case_value(&field.ty, value, &here)?,
        );
    }
    Ok(out)
}

fn snake_case_value(ty: &Ty, value: &Value, at: &At<'_>) -> Result<Value, Error> {
    match ty {
        Ty::List(inner) => {
            let items = expect_list(value, ty, at)?;
            let converted = items
                .iter()
                .enumerate()
                .map(|(i, v)| snake_case_value(inner, v, &At::Index(at, i)))
                .collect::<Result<_, _>>()?;
            Ok(Value::Array(converted))
        }
        Ty::Map(inner) => {
            let entries = expect_object(value, ty, at)?;
            let mut out = Map::new();
            for (k, v) in entries {
                out.insert(k.clone(), snake_case_value(inner, v, &At::Key(at, k))?);
            }
            Ok(Value::Object(out))
        }
        Ty::Model(id) => Ok(Value::Object(snake_dict(
            *id,
            expect_object(value, ty, at)?,
            at,
        )?)),
        Ty::Str | Ty::Int | Ty::Float | Ty::Bool | Ty::DateTime | Ty::Date | Ty::Object => {
            Ok(value.clone())
        }
    }
}

/// Builds the wire (camelCase) JSON of `model` from a snake_case dict, dropping
/// null attributes and coercing scalars the way the Python client's model
/// constructors do (`str(1)` is `"1"`, `int("5")` is `5`).
pub fn model_to_wire(model: usize, dict: &Map, at: &str) -> Result<Value, Error> {
    model_into_wire(model, dict.clone(), at)
}

/// [`model_to_wire`] of a dict the caller gives up: its values move into the
/// wire JSON instead of being copied.
pub fn model_into_wire(model: usize, dict: Map, at: &str) -> Result<Value, Error> {
    model_wire(model, dict, &At::Root(at))
}

/// Fields per object converted without a heap buffer: a Job's pod spec
/// usually sets about a dozen of V1PodSpec's 42, and V1Container has 25.
const INLINE_FIELDS: usize = 24;

/// The Python client's constructor refuses an unknown keyword first, then
/// takes the attributes in the model's order; the first error here is the one
/// it raises first. The model's fields are sorted by wire name, so that order
/// is also the wire map's.
fn model_wire(model: usize, mut dict: Map, at: &At<'_>) -> Result<Value, Error> {
    let m = Model::get(model);
    // Each key's field, in the dict's order.
    let mut fields = SmallVec::<[usize; INLINE_FIELDS]>::with_capacity(dict.len());
    let mut renamed = false;
    let mut nulls = false;
    for (key, value) in &dict {
        let Some(index) = m.snake_index(key) else {
            return Err(unknown_key(m, key, at));
        };
        renamed |= key != m.fields[index].camel;
        nulls |= value.is_null();
        fields.push(index);
    }
    // Values are converted where they lie, in the model's order.
    let mut slots: SmallVec<[(usize, &mut Value); INLINE_FIELDS]> = fields
        .iter()
        .copied()
        .zip(dict.values_mut())
        .filter(|(_, value)| !value.is_null())
        .collect();
    slots.sort_unstable_by_key(|(index, _)| *index);
    let mut next = 0;
    for (index, slot) in slots {
        check_required(m, next..index, at)?;
        next = index + 1;
        let field = &m.fields[index];
        let here = At::Key(at, field.snake);
        if matches!(field.ty, Ty::DateTime | Ty::Date) {
            return Err(Error::ServerSet {
                path: here.render(),
                field: field.camel,
            });
        }
        let value = std::mem::take(slot);
        *slot = wire_value(&field.ty, value, &here)?;
    }
    check_required(m, next..m.fields.len(), at)?;
    // Most attribute names are one word, the same in both spellings: such a
    // map is already the wire map and is kept, not rebuilt.
    if !renamed {
        if nulls {
            dict.retain(|_, value| !value.is_null());
        }
        return Ok(Value::Object(dict));
    }
    let wire = fields
        .into_iter()
        .zip(dict)
        .filter(|(_, (_, value))| !value.is_null())
        .map(|(index, (mut key, value))| {
            let camel = m.fields[index].camel;
            if key != camel {
                // A wire name is never longer than its attribute name: the
                // key's buffer takes it without a new allocation.
                key.clear();
                key.push_str(camel);
            }
            (key, value)
        })
        .collect();
    Ok(Value::Object(wire))
}

/// A required attribute among `fields` (all absent) is an error.
fn check_required(m: &Model, fields: std::ops::Range<usize>, at: &At<'_>) -> Result<(), Error> {
    match m.fields[fields].iter().find(|f| f.required) {
        Some(field) => Err(Error::MissingRequired {
            path: at.render(),
            model: m.name,
            field: field.snake,
        }),
        None => Ok(()),
    }
}

fn wire_value(ty: &Ty, value: Value, at: &At<'_>) -> Result<Value, Error> {
    if value.is_null() {
        // Inside lists and maps a null stays: the client serializes it as null.
        return Ok(Value::Null);
    }
    match ty {
        Ty::List(inner) => {
            let mut items = match value {
                Value::Array(items) => items,
                other => return Err(wrong(at, &format!("a list ({})", ty.describe()), &other)),
            };
            // Each item is converted where it lies, first to last.
            for (i, item) in items.iter_mut().enumerate() {
                let value = std::mem::take(item);
                *item = wire_value(inner, value, &At::Index(at, i))?;
            }
            Ok(Value::Array(items))
        }
        Ty::Map(inner) => {
            let mut entries = match value {
                Value::Object(entries) => entries,
                other => return Err(wrong(at, &format!("an object ({})", ty.describe()), &other)),
            };
            // The keys stay: each value is converted where it lies.
            for (k, v) in entries.iter_mut() {
                let value = std::mem::take(v);
                *v = wire_value(inner, value, &At::Key(at, k))?;
            }
            Ok(Value::Object(entries))
        }
        Ty::Model(id) => match value {
            Value::Object(dict) => model_wire(*id, dict, at),
            other => Err(wrong(at, &format!("an object ({})", ty.describe()), &other)),
        },
        Ty::Object => Ok(value),
        Ty::Str => match value {
            Value::String(s) => Ok(Value::String(s)),
            other => coerce_str(&other, at).map(Value::String),
        },
        Ty::Int => coerce_int(&value, at).map(Value::from),
        Ty::Float => coerce_float(&value, at).map(Value::from),
        Ty::Bool => match value {
            Value::Bool(b) => Ok(Value::Bool(b)),
            Value::Number(n) => Ok(Value::Bool(n.as_f64().is_some_and(|f| f != 0.0))),
            // Python's bool("false") is True; refusing is kinder than copying that.
            other => Err(wrong(at, "a boolean (true or false)", &other)),
        },
        Ty::DateTime | Ty::Date => Err(wrong(at, "nothing (server-set field)", &value)),
    }
}

/// Python's `str(value)` for the scalars a config can hold.
fn coerce_str(value: &Value, at: &At<'_>) -> Result<String, Error> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(true) => Ok("True".into()),
        Value::Bool(false) => Ok("False".into()),
        Value::Number(n) => Ok(pyfmt::number_str(n)),
        other => Err(wrong(at, "a string", other)),
    }
}

/// Python's `int(value)`.
fn coerce_int(value: &Value, at: &At<'_>) -> Result<i64, Error> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(i);
            }
            match n.as_f64() {
                // int() truncates toward zero.
                Some(f) if f.is_finite() && f.abs() < 9.2e18 => Ok(f.trunc() as i64),
                _ => Err(wrong(at, "an integer", value)),
            }
        }
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::String(s) => pyfmt::parse_int(s).ok_or_else(|| wrong(at, "an integer", value)),
        other => Err(wrong(at, "an integer", other)),
    }
}

/// Python's `float(value)`.
fn coerce_float(value: &Value, at: &At<'_>) -> Result<f64, Error> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| wrong(at, "a number", value)),
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| wrong(at, "a number", value)),
        other => Err(wrong(at, "a number", other)),
    }
}

fn expect_list<'a>(value: &'a Value, ty: &Ty, at: &At<'_>) -> Result<&'a Vec<Value>, Error> {
    value
        .as_array()
        .ok_or_else(|| wrong(at, &format!("a list ({})", ty.describe()), value))
}

fn expect_object<'a>(value: &'a Value, ty: &Ty, at: &At<'_>) -> Result<&'a Map, Error> {
    value
        .as_object()
        .ok_or_else(|| wrong(at, &format!("an object ({})", ty.describe()), value))
}

fn wrong(at: &At<'_>, expected: &str, got: &Value) -> Error {
    Error::WrongType {
        path: at.render(),
        expected: expected.to_owned(),
        got: kind_of(got),
    }
}

fn unknown_key(model: &Model, key: &str, at: &At<'_>) -> Error {
    Error::UnknownKey {
        path: path::key(&at.render(), key),
        key: key.to_owned(),
        model: model.name,
        expected: model.snake_names().join(", "),
    }
}

#[cfg(test)]
mod tests;
