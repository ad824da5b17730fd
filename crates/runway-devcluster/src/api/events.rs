//! The event recorder: Events about objects, with repeats counted as the
//! real recorder aggregates them.

use serde_json::{json, Value};

use super::{ns_name, Cluster};
use crate::validate::Kind;

impl Cluster {
    /// Records an Event about `obj` (kind `involved_kind`), aggregating repeats
    /// into `count` as the real event recorder does.
    pub fn record_event(
        &self,
        involved_kind: Kind,
        obj: &Value,
        type_: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let (ns, name) = ns_name(obj);
        let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        let now = self.clock.now_rfc3339();
        let key = (
            ns.clone(),
            uid.clone(),
            reason.to_owned(),
            message.to_owned(),
        );
        let existing = self
            .event_names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(event_name) = existing {
            let bumped = self.update_status_with(Kind::Event, &ns, &event_name, |e| {
                let count = e["count"].as_i64().unwrap_or(1) + 1;
                e["count"] = json!(count);
                e["lastTimestamp"] = json!(now);
            });
            if bumped.is_ok() {
                return;
            }
        }
        let event_name = format!("{name}.{:016x}", self.next_random());
        let body = json!({
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": {
                "kind": involved_kind.kind_name(), "apiVersion": involved_kind.api_version(),
                "namespace": ns, "name": name, "uid": uid,
                "resourceVersion": obj["metadata"]["resourceVersion"],
            },
            "reason": reason, "message": message, "type": type_,
            "source": {"component": component},
            "reportingComponent": component, "reportingInstance": "",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        if self.create(Kind::Event, &ns, body, false).is_ok() {
            self.event_names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key, event_name);
        }
    }
}
