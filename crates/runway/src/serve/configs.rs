//! The launcher configs a server knows, parsed once and found by digest.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::{class_of, invalid, parse_json, sha256_hex, Error, Launch};
use crate::cluster::JobApi;
use runway_core::dagster::launcher::{Launcher, LauncherClass};
use runway_core::k8s::config::Map;
use runway_core::render;
use runway_proto as proto;

impl<K: JobApi> Launch<K> {
    /// The parsed launcher config, from the cache when its digest is known.
    pub(super) fn launcher(
        &self,
        config: Option<&proto::LauncherConfig>,
        env: &BTreeMap<String, String>,
    ) -> Result<Arc<Launcher>, Error> {
        let config = config.ok_or_else(|| {
            invalid(
                "launcher",
                "missing: send the launcher config in force (class, digest, config_json)",
            )
        })?;
        let class = class_of(&config.launcher_class, "launcher.launcher_class")?;
        let digest = if config.config_json.is_empty() {
            if config.digest.is_empty() {
                return Err(invalid(
                    "launcher.digest",
                    "give the digest, the config_json, or both",
                ));
            }
            config.digest.to_ascii_lowercase()
        } else {
            let actual = sha256_hex(config.config_json.as_bytes());
            if !config.digest.is_empty() && !config.digest.eq_ignore_ascii_case(&actual) {
                return Err(invalid(
                    "launcher.digest",
                    format!("{} is not the SHA-256 of config_json ({actual}); compute it over the exact bytes sent", config.digest),
                ));
            }
            actual
        };
        let key = (class, digest);
        if let Some(hit) = self.lock_configs().get(&key) {
            return Ok(hit.clone());
        }
        if config.config_json.is_empty() {
            return Err(Error::UnknownDigest { digest: key.1 });
        }
        let value = parse_json(&config.config_json, "launcher.config_json")?;
        let value = match value {
            Value::Null => Value::Object(Map::new()),
            v => v,
        };
        let parsed = Arc::new(Launcher::load(class, &value, env).map_err(render::Error::from)?);
        let mut cache = self.lock_configs();
        if cache.len() >= self.options.config_cache.max(1) {
            // Configs change rarely; dropping all beats tracking recency.
            cache.clear();
        }
        cache.insert(key, parsed.clone());
        Ok(parsed)
    }

    fn lock_configs(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(LauncherClass, String), Arc<Launcher>>> {
        self.configs.lock().unwrap_or_else(|e| e.into_inner())
    }
}
