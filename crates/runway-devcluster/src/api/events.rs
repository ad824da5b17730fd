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
        let key = event_key(&ns, &uid, reason, message);
        if let Some(event_name) = self.find_event(key, &ns, &uid, reason, message) {
            let bumped = self.update_status_with(Kind::Event, &ns, &event_name, |e| {
                let count = e["count"].as_i64().unwrap_or(1) + 1;
                e["count"] = json!(count);
                e["lastTimestamp"] = json!(now);
                true
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
                .entry(key)
                .or_default()
                .push(event_name.into());
        }
    }

    /// The recorded Event with this identity, if it still exists.
    fn find_event(
        &self,
        key: u64,
        ns: &str,
        uid: &str,
        reason: &str,
        message: &str,
    ) -> Option<String> {
        let names = self
            .event_names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned()?;
        names.iter().find_map(|name| {
            let event = self.get(Kind::Event, ns, name).ok()?.value();
            let same = event["involvedObject"]["uid"] == uid
                && event["reason"] == reason
                && event["message"] == message;
            same.then(|| name.to_string())
        })
    }
}

/// The hash of an Event's identity (fixed keys: the same in every run).
fn event_key(ns: &str, uid: &str, reason: &str, message: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one((ns, uid, reason, message))
}
