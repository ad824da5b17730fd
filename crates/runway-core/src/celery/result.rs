//! Result metadata, byte for byte as Celery 5.7's key-value and `rpc://`
//! backends write it: `json.dumps` of the meta dict in Celery's key order
//! (status, result, traceback, children, date_done, task_id), with Python's
//! separators and ASCII escaping, so `AsyncResult.get()` reads it back.

use crate::dagster::pyfmt::{dumps_sorted, write_str};

/// The states Runway stores: STARTED while a step runs, then one of the
/// ready states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultState {
    Started,
    Success,
    Failure,
    Revoked,
}

impl ResultState {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultState::Started => "STARTED",
            ResultState::Success => "SUCCESS",
            ResultState::Failure => "FAILURE",
            ResultState::Revoked => "REVOKED",
        }
    }
}

/// Celery's `READY_STATES`: a stored meta in one of these is the result.
pub const READY_STATES: [&str; 3] = ["SUCCESS", "FAILURE", "REVOKED"];

/// Whether a stored meta is a task's result (not STARTED, RETRY, ...).
pub fn is_ready(meta: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(meta)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str().map(str::to_owned)))
        .is_some_and(|s| READY_STATES.contains(&s.as_str()))
}

/// The STARTED meta a worker stores when a step starts, as Celery's
/// `task_track_started` stores it: the pid and node name, no date. A Python
/// worker revoking a task leaves a STARTED task's state alone, which keeps a
/// mixed fleet's bookkeeping true to what runs.
pub fn started_meta(task_id: &str, hostname: &str, pid: u32) -> String {
    let mut out = String::with_capacity(160);
    out.push_str("{\"status\": \"STARTED\", \"result\": {\"pid\": ");
    out.push_str(&pid.to_string());
    out.push_str(", \"hostname\": ");
    write_str(&mut out, hostname);
    out.push_str("}, \"traceback\": null, \"children\": [], \"date_done\": null, \"task_id\": ");
    write_str(&mut out, task_id);
    out.push('}');
    out
}

/// An exception as Celery serializes it for the client to re-raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    pub exc_type: String,
    pub exc_message: Vec<String>,
    pub exc_module: String,
}

impl TaskError {
    /// What a revoked task's result holds.
    pub fn revoked() -> TaskError {
        TaskError {
            exc_type: "TaskRevokedError".into(),
            exc_message: vec!["revoked".into()],
            exc_module: "celery.exceptions".into(),
        }
    }

    fn write(&self, out: &mut String) {
        out.push_str("{\"exc_type\": ");
        write_str(out, &self.exc_type);
        out.push_str(", \"exc_message\": [");
        for (i, m) in self.exc_message.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_str(out, m);
        }
        out.push_str("], \"exc_module\": ");
        write_str(out, &self.exc_module);
        out.push('}');
    }
}

/// What a task returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'a> {
    /// SUCCESS with this JSON value (for `execute_step_k8s_job`, a list of
    /// serialized DagsterEvents).
    Value(&'a serde_json::Value),
    Error(&'a TaskError),
}

/// `date_done` as Celery writes it: `datetime.now(timezone.utc).isoformat()`
/// (microseconds, omitted when zero; times outside years -9999..=9999 are
/// clamped to that range).
pub fn date_done(unix_micros: i64) -> String {
    let micros = unix_micros.rem_euclid(1_000_000);
    let secs = unix_micros.div_euclid(1_000_000).clamp(
        jiff::Timestamp::MIN.as_second(),
        jiff::Timestamp::MAX.as_second(),
    );
    let ts = jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let base = ts.strftime("%Y-%m-%dT%H:%M:%S");
    if micros == 0 {
        format!("{base}+00:00")
    } else {
        format!("{base}.{micros:06}+00:00")
    }
}

/// The meta JSON for `celery-task-meta-<task_id>` (and the `rpc://` reply body).
pub fn result_meta(
    task_id: &str,
    state: ResultState,
    outcome: &Outcome<'_>,
    traceback: Option<&str>,
    date_done: &str,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"status\": \"");
    out.push_str(state.as_str());
    out.push_str("\", \"result\": ");
    match outcome {
        // Dagster's results are lists of strings, which have one spelling;
        // objects would come out with sorted keys.
        Outcome::Value(v) => out.push_str(&dumps_sorted(v)),
        Outcome::Error(e) => e.write(&mut out),
    }
    out.push_str(", \"traceback\": ");
    match traceback {
        Some(t) => write_str(&mut out, t),
        None => out.push_str("null"),
    }
    out.push_str(", \"children\": [], \"date_done\": ");
    write_str(&mut out, date_done);
    out.push_str(", \"task_id\": ");
    write_str(&mut out, task_id);
    out.push('}');
    out
}

/// The Redis key of a task's result.
pub fn redis_key(task_id: &str) -> String {
    format!("celery-task-meta-{task_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_is_not_ready() {
        let m = started_meta("t1", "runway-a@h", 42);
        assert_eq!(
            m,
            r#"{"status": "STARTED", "result": {"pid": 42, "hostname": "runway-a@h"}, "traceback": null, "children": [], "date_done": null, "task_id": "t1"}"#
        );
        assert!(!is_ready(&m));
        let done = result_meta(
            "t1",
            ResultState::Revoked,
            &Outcome::Error(&TaskError::revoked()),
            None,
            "d",
        );
        assert!(is_ready(&done));
        assert!(!is_ready("garbage"));
    }

    #[test]
    fn dates_match_python_isoformat() {
        assert_eq!(date_done(0), "1970-01-01T00:00:00+00:00");
        // 2026-12-02T02:07:55.506057+00:00
        assert_eq!(
            date_done(1_796_177_275_506_057),
            "2026-12-02T02:07:55.506057+00:00"
        );
        assert_eq!(
            date_done(951_782_400_000_001),
            "2000-02-29T00:00:00.000001+00:00"
        );
    }
}
