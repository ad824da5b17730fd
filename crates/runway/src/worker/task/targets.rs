//! The run and event-log databases of an `instance_ref`, remembered per
//! instance: every step of a deployment carries the same `instance_ref`,
//! whose storage configs are YAML text that would otherwise be parsed twice
//! for every step (3% of the worker's profile samples in `runway bench worker`).

use std::sync::Mutex;

use serde_json::Value;

use runway_core::dagster::instance::{storage_target, PgTarget, Storage};
use runway_core::dagster::{Env, Error};
use runway_core::recent::Recent;

/// Instances remembered at once: a worker serves one Dagster deployment, or
/// a few sharing its queues; more than this are parsed again as they come.
const KEPT: usize = 8;

/// Where an instance's run and event-log storage live.
#[derive(Clone, Debug, PartialEq)]
pub struct Targets {
    pub run: PgTarget,
    pub events: PgTarget,
}

/// The [`Targets`] of the instances seen lately, keyed by the whole
/// `instance_ref` (its storage configs and its settings alike), so an
/// instance whose config changes is parsed afresh. Errors are not kept: the
/// step fails with the same message the next time, from a fresh parse.
#[derive(Debug)]
pub struct TargetCache {
    kept: Mutex<Recent<Value, Targets>>,
}

impl Default for TargetCache {
    fn default() -> TargetCache {
        TargetCache {
            kept: Mutex::new(Recent::new(KEPT)),
        }
    }
}

impl TargetCache {
    /// The instance's databases, parsed on its first step only. Environment
    /// variables the configs name (`{env: VAR}`) are read at that parse: a
    /// process's environment does not change while it runs.
    pub fn get(&self, instance_ref: &Value, env: &dyn Env) -> Result<Targets, Error> {
        if let Some(found) = self.find(instance_ref) {
            return Ok(found);
        }
        let targets = Targets {
            run: storage_target(instance_ref, Storage::Run, env)?,
            events: storage_target(instance_ref, Storage::EventLog, env)?,
        };
        self.keep(instance_ref, &targets);
        Ok(targets)
    }

    fn find(&self, instance_ref: &Value) -> Option<Targets> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.find(|key| key == instance_ref).cloned()
    }

    /// The oldest entry makes room when full. Another step of the instance
    /// may have kept it meanwhile: it is kept once.
    fn keep(&self, instance_ref: &Value, targets: &Targets) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.find(|key| key == instance_ref).is_none() {
            kept.keep(instance_ref.clone(), targets.clone());
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn instance(host: &str) -> Value {
        let yaml = format!(
            "postgres_db:\n  db_name: dagster\n  hostname: {host}\n  password:\n    env: PG_PW\n  username: u\n"
        );
        json!({"storage_data": {"module_name": "dagster_postgres",
            "class_name": "DagsterPostgresStorage", "config_yaml": yaml}})
    }

    fn env(password: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("PG_PW".to_owned(), password.to_owned())])
    }

    #[test]
    fn an_instance_is_parsed_once_and_answered_alike() {
        let cache = TargetCache::default();
        let first = cache.get(&instance("pg"), &env("a")).unwrap();
        assert_eq!(first.run.host, "pg");
        assert_eq!(first.events.password.as_deref(), Some("a"));
        // Kept from the first parse: the changed environment is not read again.
        let again = cache.get(&instance("pg"), &env("b")).unwrap();
        assert_eq!(again, first);
        assert_eq!(cache.len(), 1);
        // Another instance is another entry.
        let other = cache.get(&instance("pg2"), &env("b")).unwrap();
        assert_eq!(other.run.host, "pg2");
        assert_eq!(other.run.password.as_deref(), Some("b"));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn errors_are_not_kept_and_the_cache_is_bounded() {
        let cache = TargetCache::default();
        let missing = BTreeMap::new();
        let e = cache.get(&instance("pg"), &missing).unwrap_err();
        assert!(e.to_string().contains("PG_PW"), "{e}");
        assert_eq!(cache.len(), 0, "a failed parse is not remembered");
        assert!(cache.get(&instance("pg"), &env("a")).is_ok());
        for n in 0..20 {
            cache.get(&instance(&format!("h{n}")), &env("a")).unwrap();
        }
        assert_eq!(cache.len(), KEPT);
        // The most recent are kept, the oldest went first.
        assert!(cache.find(&instance("h19")).is_some());
        assert!(cache.find(&instance("pg")).is_none());
    }
}
