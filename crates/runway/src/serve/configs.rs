//! The launcher configs a server knows, found by digest and parsed once per
//! environment they read.
//!
//! A config's text is kept by its digest (so a client may send the digest
//! alone); its parsed form is kept by digest *and* the values of the
//! `{env: NAME}` sources it reads, as the caller sent them: one caller's
//! environment never reaches another's Job. Both are bounded, in entries
//! and in bytes, and a config larger than `max_config_bytes` is refused.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use super::{class_of, invalid, parse_json, sha256_hex, Error, Launch};
use crate::cluster::JobApi;
use runway_core::dagster::launcher::{Launcher, LauncherClass};
use runway_core::k8s::config::Map;
use runway_core::render;
use runway_proto as proto;

/// Parsed forms kept per config text (one per distinct environment).
const LOADED_PER_TEXT: usize = 8;

/// What a parsed form is counted at, per byte of its text: a [`Launcher`]
/// holds the config's strings twice (its typed fields, and the processed
/// map `from_config_value` receives), and once rendered its own layer
/// converted and merged, about twice more. Counting only the texts let 32
/// MiB of texts hold about 110 MiB (the chaos suite's 64 distinct ~1 MiB
/// configs). What it keeps of code locations and tag configs has a bound of
/// its own (`PreparedLayers`, 8 MiB per parsed form).
const PARSED_PER_TEXT_BYTE: usize = 4;

type TextKey = (LauncherClass, String);

#[derive(Debug)]
struct Text {
    json: Arc<str>,
    /// The environment variables its `{env: NAME}` sources read.
    env_names: Vec<String>,
}

/// The bounded cache of config texts and their parsed forms.
#[derive(Debug, Default)]
pub(super) struct Configs {
    texts: HashMap<TextKey, Text>,
    /// Text keys, oldest first: the eviction order.
    order: VecDeque<TextKey>,
    /// The texts' bytes plus [`PARSED_PER_TEXT_BYTE`] per byte of text for
    /// each parsed form kept: what `--config-cache-bytes` bounds.
    bytes: usize,
    loaded: HashMap<(TextKey, String), Arc<Launcher>>,
}

/// Limits of the cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    pub entries: usize,
    pub bytes: usize,
    /// The largest config one request may carry.
    pub max_config_bytes: usize,
}

impl Configs {
    fn insert_text(&mut self, key: TextKey, json: &str, limits: CacheLimits) {
        if self.texts.contains_key(&key) {
            return;
        }
        while !self.order.is_empty()
            && (self.texts.len() >= limits.entries.max(1) || self.bytes + json.len() > limits.bytes)
        {
            if let Some(old) = self.order.pop_front() {
                self.evict(&old);
            }
        }
        let text = Text {
            json: Arc::from(json),
            env_names: env_names(json),
        };
        self.bytes += json.len();
        self.order.push_back(key.clone());
        self.texts.insert(key, text);
    }

    fn evict(&mut self, key: &TextKey) {
        self.drop_loaded(key);
        if let Some(t) = self.texts.remove(key) {
            self.bytes -= t.json.len();
        }
    }

    /// Drops the parsed forms of `key`'s text (the text stays).
    fn drop_loaded(&mut self, key: &TextKey) {
        let charge = self.texts.get(key).map_or(0, |t| parsed_charge(&t.json));
        let before = self.loaded.len();
        self.loaded.retain(|(k, _), _| k != key);
        self.bytes -= charge * (before - self.loaded.len());
    }

    /// Keeps a parsed form within the byte bound, dropping the oldest other
    /// texts (and their parsed forms) to make room; one that cannot fit is
    /// not kept (it is parsed again per request).
    fn insert_loaded(
        &mut self,
        key: TextKey,
        fingerprint: String,
        launcher: Arc<Launcher>,
        limits: CacheLimits,
    ) {
        let Some(charge) = self.texts.get(&key).map(|t| parsed_charge(&t.json)) else {
            return;
        };
        let loaded_key = (key, fingerprint);
        if self.loaded.contains_key(&loaded_key) {
            return;
        }
        let key = &loaded_key.0;
        if self.loaded.keys().filter(|(k, _)| k == key).count() >= LOADED_PER_TEXT {
            self.drop_loaded(key);
        }
        while self.bytes + charge > limits.bytes {
            let Some(old) = self
                .order
                .iter()
                .position(|k| k != key)
                .and_then(|i| self.order.remove(i))
            else {
                return;
            };
            self.evict(&old);
        }
        self.bytes += charge;
        self.loaded.insert(loaded_key, launcher);
    }
}

fn parsed_charge(json: &str) -> usize {
    PARSED_PER_TEXT_BYTE * json.len()
}

/// The names `{env: NAME}` sources in a config read (a config that does not
/// parse reads none; it is refused when parsed).
fn env_names(json: &str) -> Vec<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let (1, Some(Value::String(name))) = (m.len(), m.get("env")) {
                    out.insert(name.clone());
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    if let Ok(v) = serde_json::from_str::<Value>(json) {
        walk(&v, &mut out);
    }
    out.into_iter().collect()
}

/// The values of `names` in the caller's environment, as one key.
fn fingerprint(names: &[String], env: &BTreeMap<String, String>) -> String {
    let mut text = String::new();
    for n in names {
        text.push_str(n);
        match env.get(n) {
            Some(v) => {
                text.push('=');
                text.push_str(v);
            }
            None => text.push('\u{0}'),
        }
        text.push('\u{1}');
    }
    sha256_hex(text.as_bytes())
}

impl<K: JobApi> Launch<K> {
    /// The parsed launcher config for this caller's environment, from the
    /// cache when its digest (and the environment it reads) is known.
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
        let limits = self.options.cache;
        if config.config_json.len() > limits.max_config_bytes {
            return Err(invalid(
                "launcher.config_json",
                format!(
                    "{} bytes is more than this server takes ({} bytes, --max-config-bytes); a launcher config is a few kilobytes",
                    config.config_json.len(),
                    limits.max_config_bytes
                ),
            ));
        }
        let key = (class, digest_of(config)?);
        let (json, names) = {
            let mut cache = self.lock_configs();
            if !config.config_json.is_empty() {
                cache.insert_text(key.clone(), &config.config_json, limits);
            }
            match cache.texts.get(&key) {
                Some(t) => (t.json.clone(), t.env_names.clone()),
                None => return Err(Error::UnknownDigest { digest: key.1 }),
            }
        };
        let print = fingerprint(&names, env);
        if let Some(hit) = self
            .lock_configs()
            .loaded
            .get(&(key.clone(), print.clone()))
        {
            return Ok(hit.clone());
        }
        let value = match parse_json(&json, "launcher.config_json")? {
            Value::Null => Value::Object(Map::new()),
            v => v,
        };
        let parsed = Arc::new(Launcher::load(class, &value, env).map_err(render::Error::from)?);
        self.lock_configs()
            .insert_loaded(key, print, parsed.clone(), limits);
        Ok(parsed)
    }

    fn lock_configs(&self) -> std::sync::MutexGuard<'_, Configs> {
        self.configs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The config's digest: the one given, checked against the text when both
/// are sent.
fn digest_of(config: &proto::LauncherConfig) -> Result<String, Error> {
    if config.config_json.is_empty() {
        if config.digest.is_empty() {
            return Err(invalid(
                "launcher.digest",
                "give the digest, the config_json, or both",
            ));
        }
        if config.digest.len() != 64 || !config.digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                "launcher.digest",
                "expected the 64 hex digits of the SHA-256 of config_json",
            ));
        }
        return Ok(config.digest.to_ascii_lowercase());
    }
    let actual = sha256_hex(config.config_json.as_bytes());
    if !config.digest.is_empty() && !config.digest.eq_ignore_ascii_case(&actual) {
        return Err(invalid(
            "launcher.digest",
            format!(
                "{} is not the SHA-256 of config_json ({actual}); compute it over the exact bytes sent",
                runway_core::text::clip(&config.digest, 80)
            ),
        ));
    }
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_sources_are_found_and_fingerprinted_by_value() {
        let names = env_names(
            r#"{"job_image": {"env": "IMG"}, "env_config_maps": [{"env": "CM"}], "labels": {"env": "prod", "x": "y"}}"#,
        );
        assert_eq!(names, ["CM", "IMG"]);
        let a: BTreeMap<String, String> = [("IMG".into(), "a".into())].into();
        let b: BTreeMap<String, String> = [("IMG".into(), "b".into())].into();
        assert_ne!(fingerprint(&names, &a), fingerprint(&names, &b));
        assert_ne!(
            fingerprint(&names, &a),
            fingerprint(&names, &BTreeMap::new())
        );
        assert_eq!(
            fingerprint(&[], &a),
            fingerprint(&[], &b),
            "a config reading no env is shared"
        );
    }

    #[test]
    fn the_cache_is_bounded_in_entries_and_bytes() {
        let limits = CacheLimits {
            entries: 3,
            bytes: 100,
            max_config_bytes: 100,
        };
        let mut c = Configs::default();
        for i in 0..5 {
            c.insert_text(
                (LauncherClass::K8s, format!("d{i}")),
                &"x".repeat(30),
                limits,
            );
        }
        assert_eq!(c.texts.len(), 3);
        assert!(c.bytes <= 100);
        assert!(c.texts.contains_key(&(LauncherClass::K8s, "d4".into())));
        assert!(
            !c.texts.contains_key(&(LauncherClass::K8s, "d0".into())),
            "oldest evicted"
        );
        c.insert_text((LauncherClass::K8s, "big".into()), &"y".repeat(90), limits);
        assert!(c.bytes <= 100, "{}", c.bytes);
    }

    #[test]
    fn parsed_forms_count_against_the_byte_bound() {
        let limits = CacheLimits {
            entries: 64,
            bytes: 1100,
            max_config_bytes: 1000,
        };
        let launcher = Arc::new(
            Launcher::load(
                LauncherClass::K8s,
                &serde_json::json!({"instance_config_map": "i", "service_account_name": "s"}),
                &BTreeMap::new(),
            )
            .unwrap(),
        );
        let mut c = Configs::default();
        let key = |i: usize| (LauncherClass::K8s, format!("d{i}"));
        for i in 0..4 {
            c.insert_text(key(i), &"x".repeat(200), limits);
            c.insert_loaded(key(i), "env".into(), launcher.clone(), limits);
            assert!(c.bytes <= limits.bytes, "{}", c.bytes);
        }
        // Each text with its parsed form is 1,000 bytes: only the newest fits whole.
        let parsed = 200 * PARSED_PER_TEXT_BYTE;
        assert_eq!(parsed, 800);
        assert!(c.loaded.contains_key(&(key(3), "env".into())));
        assert!(!c.texts.contains_key(&key(1)) && !c.texts.contains_key(&key(0)));
        assert_eq!(c.bytes, 200 * c.texts.len() + parsed * c.loaded.len());
        // Evicting a text gives back its parsed forms' bytes too.
        c.evict(&key(3));
        assert_eq!(c.bytes, 200 * c.texts.len() + parsed * c.loaded.len());
    }
}
