//! Field selectors: `field=value` and `field!=value` terms over the field
//! labels each kind supports, as kube-apiserver parses and applies them.

use std::fmt;

use serde_json::Value;

use crate::status::ApiError;

/// The resource a field selector is applied to: each has its own field labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Job,
    Pod,
    Event,
    Namespace,
    ConfigMap,
    Secret,
    ServiceAccount,
}

/// A parsed `fieldSelector`: `field=value` and `field!=value` terms that must all hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// In the order of the sorted terms, as the real parser keeps them.
    requirements: Vec<FieldRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    field: Field,
    negated: bool,
    value: String,
    /// For a count field: the count `value` spells, if it is the canonical
    /// decimal form (`strconv.Itoa`) of one, so matching compares integers
    /// instead of formatting the object's count.
    count: Option<i64>,
}

/// A supported field label and how to read its value out of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    label: &'static str,
    read: Read,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// A string at this path; missing reads as `""`.
    Str(&'static [&'static str]),
    /// An integer at this path; missing reads as `0`.
    Count(&'static [&'static str]),
    /// A boolean at this path, as `true`/`false`; missing reads as `false`.
    Flag(&'static [&'static str]),
    /// `status.podIP`, else the first of `status.podIPs`.
    PodIp,
    /// `source.component`, else `reportingComponent`.
    EventSource,
}

const COMMON_FIELDS: &[(&str, Read)] = &[
    ("metadata.name", Read::Str(&["metadata", "name"])),
    ("metadata.namespace", Read::Str(&["metadata", "namespace"])),
];

const POD_FIELDS: &[(&str, Read)] = &[
    ("spec.nodeName", Read::Str(&["spec", "nodeName"])),
    ("spec.restartPolicy", Read::Str(&["spec", "restartPolicy"])),
    ("spec.schedulerName", Read::Str(&["spec", "schedulerName"])),
    (
        "spec.serviceAccountName",
        Read::Str(&["spec", "serviceAccountName"]),
    ),
    ("spec.hostNetwork", Read::Flag(&["spec", "hostNetwork"])),
    ("status.phase", Read::Str(&["status", "phase"])),
    ("status.podIP", Read::PodIp),
    (
        "status.nominatedNodeName",
        Read::Str(&["status", "nominatedNodeName"]),
    ),
];

const JOB_FIELDS: &[(&str, Read)] = &[("status.successful", Read::Count(&["status", "succeeded"]))];

const EVENT_FIELDS: &[(&str, Read)] = &[
    (
        "involvedObject.kind",
        Read::Str(&["involvedObject", "kind"]),
    ),
    (
        "involvedObject.namespace",
        Read::Str(&["involvedObject", "namespace"]),
    ),
    (
        "involvedObject.name",
        Read::Str(&["involvedObject", "name"]),
    ),
    ("involvedObject.uid", Read::Str(&["involvedObject", "uid"])),
    (
        "involvedObject.apiVersion",
        Read::Str(&["involvedObject", "apiVersion"]),
    ),
    (
        "involvedObject.resourceVersion",
        Read::Str(&["involvedObject", "resourceVersion"]),
    ),
    (
        "involvedObject.fieldPath",
        Read::Str(&["involvedObject", "fieldPath"]),
    ),
    ("reason", Read::Str(&["reason"])),
    ("reportingComponent", Read::Str(&["reportingComponent"])),
    ("source", Read::EventSource),
    ("type", Read::Str(&["type"])),
];

const NAMESPACE_FIELDS: &[(&str, Read)] = &[("status.phase", Read::Str(&["status", "phase"]))];

const SECRET_FIELDS: &[(&str, Read)] = &[("type", Read::Str(&["type"]))];

// === impl FieldSelector ===

impl FieldSelector {
    /// Parses a `fieldSelector` query value for a resource of `kind`; the
    /// empty string selects everything. Values are unescaped (`\,`, `\=`,
    /// `\\`); field labels are taken verbatim, without trimming, as the
    /// real server takes them.
    pub fn parse(s: &str, kind: FieldKind) -> Result<FieldSelector, ApiError> {
        let mut terms = split_terms(s);
        // Sorting first decides which bad term an error names, as upstream.
        terms.sort_unstable();
        let mut parsed = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((label, negated, raw)) = split_term(term) else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            parsed.push((
                label,
                negated,
                unescape(raw).map_err(ApiError::bad_request)?,
            ));
        }
        // Field labels are checked only once the whole string has parsed:
        // the server converts them after decoding the query.
        let mut requirements = Vec::with_capacity(parsed.len());
        for (label, negated, value) in parsed {
            let field = field(kind, label).ok_or_else(|| {
                ApiError::bad_request(format!("field label not supported: {label}"))
            })?;
            let count = match field.read {
                Read::Count(_) => value.parse::<i64>().ok().filter(|n| n.to_string() == value),
                _ => None,
            };
            requirements.push(FieldRequirement {
                field,
                negated,
                value,
                count,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether every object matches.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the object satisfies every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| r.matches(obj))
    }

    /// The name a `metadata.name=` term pins, letting the store look one key up.
    pub fn exact_name(&self) -> Option<&str> {
        self.exact("metadata.name")
    }

    /// The namespace a `metadata.namespace=` term pins.
    pub fn exact_namespace(&self) -> Option<&str> {
        self.exact("metadata.namespace")
    }

    fn exact(&self, label: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| !r.negated && r.field.label == label)
            .map(|r| r.value.as_str())
    }
}

/// The field a label names for `kind`. `spec.host` is what old clients send
/// for `spec.nodeName`.
fn field(kind: FieldKind, label: &str) -> Option<Field> {
    let label = if kind == FieldKind::Pod && label == "spec.host" {
        "spec.nodeName"
    } else {
        label
    };
    let specific: &[(&'static str, Read)] = match kind {
        FieldKind::Pod => POD_FIELDS,
        FieldKind::Job => JOB_FIELDS,
        FieldKind::Event => EVENT_FIELDS,
        FieldKind::Namespace => NAMESPACE_FIELDS,
        FieldKind::Secret => SECRET_FIELDS,
        FieldKind::ConfigMap | FieldKind::ServiceAccount => &[],
    };
    COMMON_FIELDS
        .iter()
        .chain(specific)
        .find(|(l, _)| *l == label)
        .map(|&(label, read)| Field { label, read })
}

/// Splits on commas that are not escaped by a backslash.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// `(label, negated, raw value)` at the first `!=`, `==` or `=`; the label
/// cannot be escaped, so the first operator found is the split.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let (label, rest) = term.split_at(i);
        if let Some(raw) = rest.strip_prefix("!=") {
            Some((label, true, raw))
        } else if let Some(raw) = rest.strip_prefix("==") {
            Some((label, false, raw))
        } else {
            rest.strip_prefix('=').map(|raw| (label, false, raw))
        }
    })
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{e}"
                    ))
                }
                None => return Err("invalid field selector: invalid escape sequence: \\".into()),
            },
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {c}"
                ))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(r.field.label)?;
            f.write_str(if r.negated { "!=" } else { "=" })?;
            for c in r.value.chars() {
                if matches!(c, '\\' | ',' | '=') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

// === impl FieldRequirement ===

impl FieldRequirement {
    fn matches(&self, obj: &Value) -> bool {
        let equal = match self.field.read {
            Read::Str(path) => str_at(obj, path) == self.value,
            Read::Count(path) => {
                let n = at(obj, path).and_then(Value::as_i64).unwrap_or(0);
                self.count == Some(n)
            }
            Read::Flag(path) => {
                let flag = at(obj, path).and_then(Value::as_bool).unwrap_or(false);
                self.value == if flag { "true" } else { "false" }
            }
            Read::PodIp => {
                let ip = str_at(obj, &["status", "podIP"]);
                let ip = if ip.is_empty() {
                    at(obj, &["status", "podIPs"])
                        .and_then(|ips| ips.get(0))
                        .and_then(|first| first.get("ip"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                } else {
                    ip
                };
                ip == self.value
            }
            Read::EventSource => {
                let source = str_at(obj, &["source", "component"]);
                let source = if source.is_empty() {
                    str_at(obj, &["reportingComponent"])
                } else {
                    source
                };
                source == self.value
            }
        };
        equal != self.negated
    }
}

fn at<'v>(obj: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(obj, |v, key| v.get(key))
}

/// Missing and non-string values read as `""`, like Go's zero value.
fn str_at<'v>(obj: &'v Value, path: &[&str]) -> &'v str {
    at(obj, path).and_then(Value::as_str).unwrap_or("")
}
