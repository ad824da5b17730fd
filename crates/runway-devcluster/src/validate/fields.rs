//! Fields the schema does not declare, handled as the real API server's
//! decoder handles them under `fieldValidation`: dropped (`Ignore`),
//! dropped with a warning each (`Warn`, the default), or refused (`Strict`,
//! what kubectl always asks for). Server-side apply refuses them whatever
//! the directive, as structured-merge-diff does.

use serde_json::Value;

use super::Kind;
use crate::openapi::schema::Schemas;
use crate::status::{ApiError, Cause, Resource};

/// `fieldValidation`: what to do with unknown fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// Unknown fields found in an object, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFields(Vec<FieldPath>);

/// Where a field sits: `spec`, `template`, ..., with the list elements on
/// the way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct FieldPath(Vec<Step>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    /// A list element: its index, and the values of the list's map keys
    /// (`x-kubernetes-list-map-keys`), as server-side apply names elements.
    Item(usize, Vec<(String, Value)>),
}

// === impl FieldValidation ===

impl FieldValidation {
    /// The `fieldValidation` query parameter of a request whose options are
    /// `options` (`CreateOptions`, `UpdateOptions`, `PatchOptions`); unset
    /// means `Warn`, as on the real server.
    pub fn parse(value: Option<&str>, options: &'static str) -> Result<FieldValidation, ApiError> {
        match value {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::invalid(
                options,
                Resource {
                    plural: "options",
                    group: "meta.k8s.io",
                },
                "",
                vec![Cause {
                    reason: "FieldValueNotSupported",
                    message: format!(
                        "Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \
                         \"Warn\""
                    ),
                    field: "fieldValidation".into(),
                }],
            )),
        }
    }
}

/// Applies `directive` to the unknown fields of `obj`, an object of `kind`:
/// they are removed, and the warnings to send are returned; under `Strict`
/// the unknown fields are the error.
pub fn check(
    kind: Kind,
    obj: &mut Value,
    directive: FieldValidation,
) -> Result<Vec<String>, UnknownFields> {
    let unknown = take_unknown(kind, obj);
    if unknown.0.is_empty() {
        return Ok(Vec::new());
    }
    match directive {
        FieldValidation::Strict => Err(unknown),
        FieldValidation::Warn => Ok(unknown.warnings()),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

/// Removes the fields of `obj` its kind's schema does not declare, and
/// names them.
pub fn take_unknown(kind: Kind, obj: &mut Value) -> UnknownFields {
    let mut found = Vec::new();
    // The schemas are embedded and tested; without them nothing is unknown.
    if let Some(schema) = Schemas::get()
        .ok()
        .and_then(|s| Some((s, s.of_kind(kind)?)))
    {
        walk(
            schema.0,
            schema.1,
            obj,
            &mut FieldPath::default(),
            &mut found,
        );
    }
    UnknownFields(found)
}

/// Checks `value` against `schema`, recording (and removing) what it does
/// not declare. Objects without declared properties (free-form maps such
/// as `FieldsV1`) take anything.
fn walk(
    schemas: &Schemas,
    schema: &Value,
    value: &mut Value,
    path: &mut FieldPath,
    found: &mut Vec<FieldPath>,
) {
    let schema = schemas.resolve(schema);
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                map.retain(|key, _| {
                    let known = properties.contains_key(key);
                    if !known {
                        found.push(path.with(Step::Field(key.clone())));
                    }
                    known
                });
                for (key, v) in map.iter_mut() {
                    path.0.push(Step::Field(key.clone()));
                    walk(schemas, &properties[key], v, path, found);
                    path.0.pop();
                }
            } else if schema["additionalProperties"].is_object() {
                for (key, v) in map.iter_mut() {
                    path.0.push(Step::Field(key.clone()));
                    walk(schemas, &schema["additionalProperties"], v, path, found);
                    path.0.pop();
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            let keys = map_keys(schema);
            for (i, item) in items.iter_mut().enumerate() {
                let key_values = keys
                    .iter()
                    .filter_map(|k| Some(((*k).to_owned(), item.get(*k)?.clone())))
                    .collect();
                path.0.push(Step::Item(i, key_values));
                walk(schemas, &schema["items"], item, path, found);
                path.0.pop();
            }
        }
        _ => {}
    }
}

fn map_keys(schema: &Value) -> Vec<&str> {
    schema["x-kubernetes-list-map-keys"]
        .as_array()
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

// === impl UnknownFields ===

impl UnknownFields {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The paths as the strict JSON decoder names them
    /// (`spec.template.spec.containers[0].bogus`).
    pub fn paths(&self) -> Vec<String> {
        self.0.iter().map(FieldPath::decoder_path).collect()
    }

    /// One `Warning` text per field, as the real server sends under `Warn`.
    fn warnings(&self) -> Vec<String> {
        self.paths()
            .into_iter()
            .map(|p| format!("unknown field {p:?}"))
            .collect()
    }

    /// The strict decoding error: `strict decoding error: unknown field
    /// "spec.a", unknown field "spec.b"`.
    pub fn decoding_error(&self) -> String {
        format!("strict decoding error: {}", self.warnings().join(", "))
    }

    /// The 400 of a create or update, as kube-apiserver's decoder words it.
    pub fn body_error(&self, kind: Kind) -> ApiError {
        let version = kind.api_version().rsplit('/').next().unwrap_or("v1");
        let name = kind.kind_name();
        ApiError::bad_request(format!(
            "{name} in version {version:?} cannot be handled as a {name}: {}",
            self.decoding_error()
        ))
    }

    /// What server-side apply answers: structured-merge-diff's "field not
    /// declared in schema". (kube-apiserver lets this error escape as a 500;
    /// a client error says more.)
    pub fn apply_error(&self, kind: Kind, namespace: &str, name: &str) -> ApiError {
        let group_version = kind.api_version();
        let gvk = match group_version.split_once('/') {
            Some((group, version)) => format!("{group}/{version}, Kind={}", kind.kind_name()),
            None => format!("/{group_version}, Kind={}", kind.kind_name()),
        };
        let errors: Vec<String> = self
            .0
            .iter()
            .map(|p| format!("{}: field not declared in schema", p.apply_path()))
            .collect();
        let detail = match errors.as_slice() {
            [one] => one.clone(),
            many => format!("errors:\n  {}", many.join("\n  ")),
        };
        ApiError::bad_request(format!(
            "failed to create typed patch object ({namespace}/{name}; {gvk}): {detail}"
        ))
    }
}

// === impl FieldPath ===

impl FieldPath {
    fn with(&self, step: Step) -> FieldPath {
        let mut p = self.clone();
        p.0.push(step);
        p
    }

    fn decoder_path(&self) -> String {
        let mut out = String::new();
        for step in &self.0 {
            match step {
                Step::Field(f) if out.is_empty() => out.push_str(f),
                Step::Field(f) => {
                    out.push('.');
                    out.push_str(f);
                }
                Step::Item(i, _) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    fn apply_path(&self) -> String {
        let mut out = String::new();
        for step in &self.0 {
            match step {
                Step::Field(f) => {
                    out.push('.');
                    out.push_str(f);
                }
                Step::Item(i, keys) if keys.is_empty() => out.push_str(&format!("[{i}]")),
                Step::Item(_, keys) => {
                    let keys: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    out.push_str(&format!("[{}]", keys.join(",")));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
