//! Celery's remote control as kombu's `Mailbox` speaks it (celery 5.7):
//! requests broadcast on the `celery.pidbox` fanout, filtered by
//! destination or pattern, and replies `{nodename: value}` published to
//! `reply.celery.pidbox` with the request's ticket. Pure: the request and
//! reply texts, and the reply shapes of `celery/worker/control.py`
//! (`shapes`); the worker's I/O answers them.

pub mod shapes;

use serde_json::{json, Map, Value};

/// The request exchange (fanout) and the reply exchange (direct).
pub const PIDBOX_EXCHANGE: &str = "celery.pidbox";
pub const REPLY_EXCHANGE: &str = "reply.celery.pidbox";
/// A worker's mailbox queue lives this long unused, and a request this long
/// in it (`control_queue_expires`, `control_queue_ttl`), in milliseconds.
pub const QUEUE_EXPIRES_MS: i64 = 10_000;
pub const MESSAGE_TTL_MS: i64 = 300_000;

/// A worker's mailbox queue: `<nodename>.celery.pidbox`.
pub fn queue_name(hostname: &str) -> String {
    format!("{hostname}.{PIDBOX_EXCHANGE}")
}

/// Where a reply goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub exchange: String,
    pub routing_key: String,
}

/// One control request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub arguments: Map<String, Value>,
    pub destination: Option<Vec<String>>,
    pub pattern: Option<String>,
    pub matcher: Option<String>,
    /// With `reply_to`, present only when the caller waits for replies.
    pub ticket: Option<String>,
    pub reply_to: Option<ReplyTo>,
}

/// A request that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("the request has no \"method\"")]
    NoMethod,
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

impl Request {
    pub fn parse(body: &[u8]) -> Result<Request, ControlError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| ControlError::NotJson(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ControlError::NotJson("expected an object".into()))?;
        let method = text(obj.get("method")).ok_or(ControlError::NoMethod)?;
        let destination = match obj.get("destination") {
            Some(Value::Array(items)) => Some(items.iter().filter_map(|i| text(Some(i))).collect()),
            Some(Value::String(one)) => Some(vec![one.clone()]),
            _ => None,
        };
        let reply_to = obj.get("reply_to").and_then(|r| {
            Some(ReplyTo {
                exchange: text(r.get("exchange"))?,
                routing_key: text(r.get("routing_key"))?,
            })
        });
        Ok(Request {
            method,
            arguments: obj
                .get("arguments")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            destination,
            pattern: text(obj.get("pattern")),
            matcher: text(obj.get("matcher")),
            ticket: text(obj.get("ticket")),
            reply_to,
        })
    }

    /// Whether `hostname` runs this request (kombu's `Node.handle_message`):
    /// a non-empty destination names it, else the pattern matches, else all.
    pub fn is_for(&self, hostname: &str) -> bool {
        match (&self.destination, &self.pattern) {
            (Some(d), _) if !d.is_empty() => d.iter().any(|n| n == hostname),
            (_, Some(p)) => match self.matcher.as_deref().unwrap_or("glob") {
                "pcre" => {
                    regex::Regex::new(&format!("^(?:{p})")).is_ok_and(|r| r.is_match(hostname))
                }
                _ => glob_match(p, hostname),
            },
            _ => true,
        }
    }

    /// The reply body: `{hostname: value}`.
    pub fn reply_body(hostname: &str, value: Value) -> Vec<u8> {
        let mut m = Map::new();
        m.insert(hostname.to_owned(), value);
        Value::Object(m).to_string().into_bytes()
    }

    pub fn arg(&self, name: &str) -> Option<&Value> {
        self.arguments.get(name).filter(|v| !v.is_null())
    }
}

/// `fnmatch.fnmatch` on POSIX: `*`, `?`, `[seq]` and `[!seq]`, whole string.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                let class: String = chars.by_ref().take_while(|c| *c != ']').collect();
                let class = class
                    .strip_prefix('!')
                    .map_or(class.clone(), |r| format!("^{r}"));
                re.push('[');
                re.push_str(&class.replace('\\', "\\\\"));
                re.push(']');
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(name))
}

/// Celery's `ok(value)`.
pub fn ok(value: impl Into<Value>) -> Value {
    json!({"ok": value.into()})
}

/// Celery's `nok(message)`, also the form of any handler's exception.
pub fn error(message: impl Into<String>) -> Value {
    json!({"error": message.into()})
}

/// What a Celery worker answers for a method it has no handler for.
pub fn unknown_method(method: &str) -> Value {
    error(format!("KeyError({})", py_repr(method)))
}

/// Python's `repr()` of a str.
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The ids and options of `revoke` and `terminate`, in every form seen on
/// the wire: `task_id` one id or a list, `terminate` absent, bool or 0/1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoke {
    pub task_ids: Vec<String>,
    pub terminate: bool,
    pub signal: String,
}

impl Revoke {
    pub fn from_request(req: &Request) -> Result<Revoke, String> {
        let task_ids = match req.arg("task_id") {
            Some(Value::String(id)) => vec![id.clone()],
            Some(Value::Array(ids)) => ids.iter().filter_map(|i| text(Some(i))).collect(),
            _ => {
                return Err(format!(
                    "TypeError(\"{}() missing 1 required positional argument: 'task_id'\")",
                    req.method
                ))
            }
        };
        let terminate = req.method == "terminate"
            || match req.arg("terminate") {
                Some(Value::Bool(b)) => *b,
                Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
                _ => false,
            };
        let signal = text(req.arg("signal")).unwrap_or_else(|| "SIGTERM".to_owned());
        Ok(Revoke {
            task_ids,
            terminate,
            signal,
        })
    }
}

/// `tasks {'a', 'b'} flagged as revoked` (a Python set's repr).
pub fn revoked_text(ids: &[String]) -> String {
    let set: Vec<String> = ids.iter().map(|i| py_repr(i)).collect();
    format!("tasks {{{}}} flagged as revoked", set.join(", "))
}

/// `terminate: a, b`, or `terminate: tasks unknown` when none runs here.
pub fn terminated_text(ids: &[String]) -> String {
    if ids.is_empty() {
        "terminate: tasks unknown".to_owned()
    } else {
        format!("terminate: {}", ids.join(", "))
    }
}

#[cfg(test)]
mod tests;
