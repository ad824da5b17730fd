//! What the real API server does to an object before storing it: type checks
//! (`kind`/`apiVersion`), server-set metadata, `generateName`, defaulting of
//! the fields clients read back (Job and Pod specs), the Job's generated
//! selector and tracking labels, validation with field causes (RFC 1123
//! names, label keys and values, required fields, the restartPolicy of Job
//! templates), and on update the immutable parts. Pure: no I/O, no clock.

use serde_json::{json, Map, Value};

use super::status::{ApiError, Cause, Resource};

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

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case \
    alphanumeric characters or '-', and must start and end with an alphanumeric character \
    (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
    alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
    (e.g. 'example.com', regex used for validation is \
    '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or \
    '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
    '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric \
    characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
    'MyValue',  or 'my_value',  or '12345', regex used for validation is \
    '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Accumulates the causes of one 422.
#[derive(Debug, Default)]
struct Causes(Vec<Cause>);

impl Causes {
    fn invalid(&mut self, field: impl Into<String>, value: &Value, detail: &str) {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        self.0.push(Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {shown}: {detail}"),
            field: field.into(),
        });
    }

    fn required(&mut self, field: impl Into<String>, detail: &str) {
        let message = if detail.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {detail}")
        };
        self.0.push(Cause {
            reason: "FieldValueRequired",
            message,
            field: field.into(),
        });
    }

    fn not_supported(&mut self, field: impl Into<String>, value: &Value, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.0.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {value}: supported values: {}",
                list.join(", ")
            ),
            field: field.into(),
        });
    }

    fn forbidden(&mut self, field: impl Into<String>, detail: &str) {
        self.0.push(Cause {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
            field: field.into(),
        });
    }

    fn duplicate(&mut self, field: impl Into<String>, value: &Value) {
        self.0.push(Cause {
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {value}"),
            field: field.into(),
        });
    }

    fn finish(self, kind: Kind, name: &str) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(
                kind.kind_name(),
                kind.resource(),
                name,
                self.0,
            ))
        }
    }
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Kubernetes' IsDNS1123Subdomain: 253 characters at most, and the regex's
/// dot-separated parts have no length limit of their own (a 65-character
/// ConfigMap name is valid, as the seed deployment's user-env map shows).
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Label and annotation keys: `[prefix/]name`.
fn check_qualified_key(c: &mut Causes, field: &str, key: &str) {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let v = json!(key);
    if let Some(p) = prefix {
        if p.is_empty() {
            c.invalid(field, &v, "prefix part must be non-empty");
        } else if !is_dns1123_subdomain(p) {
            c.invalid(field, &v, &format!("prefix part {DNS1123_SUBDOMAIN_MSG}"));
        }
    }
    if name.is_empty() {
        c.invalid(field, &v, "name part must be non-empty");
    } else if name.len() > 63 {
        c.invalid(field, &v, "name part must be no more than 63 characters");
    } else if !is_qualified_name_part(name) {
        c.invalid(field, &v, QUALIFIED_NAME_MSG);
    }
}

fn check_labels(c: &mut Causes, field: &str, labels: &Value) {
    let Some(map) = labels.as_object() else {
        if !labels.is_null() {
            c.invalid(field, labels, "must be a map of strings");
        }
        return;
    };
    for (k, v) in map {
        check_qualified_key(c, field, k);
        match v.as_str() {
            Some(s) if s.len() > 63 => {
                c.invalid(field, v, "must be no more than 63 characters");
            }
            Some(s) if !s.is_empty() && !is_qualified_name_part(s) => {
                c.invalid(field, v, LABEL_VALUE_MSG);
            }
            Some(_) => {}
            None => c.invalid(field, v, "label values must be strings"),
        }
    }
}

fn check_annotations(c: &mut Causes, field: &str, annotations: &Value) {
    let Some(map) = annotations.as_object() else {
        if !annotations.is_null() {
            c.invalid(field, annotations, "must be a map of strings");
        }
        return;
    };
    let mut total = 0;
    for (k, v) in map {
        check_qualified_key(c, field, &k.to_lowercase());
        match v.as_str() {
            Some(s) => total += k.len() + s.len(),
            None => c.invalid(field, v, "annotation values must be strings"),
        }
    }
    if total > 256 * 1024 {
        c.0.push(Cause {
            reason: "FieldValueTooLong",
            message: "Too long: must have at most 262144 bytes".into(),
            field: field.into(),
        });
    }
}

/// Validates the metadata clients may set; `prefix` is `metadata` or
/// `spec.template.metadata`.
fn check_meta(c: &mut Causes, prefix: &str, meta: &Value) {
    check_labels(c, &format!("{prefix}.labels"), &meta["labels"]);
    check_annotations(c, &format!("{prefix}.annotations"), &meta["annotations"]);
}

fn check_object_name(c: &mut Causes, kind: Kind, name: &str) {
    if name.is_empty() {
        c.required("metadata.name", "name or generateName is required");
        return;
    }
    let ok = match kind {
        Kind::Namespace | Kind::ServiceAccount => is_dns1123_label(name),
        Kind::Event => !name.contains('/') && !name.contains('%') && name != "." && name != "..",
        _ => is_dns1123_subdomain(name),
    };
    if !ok {
        let msg = if matches!(kind, Kind::Namespace | Kind::ServiceAccount) {
            DNS1123_LABEL_MSG
        } else {
            DNS1123_SUBDOMAIN_MSG
        };
        c.invalid("metadata.name", &json!(name), msg);
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

    match kind {
        Kind::Job => default_job(root, uid, &name),
        Kind::Pod => {
            let spec = ensure_object(root, "spec");
            default_pod_spec(spec, false);
            root.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": "BestEffort"}),
            );
            set_qos(root);
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
    validate(kind, obj, &name)
}

fn default_job(root: &mut Map<String, Value>, uid: &str, name: &str) {
    let spec = ensure_object(root, "spec");
    default(spec, "backoffLimit", json!(6));
    default(spec, "completions", json!(1));
    default(spec, "parallelism", json!(1));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "manualSelector", json!(false));
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    let manual = spec.get("manualSelector") == Some(&json!(true));
    let template = ensure_object(spec, "template");
    let tmeta = ensure_object(template, "metadata");
    // The generated selector and the tracking labels (kube's generateSelector).
    if !manual {
        let tlabels = ensure_object(tmeta, "labels");
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", uid),
            ("batch.kubernetes.io/job-name", name),
            ("controller-uid", uid),
            ("job-name", name),
        ] {
            tlabels.insert(k.into(), json!(v));
        }
    }
    let template_labels = tmeta.get("labels").cloned().unwrap_or_else(|| json!({}));
    let tspec = ensure_object(template, "spec");
    default_pod_spec(tspec, true);
    if !manual {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    }
    // Defaulting copies the template's labels when the Job has none; in the
    // real server that copy shares the map the selector labels land in.
    let meta = ensure_object(root, "metadata");
    let empty = meta
        .get("labels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    if empty {
        meta.insert("labels".into(), template_labels);
    }
    root.insert("status".into(), json!({}));
}

fn default_pod_spec(spec: &mut Map<String, Value>, in_template: bool) {
    if !in_template {
        default(spec, "restartPolicy", json!("Always"));
    }
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    if !in_template {
        let sa = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| spec.get("serviceAccount").and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_owned();
        spec.insert("serviceAccountName".into(), json!(sa));
        spec.insert("serviceAccount".into(), json!(sa));
        default(spec, "enableServiceLinks", json!(true));
        default(spec, "priority", json!(0));
        default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                default_container(c);
            }
        }
    }
}

fn default_container(c: &mut Map<String, Value>) {
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let policy = if image_tag_is_latest(image) {
        "Always"
    } else {
        "IfNotPresent"
    };
    default(c, "imagePullPolicy", json!(policy));
    if let Some(Value::Array(env)) = c.get_mut("env") {
        for e in env.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(Value::Object(from)) = e.get_mut("valueFrom") {
                if let Some(Value::Object(f)) = from.get_mut("fieldRef") {
                    default(f, "apiVersion", json!("v1"));
                }
            }
        }
    }
}

/// `IfNotPresent` unless the image has no tag or the tag `latest` (digests count as tags).
fn image_tag_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

/// `status.qosClass` as the real API server derives it from resources.
fn set_qos(root: &mut Map<String, Value>) {
    let containers = root
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut all_guaranteed = !containers.is_empty();
    for c in &containers {
        let limits = c["resources"]["limits"].as_object();
        let requests = c["resources"]["requests"].as_object();
        if limits.is_some_and(|l| !l.is_empty()) || requests.is_some_and(|r| !r.is_empty()) {
            any = true;
        }
        let guaranteed = ["cpu", "memory"].iter().all(|r| {
            let l = limits.and_then(|l| l.get(*r));
            let q = requests.and_then(|q| q.get(*r)).or(l);
            l.is_some() && l == q
        });
        all_guaranteed &= guaranteed;
    }
    let qos = if all_guaranteed {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    };
    if let Some(Value::Object(status)) = root.get_mut("status") {
        status.insert("qosClass".into(), json!(qos));
    }
}

fn validate(kind: Kind, obj: &Value, name: &str) -> Result<(), ApiError> {
    let mut c = Causes::default();
    check_object_name(&mut c, kind, name);
    check_meta(&mut c, "metadata", &obj["metadata"]);
    check_finalizers(&mut c, &obj["metadata"]["finalizers"]);
    match kind {
        Kind::Job => validate_job(&mut c, obj),
        Kind::Pod => {
            check_pod_spec(&mut c, "spec", &obj["spec"]);
            let policy = &obj["spec"]["restartPolicy"];
            if !matches!(policy.as_str(), Some("Always" | "OnFailure" | "Never")) {
                c.not_supported(
                    "spec.restartPolicy",
                    policy,
                    &["Always", "OnFailure", "Never"],
                );
            }
        }
        Kind::ConfigMap | Kind::Secret => {
            for key in ["data", "binaryData", "stringData"] {
                if let Some(map) = obj[key].as_object() {
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
        }
        Kind::Event => {
            if obj["involvedObject"].as_object().is_none() {
                c.required("involvedObject", "");
            }
        }
        Kind::Namespace | Kind::ServiceAccount => {}
    }
    c.finish(kind, name)
}

fn check_finalizers(c: &mut Causes, finalizers: &Value) {
    let Some(items) = finalizers.as_array() else {
        if !finalizers.is_null() {
            c.invalid(
                "metadata.finalizers",
                finalizers,
                "must be a list of strings",
            );
        }
        return;
    };
    for (i, f) in items.iter().enumerate() {
        match f.as_str() {
            Some(s)
                if s.contains('/')
                    || matches!(s, "kubernetes" | "orphan" | "foregroundDeletion") =>
            {
                check_qualified_key(c, &format!("metadata.finalizers[{i}]"), s);
            }
            Some(s) => c.invalid(
                format!("metadata.finalizers[{i}]"),
                &json!(s),
                "name is neither a standard finalizer name nor is it fully qualified",
            ),
            None => c.invalid(format!("metadata.finalizers[{i}]"), f, "must be a string"),
        }
    }
}

fn check_non_negative(c: &mut Causes, field: &str, v: &Value, strictly_positive: bool) {
    if v.is_null() {
        return;
    }
    match v.as_i64() {
        Some(n) if strictly_positive && n <= 0 => {
            c.invalid(field, v, "must be greater than or equal to 1");
        }
        Some(n) if n < 0 => c.invalid(field, v, "must be greater than or equal to 0"),
        Some(_) => {}
        None => c.invalid(field, v, "must be an integer"),
    }
}

fn validate_job(c: &mut Causes, job: &Value) {
    let spec = &job["spec"];
    check_non_negative(c, "spec.backoffLimit", &spec["backoffLimit"], false);
    check_non_negative(c, "spec.parallelism", &spec["parallelism"], false);
    check_non_negative(c, "spec.completions", &spec["completions"], false);
    check_non_negative(
        c,
        "spec.activeDeadlineSeconds",
        &spec["activeDeadlineSeconds"],
        true,
    );
    check_non_negative(
        c,
        "spec.ttlSecondsAfterFinished",
        &spec["ttlSecondsAfterFinished"],
        false,
    );
    let template = &spec["template"];
    check_meta(c, "spec.template.metadata", &template["metadata"]);
    // The selector must select the template, or the Job could never see its pods.
    if let Some(ml) = spec["selector"]["matchLabels"].as_object() {
        let tl = &template["metadata"]["labels"];
        if ml.iter().any(|(k, v)| &tl[k] != v) {
            c.invalid(
                "spec.template.metadata.labels",
                tl,
                "`selector` does not match template `labels`",
            );
        }
    } else if spec["manualSelector"] == true {
        c.required("spec.selector", "");
    }
    let tspec = &template["spec"];
    check_pod_spec(c, "spec.template.spec", tspec);
    let policy = &tspec["restartPolicy"];
    if policy.is_null() {
        c.required("spec.template.spec.restartPolicy", "");
        c.not_supported(
            "spec.template.spec.restartPolicy",
            &json!(""),
            &["OnFailure", "Never"],
        );
    } else if !matches!(policy.as_str(), Some("OnFailure" | "Never")) {
        c.not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["OnFailure", "Never"],
        );
    }
}

fn check_pod_spec(c: &mut Causes, prefix: &str, spec: &Value) {
    let containers = spec["containers"].as_array();
    if containers.is_none_or(Vec::is_empty) {
        c.required(format!("{prefix}.containers"), "");
    }
    let mut names = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(items) = spec[list].as_array() else {
            if !spec[list].is_null() {
                c.invalid(format!("{prefix}.{list}"), &spec[list], "must be a list");
            }
            continue;
        };
        for (i, ctr) in items.iter().enumerate() {
            let at = format!("{prefix}.{list}[{i}]");
            match ctr["name"].as_str() {
                None | Some("") => c.required(format!("{at}.name"), ""),
                Some(n) if !is_dns1123_label(n) => {
                    c.invalid(format!("{at}.name"), &ctr["name"], DNS1123_LABEL_MSG);
                }
                Some(n) if names.contains(&n) => c.duplicate(format!("{at}.name"), &ctr["name"]),
                Some(n) => names.push(n),
            }
            if ctr["image"].as_str().is_none_or(|s| s.trim().is_empty()) {
                c.required(format!("{at}.image"), "");
            }
            for field in ["command", "args"] {
                let v = &ctr[field];
                if !v.is_null() && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                    c.invalid(format!("{at}.{field}"), v, "must be a list of strings");
                }
            }
            if let Some(env) = ctr["env"].as_array() {
                for (j, e) in env.iter().enumerate() {
                    if e["name"].as_str().is_none_or(str::is_empty) {
                        c.required(format!("{at}.env[{j}].name"), "");
                    }
                    if e.get("value").is_some() && e.get("valueFrom").is_some() {
                        c.invalid(
                            format!("{at}.env[{j}].valueFrom"),
                            &json!(""),
                            "may not be specified when `value` is not empty",
                        );
                    }
                }
            }
            let policy = &ctr["imagePullPolicy"];
            if !policy.is_null()
                && !matches!(policy.as_str(), Some("Always" | "IfNotPresent" | "Never"))
            {
                c.not_supported(
                    format!("{at}.imagePullPolicy"),
                    policy,
                    &["Always", "IfNotPresent", "Never"],
                );
            }
        }
    }
    if let Some(sa) = spec["serviceAccountName"].as_str() {
        if !sa.is_empty() && !is_dns1123_subdomain(sa) {
            c.invalid(
                format!("{prefix}.serviceAccountName"),
                &json!(sa),
                DNS1123_SUBDOMAIN_MSG,
            );
        }
    }
    if let Some(vols) = spec["volumes"].as_array() {
        let mut seen = Vec::new();
        for (i, v) in vols.iter().enumerate() {
            match v["name"].as_str() {
                None | Some("") => c.required(format!("{prefix}.volumes[{i}].name"), ""),
                Some(n) if seen.contains(&n) => {
                    c.duplicate(format!("{prefix}.volumes[{i}].name"), &v["name"]);
                }
                Some(n) => seen.push(n),
            }
        }
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
    let mut c = Causes::default();
    match kind {
        Kind::Job => {
            let spec = ensure_object(root, "spec");
            for immutable in [
                "selector",
                "completions",
                "completionMode",
                "podFailurePolicy",
            ] {
                let before = old["spec"].get(immutable);
                if spec.get(immutable).is_none() {
                    if let Some(b) = before {
                        spec.insert(immutable.into(), b.clone());
                    }
                } else if spec.get(immutable) != before {
                    c.invalid(
                        format!("spec.{immutable}"),
                        &spec[immutable],
                        "field is immutable",
                    );
                }
            }
            if spec.get("template") != old["spec"].get("template") {
                // Only a suspended Job that never started may change its template
                // scheduling directives; Dagster never does.
                c.invalid("spec.template", &json!("..."), "field is immutable");
            }
            if root.get("spec") != old.get("spec") {
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                ensure_object(root, "metadata").insert("generation".into(), json!(generation));
            }
        }
        Kind::Pod => {
            let mut a = root.get("spec").cloned().unwrap_or(Value::Null);
            let mut b = old["spec"].clone();
            for spec in [&mut a, &mut b] {
                if let Some(Value::Array(cs)) = spec.get_mut("containers") {
                    for ctr in cs.iter_mut().filter_map(Value::as_object_mut) {
                        ctr.remove("image");
                    }
                }
                if let Some(m) = spec.as_object_mut() {
                    m.remove("activeDeadlineSeconds");
                    m.remove("tolerations");
                }
            }
            if a != b {
                c.forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`, \
                     `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, \
                     `spec.tolerations` (only additions to existing tolerations), \
                     `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was \
                     previously negative)",
                );
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn create(kind: Kind, body: Value) -> Result<Value, ApiError> {
        let mut obj = body;
        prepare_create(
            kind,
            &mut obj,
            "default",
            "uid-1",
            "2026-01-01T00:00:00Z",
            "abcde",
        )?;
        Ok(obj)
    }

    fn job(name: &str) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
               "spec": {"template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
    }

    #[test]
    fn job_gets_selector_labels_and_defaults() {
        let j = create(Kind::Job, job("dagster-run-1")).unwrap();
        assert_eq!(j.get("kind"), None);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "uid-1"
        );
        let tl = &j["spec"]["template"]["metadata"]["labels"];
        assert_eq!(tl["job-name"], "dagster-run-1");
        assert_eq!(tl["controller-uid"], "uid-1");
        // no Job labels given: they default to the template's
        assert_eq!(j["metadata"]["labels"], *tl);
        let c = &j["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(j["metadata"]["namespace"], "default");
        assert_eq!(j["metadata"]["generation"], 1);
    }

    #[test]
    fn subdomain_names_are_limited_in_total_not_per_part() {
        let long = "dagster-dagster-user-deployments-k8s-example-user-code-1-user-env";
        assert!(long.len() > 63);
        assert!(is_dns1123_subdomain(long));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain("-a"));
        assert!(!is_dns1123_subdomain("A"));
    }

    #[test]
    fn job_labels_given_are_kept() {
        let mut body = job("j");
        body["metadata"]["labels"] = json!({"app": "x"});
        let j = create(Kind::Job, body).unwrap();
        assert_eq!(j["metadata"]["labels"], json!({"app": "x"}));
    }

    #[test]
    fn invalid_name_and_restart_policy_are_422_with_causes() {
        let mut body = job("Bad_Name");
        body["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        let err = create(Kind::Job, body).unwrap_err();
        assert_eq!(err.code, 422);
        let causes = err.details.clone().unwrap()["causes"].clone();
        let fields: Vec<&str> = causes
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["field"].as_str()).collect())
            .unwrap();
        assert!(fields.contains(&"metadata.name"), "{fields:?}");
        assert!(
            fields.contains(&"spec.template.spec.restartPolicy"),
            "{fields:?}"
        );
        assert!(
            err.message
                .starts_with("Job.batch \"Bad_Name\" is invalid: "),
            "{}",
            err.message
        );
    }

    #[test]
    fn long_job_name_fails_on_the_job_name_label() {
        let name = "a".repeat(64);
        let err = create(Kind::Job, job(&name)).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message.contains("spec.template.metadata.labels"),
            "{}",
            err.message
        );
    }

    #[test]
    fn label_rules() {
        let mut c = Causes::default();
        check_labels(
            &mut c,
            "metadata.labels",
            &json!({"ok/key": "v", "bad key": "v", "k": "-bad", "x/": "", "UPPER.example.com/a": "b"}),
        );
        let fields: Vec<String> = c.0.iter().map(|c| c.message.clone()).collect();
        assert_eq!(fields.len(), 4, "{fields:?}");
    }

    #[test]
    fn generate_name_and_pod_defaults() {
        let p = create(
            Kind::Pod,
            json!({"metadata": {"generateName": "job-"},
                   "spec": {"containers": [{"name": "c", "image": "img",
                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}),
        )
        .unwrap();
        assert_eq!(p["metadata"]["name"], "job-abcde");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["status"]["qosClass"], "Guaranteed");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
    }

    #[test]
    fn wrong_kind_is_400() {
        let err = create(Kind::Job, json!({"kind": "Pod", "metadata": {"name": "x"}})).unwrap_err();
        assert_eq!(err.code, 400);
    }

    #[test]
    fn update_keeps_server_fields_and_refuses_template_change() {
        let old = create(Kind::Job, job("j")).unwrap();
        let mut new = old.clone();
        new["metadata"]["uid"] = json!("other");
        new["metadata"]["labels"]["extra"] = json!("1");
        new["status"] = json!({"active": 5});
        assert!(prepare_update(Kind::Job, &old, &mut new, false).is_ok());
        assert_eq!(new["metadata"]["uid"], "uid-1");
        assert_eq!(new["status"], json!({}));

        let mut changed = old.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
        let err = prepare_update(Kind::Job, &old, &mut changed, false).unwrap_err();
        assert_eq!(err.code, 422);

        let mut status = json!({"status": {"active": 1}, "spec": {"backoffLimit": 99}});
        assert!(prepare_update(Kind::Job, &old, &mut status, true).is_ok());
        assert_eq!(status["status"]["active"], 1);
        assert_eq!(status["spec"]["backoffLimit"], 6);
    }

    #[test]
    fn latest_tag_rule() {
        assert!(image_tag_is_latest("busybox"));
        assert!(image_tag_is_latest("reg:5000/busybox"));
        assert!(image_tag_is_latest("busybox:latest"));
        assert!(!image_tag_is_latest("reg:5000/busybox:1.2"));
        assert!(!image_tag_is_latest("busybox@sha256:abc"));
    }
}
