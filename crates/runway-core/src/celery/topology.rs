//! The AMQP objects Celery declares for the queues Dagster uses, so a Runway
//! worker and a Python worker can share and redeclare them (a queue
//! redeclared with different arguments fails with PRECONDITION_FAILED).

use serde_json::Value;

/// The priority range Dagster's Celery apps configure (`x-max-priority`).
pub const MAX_PRIORITY: u8 = 10;

/// One queue with its exchange and binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub queue: String,
    /// A durable direct exchange of the same name.
    pub exchange: String,
    /// `dagster.#` for the `dagster` queue (a literal on a direct exchange),
    /// the queue's name for queues created from `dagster-celery/queue` tags.
    pub binding_key: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub max_priority: u8,
}

/// The declaration of `queue`, as `make_app_with_task_routes` (for
/// `dagster`) and `task_create_missing_queues` (for any other) make it.
pub fn queue_spec(queue: &str) -> QueueSpec {
    QueueSpec {
        queue: queue.to_owned(),
        exchange: queue.to_owned(),
        binding_key: if queue == "dagster" {
            "dagster.#".to_owned()
        } else {
            queue.to_owned()
        },
        durable: true,
        auto_delete: false,
        max_priority: MAX_PRIORITY,
    }
}

/// The task ids a `celery.pidbox` broadcast revokes, if it is a revoke.
/// `task_id` is one id or a list of ids (`revoke([...])`).
pub fn revoked_ids(body: &[u8]) -> Option<Vec<String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if v.get("method").and_then(Value::as_str) != Some("revoke") {
        return None;
    }
    match v.get("arguments")?.get("task_id")? {
        Value::String(id) => Some(vec![id.clone()]),
        Value::Array(ids) => Some(
            ids.iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_declared_as_celery_declares_them() {
        let d = queue_spec("dagster");
        assert_eq!(
            (d.exchange.as_str(), d.binding_key.as_str()),
            ("dagster", "dagster.#")
        );
        let h = queue_spec("highmem");
        assert_eq!(
            (h.exchange.as_str(), h.binding_key.as_str()),
            ("highmem", "highmem")
        );
        assert!(h.durable && !h.auto_delete && h.max_priority == 10);
    }

    #[test]
    fn revokes_are_recognised() {
        let one = br#"{"method": "revoke", "arguments": {"task_id": "t-1", "terminate": false, "signal": null}, "destination": null, "pattern": null, "matcher": null}"#;
        assert_eq!(revoked_ids(one), Some(vec!["t-1".to_owned()]));
        let many = br#"{"method": "revoke", "arguments": {"task_id": ["a", "b"]}}"#;
        assert_eq!(
            revoked_ids(many),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(revoked_ids(br#"{"method": "ping", "arguments": {}}"#), None);
        assert_eq!(revoked_ids(b"not json"), None);
    }
}
