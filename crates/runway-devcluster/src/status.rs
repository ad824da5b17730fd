//! API errors as the real API server sends them: `meta/v1 Status` objects.

use serde_json::{json, Value};

/// One field-level cause of a 422 Invalid (`details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...
    pub reason: &'static str,
    pub message: String,
    /// The field path, e.g. `metadata.name` or `spec.template.spec.restartPolicy`.
    pub field: String,
}

/// A failed request, rendered as a Status body with the matching HTTP code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds for `Retry-After` (429, and 503/504 where given).
    pub retry_after: Option<u32>,
}

/// Which resource an error is about, for messages and `details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// Plural name: `jobs`, `pods`, `events`, `namespaces`, ...
    pub plural: &'static str,
    /// API group: `batch`, or `""` for core.
    pub group: &'static str,
}

impl Resource {
    /// `jobs.batch` or `pods`, as messages spell the resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn details(&self, name: &str) -> Value {
        let mut d = json!({"name": name, "kind": self.plural});
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn not_found(resource: Resource, name: &str) -> ApiError {
        let mut e = ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified()),
        );
        e.details = Some(resource.details(name));
        e
    }

    /// A path the server does not serve.
    pub fn no_route() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn already_exists(resource: Resource, name: &str) -> ApiError {
        let mut e = ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified()),
        );
        e.details = Some(resource.details(name));
        e
    }

    pub fn conflict(resource: Resource, name: &str) -> ApiError {
        let mut e = ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                resource.qualified()
            ),
        );
        e.details = Some(resource.details(name));
        e
    }

    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// 415, listing what the endpoint takes: `accepted` is a comma-separated
    /// list of media types, as kube-apiserver words it.
    pub fn unsupported_media_type(content_type: &str, accepted: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {accepted}; got {content_type:?}"),
        )
    }

    /// 422 with field causes: `Job.batch "N" is invalid: field: message, ...`.
    pub fn invalid(kind: &str, resource: Resource, name: &str, causes: Vec<Cause>) -> ApiError {
        let summary: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let kind_group = if resource.group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{}", resource.group)
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{kind_group} \"{name}\" is invalid: {}", summary.join(", ")),
        );
        let mut details = resource.details(name);
        details["kind"] = json!(kind);
        details["causes"] = Value::Array(
            causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect(),
        );
        e.details = Some(details);
        e
    }

    pub fn too_many_requests(retry_after: u32) -> ApiError {
        let mut e = ApiError::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        );
        e.details = Some(json!({"retryAfterSeconds": retry_after}));
        e.retry_after = Some(retry_after);
        e
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// 504 as apimachinery's `NewTimeoutError` words it, asking the client
    /// to retry after `retry_after` seconds.
    pub fn timeout(message: &str, retry_after: u32) -> ApiError {
        let mut e = ApiError::new(504, "Timeout", format!("Timeout: {message}"));
        e.details = Some(json!({"retryAfterSeconds": retry_after}));
        e.retry_after = Some(retry_after);
        e
    }

    /// A read from a resourceVersion the cluster has not reached: the real
    /// API server waits up to 3 s for its cache and then answers this
    /// (storage's `NewTooLargeResourceVersionError`); the dev cluster's store
    /// is never behind, so it answers at once.
    pub fn too_large_resource_version(requested: u64, current: u64) -> ApiError {
        let mut e = ApiError::timeout(
            &format!("Too large resource version: {requested}, current: {current}"),
            1,
        );
        if let Some(details) = &mut e.details {
            details["causes"] = json!([{"reason": "ResourceVersionTooLarge",
                                        "message": "Too large resource version"}]);
        }
        e
    }

    /// The Status body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}
