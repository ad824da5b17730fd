//! Label and field selectors, parsed and applied as kube-apiserver does.
//!
//! A selector is parsed once per request, then tested against every object of
//! a list and every watch event, so matching reads the object in place and
//! never allocates.

use std::fmt;

use serde_json::{Map, Value};

use super::status::ApiError;

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
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
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

const QUALIFIED_NAME_MAX: usize = 63;
const SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;

const QUALIFIED_NAME_REGEX_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
     and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
     '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const SUBDOMAIN_REGEX_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
     (e.g. 'example.com', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_VALUE_REGEX_MSG: &str = "a valid label must be an empty string or consist of \
     alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
     character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
     '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

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
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
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
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        // A label whose value is not a string (never valid, but possible in
        // stored JSON) is present yet equal to no value.
        let label = labels.and_then(|l| l.get(self.key.as_str()));
        let Some(label) = label else {
            return matches!(self.op, Op::NotEquals(_) | Op::NotIn(_) | Op::DoesNotExist);
        };
        let text = label.as_str();
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

// === Label selector syntax ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    End,
    /// Also `in` and `notin`: whether those are operators depends on position.
    Ident(&'a str),
    OpenPar,
    ClosePar,
    Comma,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
}

impl<'a> Token<'a> {
    fn text(self) -> &'a str {
        match self {
            Token::End => "",
            Token::Ident(s) => s,
            Token::OpenPar => "(",
            Token::ClosePar => ")",
            Token::Comma => ",",
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Greater => ">",
            Token::Less => "<",
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn tokenize(s: &str) -> Vec<Token<'_>> {
    let bytes = s.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if is_space(b) {
            i += 1;
            continue;
        }
        let two = bytes.get(i + 1) == Some(&b'=');
        let (token, len) = match b {
            b'=' if two => (Token::DoubleEquals, 2),
            b'!' if two => (Token::NotEquals, 2),
            b'=' => (Token::Equals, 1),
            b'!' => (Token::Bang, 1),
            b'(' => (Token::OpenPar, 1),
            b')' => (Token::ClosePar, 1),
            b',' => (Token::Comma, 1),
            b'>' => (Token::Greater, 1),
            b'<' => (Token::Less, 1),
            _ => {
                let len = bytes[i..]
                    .iter()
                    .position(|&c| is_space(c) || is_special(c))
                    .unwrap_or(bytes.len() - i);
                // Identifiers end at ASCII bytes, so both ends are char boundaries.
                (Token::Ident(&s[i..i + len]), len)
            }
        };
        tokens.push(token);
        i += len;
    }
    tokens
}

/// A recursive-descent parser following apimachinery's `labels.Parser`, so
/// that the same inputs are accepted and the same errors named.
struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    pos: usize,
}

type Syntax<T> = Result<T, String>;

impl<'a> Parser<'a> {
    fn peek(&self) -> Token<'a> {
        self.tokens.get(self.pos).copied().unwrap_or(Token::End)
    }

    fn consume(&mut self) -> Token<'a> {
        let token = self.peek();
        self.pos += 1;
        token
    }

    fn selector(&mut self) -> Syntax<Vec<Requirement>> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::Ident(_) | Token::Bang => {
                    requirements.push(self.requirement()?);
                    match self.consume() {
                        Token::End => return Ok(requirements),
                        Token::Comma => match self.peek() {
                            Token::Ident(_) | Token::Bang => {}
                            t => {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.text()
                                ))
                            }
                        },
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.text()
                            ))
                        }
                    }
                }
                Token::End => return Ok(requirements),
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.text()
                    ))
                }
            }
        }
    }

    fn requirement(&mut self) -> Syntax<Requirement> {
        let negated = self.peek() == Token::Bang;
        if negated {
            self.consume();
        }
        let key = match self.consume() {
            Token::Ident(key) => key,
            t => return Err(format!("found '{}', expected: identifier", t.text())),
        };
        check_key(key).map_err(|e| e.message)?;
        let requirement = |op| Requirement {
            key: key.to_owned(),
            op,
        };
        // What follows `!k` is left to the caller, which names it.
        if negated {
            return Ok(requirement(Op::DoesNotExist));
        }
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok(requirement(Op::Exists));
        }
        let op = match self.consume() {
            Token::Ident("in") => Op::In(self.values()?),
            Token::Ident("notin") => Op::NotIn(self.values()?),
            Token::Equals => Op::Equals(self.exact_value()?.to_owned()),
            Token::DoubleEquals => Op::DoubleEquals(self.exact_value()?.to_owned()),
            Token::NotEquals => Op::NotEquals(self.exact_value()?.to_owned()),
            t @ (Token::Greater | Token::Less) => {
                let text = self.exact_value()?;
                let bound = text.parse().map_err(|_| {
                    format!(
                        "values[0]: Invalid value: {text:?}: for 'Gt', 'Lt' operators, \
                         the value must be an integer"
                    )
                })?;
                if t == Token::Greater {
                    Op::GreaterThan(text.to_owned(), bound)
                } else {
                    Op::LessThan(text.to_owned(), bound)
                }
            }
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.text()
                ))
            }
        };
        let values: &[String] = match &op {
            Op::In(vs) | Op::NotIn(vs) => vs,
            Op::Equals(v) | Op::DoubleEquals(v) | Op::NotEquals(v) => std::slice::from_ref(v),
            Op::GreaterThan(v, _) | Op::LessThan(v, _) => std::slice::from_ref(v),
            Op::Exists | Op::DoesNotExist => &[],
        };
        for (i, v) in values.iter().enumerate() {
            check_value(key, i, v).map_err(|e| e.message)?;
        }
        Ok(requirement(op))
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; nothing there means `""`.
    fn exact_value(&mut self) -> Syntax<&'a str> {
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok("");
        }
        match self.consume() {
            Token::Ident(v) => Ok(v),
            t => Err(format!("found '{}', expected: identifier", t.text())),
        }
    }

    /// `(a,b,...)`, sorted and deduplicated like Go's string set. Empty
    /// entries (`()`, `(,a)`, `(a,)`, `(a,,b)`) stand for the empty value.
    fn values(&mut self) -> Syntax<Vec<String>> {
        match self.consume() {
            Token::OpenPar => {}
            t => return Err(format!("found '{}', expected: '('", t.text())),
        }
        let mut set: Vec<&str> = Vec::new();
        match self.peek() {
            Token::ClosePar => {
                self.consume();
                set.push("");
            }
            Token::Ident(_) | Token::Comma => self.identifiers(&mut set)?,
            t => {
                return Err(format!(
                    "found '{}', expected: ',', ')' or identifier",
                    t.text()
                ))
            }
        }
        set.sort_unstable();
        set.dedup();
        Ok(set.into_iter().map(str::to_owned).collect())
    }

    /// The list inside `(...)`, through the closing parenthesis.
    fn identifiers(&mut self, set: &mut Vec<&'a str>) -> Syntax<()> {
        loop {
            match self.consume() {
                Token::Ident(v) => {
                    set.push(v);
                    match self.peek() {
                        Token::Comma => {}
                        Token::ClosePar => {
                            self.consume();
                            return Ok(());
                        }
                        t => return Err(format!("found '{}', expected: ',' or ')'", t.text())),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.push("");
                    }
                    match self.peek() {
                        Token::ClosePar => {
                            self.consume();
                            set.push("");
                            return Ok(());
                        }
                        Token::Comma => set.push(""),
                        _ => {}
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        t.text()
                    ))
                }
            }
        }
    }
}

// === Label key and value validation ===

/// A label key: `[prefix/]name`, as `validation.IsQualifiedName` checks it.
fn check_key(key: &str) -> Result<(), ApiError> {
    let mut errors: Vec<String> = Vec::new();
    let mut parts = key.split('/');
    let (prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, _) => (None, name),
        (Some(prefix), Some(name), None) => (Some(prefix), name),
        _ => {
            errors.push(format!(
                "a qualified name {QUALIFIED_NAME_REGEX_MSG} with an optional DNS subdomain \
                 prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return Err(invalid_key(key, &errors));
        }
    };
    match prefix {
        Some("") => errors.push("prefix part must be non-empty".to_owned()),
        Some(prefix) => {
            if prefix.len() > SUBDOMAIN_MAX {
                errors.push(format!(
                    "prefix part must be no more than {SUBDOMAIN_MAX} characters"
                ));
            }
            if !is_dns1123_subdomain(prefix) {
                errors.push(format!("prefix part {SUBDOMAIN_REGEX_MSG}"));
            }
        }
        None => {}
    }
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errors.push(format!(
            "name part must be no more than {QUALIFIED_NAME_MAX} characters"
        ));
    }
    if !is_qualified_name_part(name) {
        errors.push(format!("name part {QUALIFIED_NAME_REGEX_MSG}"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid_key(key, &errors))
    }
}

fn invalid_key(key: &str, errors: &[String]) -> ApiError {
    ApiError::bad_request(format!(
        "key: Invalid value: {key:?}: {}",
        errors.join("; ")
    ))
}

/// A label value, as `validation.IsValidLabelValue` checks it; `index` is
/// its place among the requirement's values, for the message.
fn check_value(key: &str, index: usize, value: &str) -> Result<(), ApiError> {
    let mut errors: Vec<String> = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        errors.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errors.push(LABEL_VALUE_REGEX_MSG.to_owned());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "values[{index}][{key}]: Invalid value: {value:?}: {}",
            errors.join("; ")
        )))
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
fn is_dns1123_subdomain(s: &str) -> bool {
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.split('.').all(|label| {
        let b = label.as_bytes();
        match (b.first(), b.last()) {
            (Some(first), Some(last)) => {
                alnum(first) && alnum(last) && b.iter().all(|c| alnum(c) || *c == b'-')
            }
            _ => false,
        }
    })
}

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

#[cfg(test)]
mod tests;
