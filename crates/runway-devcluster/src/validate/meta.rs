//! The rules every object's metadata follows, and the causes of a 422:
//! RFC 1123 names, label and annotation keys and values, finalizers.

use serde_json::{json, Value};

use super::Kind;
use crate::status::{ApiError, Cause};

pub(super) const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case \
    alphanumeric characters or '-', and must start and end with an alphanumeric character \
    (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
pub(super) const DNS1123_SUBDOMAIN_MSG: &str =
    "a lowercase RFC 1123 subdomain must consist of lower case \
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
pub(super) struct Causes(pub(super) Vec<Cause>);

impl Causes {
    pub(super) fn invalid(&mut self, field: impl Into<String>, value: &Value, detail: &str) {
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

    pub(super) fn required(&mut self, field: impl Into<String>, detail: &str) {
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

    pub(super) fn not_supported(
        &mut self,
        field: impl Into<String>,
        value: &Value,
        supported: &[&str],
    ) {
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

    pub(super) fn forbidden(&mut self, field: impl Into<String>, detail: &str) {
        self.0.push(Cause {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
            field: field.into(),
        });
    }

    pub(super) fn duplicate(&mut self, field: impl Into<String>, value: &Value) {
        self.0.push(Cause {
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {value}"),
            field: field.into(),
        });
    }

    pub(super) fn finish(self, kind: Kind, name: &str) -> Result<(), ApiError> {
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

pub(super) fn is_dns1123_label(s: &str) -> bool {
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
pub(super) fn is_dns1123_subdomain(s: &str) -> bool {
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

pub(super) fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Label and annotation keys: `[prefix/]name`.
pub(super) fn check_qualified_key(c: &mut Causes, field: &str, key: &str) {
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

pub(super) fn check_labels(c: &mut Causes, field: &str, labels: &Value) {
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

pub(super) fn check_annotations(c: &mut Causes, field: &str, annotations: &Value) {
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
pub(super) fn check_meta(c: &mut Causes, prefix: &str, meta: &Value) {
    check_labels(c, &format!("{prefix}.labels"), &meta["labels"]);
    check_annotations(c, &format!("{prefix}.annotations"), &meta["annotations"]);
}

pub(super) fn check_object_name(c: &mut Causes, kind: Kind, name: &str) {
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

pub(super) fn check_finalizers(c: &mut Causes, finalizers: &Value) {
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

pub(super) fn check_non_negative(c: &mut Causes, field: &str, v: &Value, strictly_positive: bool) {
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
