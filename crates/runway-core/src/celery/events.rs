//! Celery's worker and task events (`celeryev`), as celery 5.7's
//! EventDispatcher sends them: a JSON dict with `type`, `timestamp`,
//! `hostname`, `utcoffset`, `pid` and the Lamport `clock`, published to the
//! topic exchange `celeryev` with the type's dashes as dots for routing key.
//! Flower and `celery events` read them to show workers and tasks.

use serde_json::{Map, Value};

/// Celery's default heartbeat interval (`freq`), in seconds.
pub const HEARTBEAT_SECS: f64 = 2.0;

/// Who sends the events.
#[derive(Debug, Clone)]
pub struct Sender {
    pub hostname: String,
    pub pid: u32,
    /// Hours east of UTC, as `celery.utils.time.utcoffset` gives it (the
    /// worker runs on UTC).
    pub utcoffset: f64,
}

/// `worker.online` for `worker-online`.
pub fn routing_key(event_type: &str) -> String {
    event_type.replace('-', ".")
}

impl Sender {
    /// The event dict: the type's own fields, then the dispatcher's.
    pub fn event(
        &self,
        event_type: &str,
        clock: u64,
        timestamp: f64,
        fields: Vec<(&str, Value)>,
    ) -> Value {
        let mut m = Map::new();
        for (k, v) in fields {
            m.insert(k.to_owned(), v);
        }
        m.insert("hostname".into(), self.hostname.clone().into());
        m.insert("utcoffset".into(), self.utcoffset.into());
        m.insert("pid".into(), self.pid.into());
        m.insert("clock".into(), clock.into());
        m.insert("timestamp".into(), timestamp.into());
        m.insert("type".into(), event_type.into());
        Value::Object(m)
    }

    /// `worker-online`, `worker-heartbeat`, `worker-offline`.
    pub fn worker(
        &self,
        event_type: &str,
        clock: u64,
        timestamp: f64,
        active: usize,
        processed: u64,
        loadavg: [f64; 3],
    ) -> Value {
        self.event(
            event_type,
            clock,
            timestamp,
            vec![
                ("freq", HEARTBEAT_SECS.into()),
                ("active", active.into()),
                ("processed", processed.into()),
                (
                    "loadavg",
                    loadavg.iter().copied().map(Value::from).collect(),
                ),
                ("sw_ident", "runway-worker".into()),
                ("sw_ver", env!("CARGO_PKG_VERSION").into()),
                ("sw_sys", "Linux".into()),
            ],
        )
    }
}

impl Sender {
    /// What the `heartbeat` control command sends: `freq` 5 and the
    /// software fields only.
    pub fn manual_heartbeat(&self, clock: u64, timestamp: f64) -> Value {
        self.event(
            "worker-heartbeat",
            clock,
            timestamp,
            vec![
                ("freq", 5.0.into()),
                ("sw_ident", "runway-worker".into()),
                ("sw_ver", env!("CARGO_PKG_VERSION").into()),
                ("sw_sys", "Linux".into()),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_the_dispatcher_fields() {
        let s = Sender {
            hostname: "runway-abc@h".into(),
            pid: 7,
            utcoffset: 0.0,
        };
        let e = s.event(
            "task-succeeded",
            3,
            1.5,
            vec![("uuid", "t1".into()), ("runtime", 0.25.into())],
        );
        assert_eq!(e["type"], "task-succeeded");
        assert_eq!(e["uuid"], "t1");
        assert_eq!(e["hostname"], "runway-abc@h");
        assert_eq!(e["clock"], 3);
        assert_eq!(routing_key("task-succeeded"), "task.succeeded");
        let w = s.worker("worker-heartbeat", 4, 2.0, 1, 10, [0.1, 0.2, 0.3]);
        assert_eq!(w["freq"], 2.0);
        assert_eq!(w["active"], 1);
    }
}
