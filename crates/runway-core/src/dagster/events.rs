//! The serialized DagsterEvents in a step pod's log, as the celery-k8s task
//! extracts them (`filter_dagster_events_from_cli_logs`, then
//! `serialize_value` of each): lines starting with `{` are taken whole, or
//! joined until a line ending with `}` (container runtimes split long lines);
//! anything that is not a serialized `DagsterEvent` is dropped.

use serde_json::Value;

use super::pyfmt::dumps_sorted;

/// The events, each re-serialized as `serialize_value` writes it.
pub fn events_from_log(log: &str) -> Vec<String> {
    let mut coalesced = Vec::new();
    let mut buffer = String::new();
    let mut in_split = false;
    // Python's str.splitlines-free split on "\n", then strip().
    for raw in log.split('\n') {
        let line = raw.trim_matches(|c: char| c.is_whitespace());
        if !in_split && line.starts_with('{') {
            if line.ends_with('}') {
                coalesced.push(line.to_owned());
            } else {
                buffer.push_str(line);
                in_split = true;
            }
        } else if in_split {
            buffer.push_str(line);
            if line.ends_with('}') {
                coalesced.push(std::mem::take(&mut buffer));
                in_split = false;
            }
        }
    }
    coalesced
        .iter()
        .filter_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            (v.get("__class__").and_then(Value::as_str) == Some("DagsterEvent"))
                .then(|| dumps_sorted(&v))
        })
        .collect()
}
