//! Label selectors: parsed from a `labelSelector` query or built from a
//! `metav1.LabelSelector` object, and matched against `metadata.labels`.

use std::fmt;

use serde_json::{Map, Value};

use super::names::{check_key, check_value};
use super::syntax::{tokenize, Parser};
use crate::status::ApiError;

/// A parsed `labelSelector`: requirements that must all hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Sorted by key, as the real parser leaves them, so `Display` is canonical.
    requirements: Vec<Requirement>,
    /// A null `metav1.LabelSelector` selects nothing, where an empty one
    /// selects everything; a controller must not adopt every pod because a
    /// selector is missing.
    nothing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Requirement {
    pub(super) key: String,
    pub(super) op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Op {
    Equals(String),
    /// Kept apart from `Equals` only so that `Display` gives back `==`.
    DoubleEquals(String),
    NotEquals(String),
    /// Sorted, so matching can binary-search.
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    /// `k>N` and `k<N`: the text is what `Display` writes back.
    GreaterThan(String, i64),
    LessThan(String, i64),
}

// === impl LabelSelector ===

impl LabelSelector {
    /// Parses a `labelSelector` query value; the empty string selects everything.
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let mut parser = Parser {
            tokens: tokenize(s),
            pos: 0,
        };
        let mut requirements = parser
            .selector()
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Builds the selector a `metav1.LabelSelector` object (`matchLabels`,
    /// `matchExpressions`) stands for, as `LabelSelectorAsSelector` does.
    pub fn from_label_selector_object(obj: &Value) -> Result<LabelSelector, ApiError> {
        let fields = match obj {
            Value::Null => {
                return Ok(LabelSelector {
                    requirements: Vec::new(),
                    nothing: true,
                })
            }
            Value::Object(fields) => fields,
            other => return Err(not_a("label selector", "an object", other)),
        };
        let mut requirements = Vec::new();
        match fields.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (key, value) in labels {
                    let Value::String(value) = value else {
                        return Err(not_a(&format!("matchLabels[{key}]"), "a string", value));
                    };
                    check_key(key).and_then(|()| check_value(key, 0, value))?;
                    requirements.push(Requirement {
                        key: key.clone(),
                        op: Op::Equals(value.clone()),
                    });
                }
            }
            Some(other) => return Err(not_a("matchLabels", "an object", other)),
        }
        match fields.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, expr) in exprs.iter().enumerate() {
                    requirements.push(expression(i, expr)?);
                }
            }
            Some(other) => return Err(not_a("matchExpressions", "an array", other)),
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Whether every label set matches.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether the labels (`metadata.labels`; `None` when absent) satisfy every requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.matches_with(|key| labels.and_then(|l| l.get(key)).map(Value::as_str))
    }

    /// Whether labels read through `label` satisfy every requirement:
    /// `label(key)` is `None` when absent, `Some(None)` when not a string.
    pub fn matches_with<'l>(&self, label: impl Fn(&str) -> Option<Option<&'l str>>) -> bool {
        !self.nothing
            && self
                .requirements
                .iter()
                .all(|r| r.matches(label(r.key.as_str())))
    }

    /// The `key=value` terms (and single-value `in`) every match has: what a
    /// store can look up in a label index before testing the rest.
    pub fn equalities(&self) -> Vec<(&str, &str)> {
        self.requirements
            .iter()
            .filter_map(|r| match &r.op {
                Op::Equals(v) | Op::DoubleEquals(v) => Some((r.key.as_str(), v.as_str())),
                Op::In(set) if set.len() == 1 => Some((r.key.as_str(), set[0].as_str())),
                _ => None,
            })
            .collect()
    }

    /// [`LabelSelector::matches`] on an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        let labels = obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        self.matches(labels)
    }
}

/// One `matchExpressions` entry. Missing strings read as empty, as Go decodes them.
fn expression(i: usize, expr: &Value) -> Result<Requirement, ApiError> {
    let at = |field: &str| format!("matchExpressions[{i}].{field}");
    let string = |field: &str| -> Result<&str, ApiError> {
        match expr.get(field) {
            None | Some(Value::Null) => Ok(""),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(not_a(&at(field), "a string", other)),
        }
    };
    if !expr.is_object() {
        return Err(not_a(&format!("matchExpressions[{i}]"), "an object", expr));
    }
    let key = string("key")?;
    let operator = string("operator")?;
    let mut values = Vec::new();
    match expr.get("values") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (j, item) in items.iter().enumerate() {
                let Value::String(v) = item else {
                    return Err(not_a(&at(&format!("values[{j}]")), "a string", item));
                };
                values.push(v.clone());
            }
        }
        Some(other) => return Err(not_a(&at("values"), "an array", other)),
    }
    let set_op = match operator {
        "In" | "NotIn" => true,
        "Exists" | "DoesNotExist" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "{other:?} is not a valid label selector operator"
            )))
        }
    };
    check_key(key)?;
    let count_error = if set_op && values.is_empty() {
        Some("for 'in', 'notin' operators, values set can't be empty")
    } else if !set_op && !values.is_empty() {
        Some("values set must be empty for exists and does not exist")
    } else {
        None
    };
    if let Some(detail) = count_error {
        return Err(ApiError::bad_request(format!(
            "values: Invalid value: {values:?}: {detail}"
        )));
    }
    for (j, v) in values.iter().enumerate() {
        check_value(key, j, v)?;
    }
    values.sort_unstable();
    // The operator was checked above, so anything else is `DoesNotExist`.
    let op = match operator {
        "In" => Op::In(values),
        "NotIn" => Op::NotIn(values),
        "Exists" => Op::Exists,
        _ => Op::DoesNotExist,
    };
    Ok(Requirement {
        key: key.to_owned(),
        op,
    })
}

fn not_a(what: &str, expected: &str, got: &Value) -> ApiError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ApiError::bad_request(format!("{what} must be {expected}, not {got}"))
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

// === impl Requirement ===

impl Requirement {
    /// `label`: the label's value; `Some(None)` when it is not a string.
    fn matches(&self, label: Option<Option<&str>>) -> bool {
        // A label whose value is not a string (never valid, but possible in
        // stored JSON) is present yet equal to no value.
        let Some(text) = label else {
            return matches!(self.op, Op::NotEquals(_) | Op::NotIn(_) | Op::DoesNotExist);
        };
        match &self.op {
            Op::Equals(want) | Op::DoubleEquals(want) => text == Some(want.as_str()),
            Op::NotEquals(want) => text != Some(want.as_str()),
            Op::In(set) => text.is_some_and(|t| contains(set, t)),
            Op::NotIn(set) => !text.is_some_and(|t| contains(set, t)),
            Op::Exists => true,
            Op::DoesNotExist => false,
            Op::GreaterThan(_, bound) => integer(text).is_some_and(|n| n > *bound),
            Op::LessThan(_, bound) => integer(text).is_some_and(|n| n < *bound),
        }
    }
}

fn contains(sorted: &[String], value: &str) -> bool {
    sorted.binary_search_by(|v| v.as_str().cmp(value)).is_ok()
}

fn integer(text: Option<&str>) -> Option<i64> {
    text.and_then(|t| t.parse().ok())
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match &self.op {
            Op::Equals(v) => write!(f, "{key}={v}"),
            Op::DoubleEquals(v) => write!(f, "{key}=={v}"),
            Op::NotEquals(v) => write!(f, "{key}!={v}"),
            Op::In(vs) => write!(f, "{key} in ({})", vs.join(",")),
            Op::NotIn(vs) => write!(f, "{key} notin ({})", vs.join(",")),
            Op::Exists => write!(f, "{key}"),
            Op::DoesNotExist => write!(f, "!{key}"),
            Op::GreaterThan(v, _) => write!(f, "{key}>{v}"),
            Op::LessThan(v, _) => write!(f, "{key}<{v}"),
        }
    }
}
