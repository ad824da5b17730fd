//! Decoding a Celery task message (protocol v2, JSON) from what the broker
//! delivered: its content type and encoding, its headers and its body.

use serde_json::{Map, Value};
use thiserror::Error;

/// Why a delivery is not a task Runway can run. Every case gets a FAILURE
/// result that says so (when the task id is known), never a crash loop.
#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    #[error("content type {content_type:?} is refused: Runway workers accept only application/json task messages (set task_serializer='json' on the publisher; pickle, yaml and msgpack are not accepted)")]
    ContentType { content_type: String },
    #[error("content encoding {encoding:?} is not supported; JSON task messages are utf-8")]
    Encoding { encoding: String },
    #[error("the message has no `task` header: it is not Celery protocol v2 (Celery 3 protocol v1 messages are not supported; publish with task_protocol=2)")]
    NotProtocolV2,
    #[error("header {header}: {message}")]
    Header {
        header: &'static str,
        message: String,
    },
    #[error("body: {0}")]
    Body(String),
    #[error("the body is {size} bytes, more than the {limit} this worker accepts")]
    TooLarge { size: usize, limit: usize },
}

/// A decoded task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessage {
    pub id: String,
    pub task: String,
    pub root_id: Option<String>,
    pub parent_id: Option<String>,
    pub group: Option<String>,
    pub retries: u64,
    pub eta: Option<String>,
    pub expires: Option<String>,
    /// (hard, soft) time limits in seconds.
    pub time_limit: (Option<f64>, Option<f64>),
    pub ignore_result: bool,
    pub origin: Option<String>,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    /// callbacks, errbacks, chain, chord.
    pub embed: Map<String, Value>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub priority: Option<u8>,
}

/// An `eta` or `expires` header as a point in time. Celery writes
/// `datetime.isoformat()`: with an offset for an aware datetime, without one
/// (UTC, Celery's default timezone) for a naive one.
pub fn header_time(text: &str) -> Option<jiff::Timestamp> {
    text.parse::<jiff::Timestamp>().ok().or_else(|| {
        text.parse::<jiff::civil::DateTime>()
            .ok()
            .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
    })
}

fn header_str(
    headers: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, DecodeError> {
    match headers.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(DecodeError::Header {
            header: name,
            message: format!("expected a string or null, got {other}"),
        }),
    }
}

fn limit(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

/// The task id a delivery claims, for a FAILURE result when it cannot be
/// decoded otherwise (the `id` header, else the correlation id).
pub fn claimed_id(headers: &Map<String, Value>, correlation_id: Option<&str>) -> Option<String> {
    headers
        .get("id")
        .and_then(Value::as_str)
        .or(correlation_id)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Properties of the AMQP delivery that the decoder reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Properties<'a> {
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub reply_to: Option<&'a str>,
    pub priority: Option<u8>,
}

/// Decodes one delivery. `max_body` bounds the body size.
pub fn decode(
    props: &Properties<'_>,
    headers: &Map<String, Value>,
    body: &[u8],
    max_body: usize,
) -> Result<TaskMessage, DecodeError> {
    let content_type = props.content_type.unwrap_or("application/json");
    if content_type != "application/json" {
        return Err(DecodeError::ContentType {
            content_type: content_type.to_owned(),
        });
    }
    match props
        .content_encoding
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("utf-8" | "utf8") => {}
        Some(other) => {
            return Err(DecodeError::Encoding {
                encoding: other.to_owned(),
            })
        }
    }
    if body.len() > max_body {
        return Err(DecodeError::TooLarge {
            size: body.len(),
            limit: max_body,
        });
    }
    let task = header_str(headers, "task")?.ok_or(DecodeError::NotProtocolV2)?;
    let id = header_str(headers, "id")?
        .filter(|s| !s.is_empty())
        .ok_or(DecodeError::Header {
            header: "id",
            message: "missing: every task message carries its task id".into(),
        })?;
    let text =
        std::str::from_utf8(body).map_err(|e| DecodeError::Body(format!("not UTF-8: {e}")))?;
    let parsed: Value = serde_json::from_str(text)
        .map_err(|e| DecodeError::Body(format!("not valid JSON: {e}")))?;
    let Value::Array(mut parts) = parsed else {
        return Err(DecodeError::Body(
            "expected the protocol v2 body [args, kwargs, embed]".into(),
        ));
    };
    if parts.len() != 3 {
        return Err(DecodeError::Body(format!(
            "expected [args, kwargs, embed], got a list of {} items",
            parts.len()
        )));
    }
    let embed = match parts.pop() {
        Some(Value::Object(m)) => m,
        Some(Value::Null) => Map::new(),
        _ => {
            return Err(DecodeError::Body(
                "embed (the third item) must be an object".into(),
            ))
        }
    };
    let kwargs = match parts.pop() {
        Some(Value::Object(m)) => m,
        _ => {
            return Err(DecodeError::Body(
                "kwargs (the second item) must be an object".into(),
            ))
        }
    };
    let args = match parts.pop() {
        Some(Value::Array(a)) => a,
        _ => {
            return Err(DecodeError::Body(
                "args (the first item) must be a list".into(),
            ))
        }
    };
    let retries = match headers.get("retries") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or(DecodeError::Header {
            header: "retries",
            message: format!("expected a whole number, got {v}"),
        })?,
    };
    let time_limit = match headers.get("timelimit") {
        Some(Value::Array(l)) if l.len() == 2 => (limit(l.first()), limit(l.get(1))),
        None | Some(Value::Null) => (None, None),
        Some(other) => {
            return Err(DecodeError::Header {
                header: "timelimit",
                message: format!("expected [hard, soft], got {other}"),
            })
        }
    };
    Ok(TaskMessage {
        id,
        task,
        root_id: header_str(headers, "root_id")?,
        parent_id: header_str(headers, "parent_id")?,
        group: header_str(headers, "group")?,
        retries,
        eta: header_str(headers, "eta")?,
        expires: header_str(headers, "expires")?,
        time_limit,
        ignore_result: headers
            .get("ignore_result")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        origin: header_str(headers, "origin")?,
        args,
        kwargs,
        embed,
        correlation_id: props.correlation_id.map(str::to_owned),
        reply_to: props.reply_to.filter(|s| !s.is_empty()).map(str::to_owned),
        priority: props.priority,
    })
}

#[cfg(test)]
mod tests;

/// A header value of a task message (an AMQP field-table value).
#[derive(Debug, Clone, PartialEq)]
pub enum Header {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Header>),
    /// Always empty here (`stamps`).
    EmptyDict,
}

impl Header {
    /// The JSON spelling (the Redis transport's envelope carries headers as JSON).
    pub fn to_json(&self) -> Value {
        match self {
            Header::Null => Value::Null,
            Header::Bool(b) => Value::Bool(*b),
            Header::Int(n) => Value::from(*n),
            Header::Str(s) => Value::String(s.clone()),
            Header::List(items) => Value::Array(items.iter().map(Header::to_json).collect()),
            Header::EmptyDict => Value::Object(Map::new()),
        }
    }
}

/// A task message ready for the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// In Celery's order.
    pub headers: Vec<(&'static str, Header)>,
    pub correlation_id: String,
    pub reply_to: String,
    pub priority: u8,
    pub content_type: &'static str,
    pub content_encoding: &'static str,
    /// Persistent (delivery mode 2).
    pub persistent: bool,
    pub body: String,
}

/// What to publish: a task with keyword arguments only, as Dagster sends
/// `execute_step_k8s_job`.
#[derive(Debug, Clone)]
pub struct NewTask<'a> {
    pub id: &'a str,
    pub task: &'a str,
    /// A `PyVal::Dict`, in the order the arguments are given.
    pub kwargs: &'a super::pyval::PyVal,
    /// `gen<pid>@<hostname>`.
    pub origin: &'a str,
    pub reply_to: &'a str,
    pub priority: u8,
}

/// Encodes a task message as Celery 5.7's `as_task_v2` and kombu's JSON
/// serializer do.
pub fn encode(t: &NewTask<'_>) -> Encoded {
    use super::pyval::saferepr;
    let s = |v: &str| Header::Str(v.to_owned());
    let headers = vec![
        ("lang", s("py")),
        ("task", s(t.task)),
        ("id", s(t.id)),
        ("shadow", Header::Null),
        ("eta", Header::Null),
        ("expires", Header::Null),
        ("group", Header::Null),
        ("group_index", Header::Null),
        ("retries", Header::Int(0)),
        ("timelimit", Header::List(vec![Header::Null, Header::Null])),
        ("root_id", s(t.id)),
        ("parent_id", Header::Null),
        ("argsrepr", s("()")),
        ("kwargsrepr", Header::Str(saferepr(t.kwargs, 1024, 3))),
        ("origin", s(t.origin)),
        ("ignore_result", Header::Bool(false)),
        ("replaced_task_nesting", Header::Int(0)),
        ("stamped_headers", Header::Null),
        ("stamps", Header::EmptyDict),
    ];
    let body = format!(
        "[[], {}, {{\"callbacks\": null, \"errbacks\": null, \"chain\": null, \"chord\": null}}]",
        t.kwargs.dumps()
    );
    Encoded {
        headers,
        correlation_id: t.id.to_owned(),
        reply_to: t.reply_to.to_owned(),
        priority: t.priority.min(10),
        content_type: "application/json",
        content_encoding: "utf-8",
        persistent: true,
        body,
    }
}
