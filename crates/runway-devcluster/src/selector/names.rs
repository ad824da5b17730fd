//! Label keys and values, checked as `validation.IsQualifiedName` and
//! `validation.IsValidLabelValue` check them, with their messages.

use crate::status::ApiError;

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

/// A label key: `[prefix/]name`, as `validation.IsQualifiedName` checks it.
pub(super) fn check_key(key: &str) -> Result<(), ApiError> {
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
pub(super) fn check_value(key: &str, index: usize, value: &str) -> Result<(), ApiError> {
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
