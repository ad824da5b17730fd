//! How a finished task is written: its result meta in Celery's format, the
//! exception a refused delivery carries, and the task's Celery event.

use runway_core::celery::message::DecodeError;
use runway_core::celery::result::{date_done, result_meta, Outcome, ResultState, TaskError};
use serde_json::Value;

use super::events::Events;
use super::task::Finish;

/// The meta JSON of a finished task.
pub fn meta(id: &str, finish: &Finish) -> (ResultState, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default();
    let date = date_done(now);
    match finish {
        Finish::Events(events) => {
            let v = Value::Array(events.iter().cloned().map(Value::String).collect());
            (
                ResultState::Success,
                result_meta(id, ResultState::Success, &Outcome::Value(&v), None, &date),
            )
        }
        Finish::Error {
            exc_type,
            exc_module,
            message,
        } => {
            let err = TaskError {
                exc_type: exc_type.clone(),
                exc_message: vec![message.clone()],
                exc_module: exc_module.clone(),
            };
            let tb = format!(
                "Traceback (most recent call last):\n  runway worker\n{exc_module}.{exc_type}: {message}\n"
            );
            let meta = result_meta(
                id,
                ResultState::Failure,
                &Outcome::Error(&err),
                Some(&tb),
                &date,
            );
            (ResultState::Failure, meta)
        }
        // Never stored (the pool settles nothing for a lost claim); written
        // as what it is, should it ever be.
        Finish::Expired => {
            let err = TaskError {
                exc_message: vec!["expired".into()],
                ..TaskError::revoked()
            };
            let meta = result_meta(id, ResultState::Revoked, &Outcome::Error(&err), None, &date);
            (ResultState::Revoked, meta)
        }
        Finish::Revoked | Finish::ClaimLost => {
            let err = TaskError::revoked();
            let meta = result_meta(id, ResultState::Revoked, &Outcome::Error(&err), None, &date);
            (ResultState::Revoked, meta)
        }
    }
}

/// The task error a refused delivery's FAILURE carries: kombu's own for a
/// refused content type, ValueError for the rest.
pub fn refusal(e: &DecodeError) -> Finish {
    let (exc_type, exc_module) = match e {
        DecodeError::ContentType { .. } => ("ContentDisallowed", "kombu.exceptions"),
        _ => ("ValueError", "builtins"),
    };
    Finish::Error {
        exc_type: exc_type.into(),
        exc_module: exc_module.into(),
        message: e.to_string(),
    }
}

/// `task-succeeded`, `task-failed` or `task-revoked`.
pub fn task_event(events: &Events, id: &str, finish: &Finish, runtime: f64, terminated: bool) {
    let uuid = ("uuid", Value::from(id));
    match finish {
        Finish::Events(list) => events.task(
            "task-succeeded",
            vec![
                uuid,
                (
                    "result",
                    format!("[{} serialized DagsterEvents]", list.len()).into(),
                ),
                ("runtime", runtime.into()),
            ],
        ),
        Finish::Error {
            exc_type, message, ..
        } => events.task(
            "task-failed",
            vec![
                uuid,
                ("exception", format!("{exc_type}({message:?})").into()),
                ("traceback", Value::Null),
            ],
        ),
        Finish::ClaimLost => {}
        Finish::Expired => events.task(
            "task-revoked",
            vec![
                uuid,
                ("terminated", false.into()),
                ("signum", Value::Null),
                ("expired", true.into()),
            ],
        ),
        Finish::Revoked => events.task(
            "task-revoked",
            vec![
                uuid,
                ("terminated", terminated.into()),
                ("signum", if terminated { 15.into() } else { Value::Null }),
                ("expired", false.into()),
            ],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_content_types_raise_kombus_error() {
        let e = refusal(&DecodeError::ContentType {
            content_type: "application/x-python-serialize".into(),
        });
        assert!(
            matches!(&e, Finish::Error { exc_type, exc_module, .. }
                if exc_type == "ContentDisallowed" && exc_module == "kombu.exceptions"),
            "{e:?}"
        );
        let (state, m) = meta("t1", &Finish::Revoked);
        assert_eq!(state, ResultState::Revoked);
        assert!(m.starts_with(r#"{"status": "REVOKED", "result": {"exc_type": "TaskRevokedError""#));
    }
}
