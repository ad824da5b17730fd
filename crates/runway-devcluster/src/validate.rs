//! What the real API server does to an object before storing it: type checks
//! (`kind`/`apiVersion`), server-set metadata, `generateName`, defaulting of
//! the fields clients read back (Job and Pod specs), the Job's generated
//! selector and tracking labels, validation with field causes (RFC 1123
//! names, label keys and values, required fields, the restartPolicy of Job
//! templates), and on update the immutable parts. Pure: no I/O, no clock.
//!
//! Layout: `meta` (metadata rules and the causes of a 422), `job` and `pod`
//! (defaults, validation and update rules per kind), `fields` (unknown
//! fields and `fieldValidation`); ConfigMaps, Secrets, Events, Namespaces
//! and ServiceAccounts need only a few lines, here.

use serde_json::{json, Map, Value};

use super::status::{ApiError, Resource};

pub mod fields;
mod job;
mod meta;
mod pod;

use meta::{check_finalizers, check_meta, check_object_name, Causes};

/// The resources the dev cluster serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    Namespace,
    Pod,
    Job,
    ConfigMap,
    Secret,
    Event,
    ServiceAccount,
}

impl Kind {
    pub fn resource(self) -> Resource {
        let (plural, group) = match self {
            Kind::Namespace => ("namespaces", ""),
            Kind::Pod => ("pods", ""),
            Kind::Job => ("jobs", "batch"),
            Kind::ConfigMap => ("configmaps", ""),
            Kind::Secret => ("secrets", ""),
            Kind::Event => ("events", ""),
            Kind::ServiceAccount => ("serviceaccounts", ""),
        };
        Resource { plural, group }
    }

    pub fn namespaced(self) -> bool {
        self != Kind::Namespace
    }

    pub fn kind_name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Job => "Job",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::Event => "Event",
            Kind::ServiceAccount => "ServiceAccount",
        }
    }

    pub fn api_version(self) -> &'static str {
        if self == Kind::Job {
            "batch/v1"
        } else {
            "v1"
        }
    }

    /// Whether writes to the main resource ignore `.status` (it has a
    /// `/status` subresource).
    fn has_status_subresource(self) -> bool {
        matches!(self, Kind::Job | Kind::Pod | Kind::Namespace)
    }
}
/// Drops `kind`/`apiVersion` (stored objects carry neither) after checking
/// they name this resource.
fn strip_type_meta(kind: Kind, obj: &mut Map<String, Value>) -> Result<(), ApiError> {
    if let Some(k) = obj.remove("kind") {
        if k.as_str()
            .is_some_and(|s| !s.is_empty() && s != kind.kind_name())
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({}) \
                 or the kind {k} does not match the expected kind {}",
                obj.get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(kind.api_version()),
                kind.api_version(),
                kind.kind_name()
            )));
        }
    }
    if let Some(v) = obj.remove("apiVersion") {
        if v.as_str()
            .is_some_and(|s| !s.is_empty() && s != kind.api_version())
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                v.as_str().unwrap_or(""),
                kind.api_version()
            )));
        }
    }
    Ok(())
}

fn object_mut<'a>(v: &'a mut Value, what: &str) -> Result<&'a mut Map<String, Value>, ApiError> {
    v.as_object_mut()
        .ok_or_else(|| ApiError::bad_request(format!("{what}: expected a JSON object")))
}

fn ensure_object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = map.entry(key).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    match entry {
        Value::Object(m) => m,
        // The entry was made an object just above.
        _ => unreachable!("ensure_object: entry is an object"),
    }
}

fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.entry(key).or_insert(value);
}

/// Server-side create: type checks, metadata, defaults, validation.
pub fn prepare_create(
    kind: Kind,
    obj: &mut Value,
    namespace: &str,
    uid: &str,
    now: &str,
    suffix: &str,
) -> Result<(), ApiError> {
    let root = object_mut(obj, "body")?;
    strip_type_meta(kind, root)?;
    let meta = ensure_object(root, "metadata");
    set_server_metadata(kind, meta, namespace, suffix)?;
    meta.insert("uid".into(), json!(uid));
    meta.insert("creationTimestamp".into(), json!(now));
    if kind == Kind::Job {
        meta.insert("generation".into(), json!(1));
    }
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    set_defaults(kind, root, uid, &name);
    validate(kind, obj, &name)
}

/// Drops what clients may not set, and sets the namespace and a generated
/// name.
fn set_server_metadata(
    kind: Kind,
    meta: &mut Map<String, Value>,
    namespace: &str,
    suffix: &str,
) -> Result<(), ApiError> {
    for server_set in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "selfLink",
        "managedFields",
    ] {
        meta.remove(server_set);
    }
    let body_ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
    if kind.namespaced() && !body_ns.is_empty() && body_ns != namespace {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if kind.namespaced() {
        meta.insert("namespace".into(), json!(namespace));
    } else {
        meta.remove("namespace");
    }
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name {
        if let Some(gen) = meta.get("generateName").and_then(Value::as_str) {
            if !gen.is_empty() {
                // Real API servers cap the prefix so the result fits a label value.
                let prefix: String = gen.chars().take(58).collect();
                meta.insert("name".into(), json!(format!("{prefix}{suffix}")));
            }
        }
    }
    Ok(())
}

/// The defaults of each kind, as the real API server fills them in.
fn set_defaults(kind: Kind, root: &mut Map<String, Value>, uid: &str, name: &str) {
    match kind {
        Kind::Job => job::default_job(root, uid, name),
        Kind::Pod => {
            let spec = ensure_object(root, "spec");
            pod::default_pod_spec(spec, false);
            root.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": "BestEffort"}),
            );
            pod::set_qos(root);
        }
        Kind::Namespace => {
            let meta = ensure_object(root, "metadata");
            let labels = ensure_object(meta, "labels");
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            let spec = ensure_object(root, "spec");
            default(spec, "finalizers", json!(["kubernetes"]));
        }
        Kind::Secret => {
            default(root, "type", json!("Opaque"));
        }
        Kind::ConfigMap | Kind::Event | Kind::ServiceAccount => {}
    }
}

/// Server-side update of the object or (with `status_only`) its status:
/// keeps what clients cannot change and validates the result.
pub fn prepare_update(
    kind: Kind,
    old: &Value,
    new: &mut Value,
    status_only: bool,
) -> Result<(), ApiError> {
    let root = object_mut(new, "body")?;
    strip_type_meta(kind, root)?;
    let name = old["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if status_only {
        let status = root.remove("status");
        let mut merged = old.clone();
        if let Some(map) = merged.as_object_mut() {
            match status {
                Some(s) => map.insert("status".into(), s),
                None => map.remove("status"),
            };
        }
        *new = merged;
        return validate(kind, new, &name);
    }
    keep_server_fields(kind, root, old);
    let mut c = Causes::default();
    match kind {
        Kind::Job => job::check_update(&mut c, root, old),
        Kind::Pod => pod::check_update(&mut c, root, old),
        Kind::ConfigMap | Kind::Secret if old["immutable"] == true => {
            let fields = ["data", "binaryData", "stringData", "immutable"];
            if fields.iter().any(|f| root.get(*f) != old.get(*f)) {
                c.forbidden("data", "field is immutable when `immutable` is set");
            }
        }
        _ => {}
    }
    c.finish(kind, &name)?;
    validate(kind, new, &name)
}

/// What an update keeps from the stored object whatever the body says: the
/// server-set metadata, and the status of kinds with a status subresource.
fn keep_server_fields(kind: Kind, root: &mut Map<String, Value>, old: &Value) {
    let meta = ensure_object(root, "metadata");
    for keep in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
        "generateName",
        "generation",
    ] {
        match old["metadata"].get(keep) {
            Some(v) => meta.insert(keep.into(), v.clone()),
            None => meta.remove(keep),
        };
    }
    if kind.has_status_subresource() {
        match old.get("status") {
            Some(s) => root.insert("status".into(), s.clone()),
            None => root.remove("status"),
        };
    }
}

/// Validates a whole object, collecting every cause of one 422.
fn validate(kind: Kind, obj: &Value, name: &str) -> Result<(), ApiError> {
    let mut c = Causes::default();
    check_object_name(&mut c, kind, name);
    check_meta(&mut c, "metadata", &obj["metadata"]);
    check_finalizers(&mut c, &obj["metadata"]["finalizers"]);
    match kind {
        Kind::Job => job::validate_job(&mut c, obj),
        Kind::Pod => {
            pod::check_pod_spec(&mut c, "spec", &obj["spec"]);
            let policy = &obj["spec"]["restartPolicy"];
            if !matches!(policy.as_str(), Some("Always" | "OnFailure" | "Never")) {
                c.not_supported(
                    "spec.restartPolicy",
                    policy,
                    &["Always", "OnFailure", "Never"],
                );
            }
        }
        Kind::ConfigMap | Kind::Secret => check_data(&mut c, obj),
        Kind::Event => {
            if obj["involvedObject"].as_object().is_none() {
                c.required("involvedObject", "");
            }
        }
        Kind::Namespace | Kind::ServiceAccount => {}
    }
    c.finish(kind, name)
}

/// The keys and values of a ConfigMap's or Secret's data.
fn check_data(c: &mut Causes, obj: &Value) {
    for key in ["data", "binaryData", "stringData"] {
        let Some(map) = obj[key].as_object() else {
            continue;
        };
        for (k, v) in map {
            let ok = !k.is_empty()
                && k.len() <= 253
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !ok {
                c.invalid(
                    format!("{key}[{k}]"),
                    &json!(k),
                    "a valid config key must consist of alphanumeric characters, \
                     '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or \
                     'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                );
            }
            if !v.is_string() {
                c.invalid(format!("{key}[{k}]"), v, "must be a string");
            }
        }
    }
}

#[cfg(test)]
mod tests;
