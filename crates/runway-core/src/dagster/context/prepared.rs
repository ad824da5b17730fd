//! Layers converted and merged once and kept with the launcher: a service
//! caches the [`Launcher`] per config digest, so after the first launch the
//! launcher's own layer, each code location's container context and each
//! distinct `dagster-k8s/config` tag text (a job launched again carries the
//! same one) are ready, and a launch only merges copies of them.
//!
//! Both may read the environment (`{env: VAR}` sources, bare `env_vars`
//! names); every lookup made while computing an entry is recorded, and an
//! entry is used only while each recorded variable still reads the same.

mod folded;
mod merged;

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use super::{ContainerContext, FieldsContext, Layer};
use crate::dagster::launcher::Launcher;
use crate::dagster::rules::Rules;
use crate::dagster::tags::{
    user_config_from_tags, K8S_RESOURCE_REQUIREMENTS_KEY, USER_DEFINED_K8S_CONFIG_KEY,
};
use crate::dagster::version::DagsterVersion;
use crate::dagster::{Env, Error};
use crate::k8s::config::{Map, MergeBehavior};
pub use folded::Folded;
use merged::{Footprint, Layers, MergedCache};

/// Code locations and tag configs kept per launcher; the oldest are dropped
/// beyond this many, or beyond [`KEYED_BYTES`] counted as [`charge`] says.
const KEYED: usize = 128;
const KEYED_BYTES: usize = 8 << 20;
/// A context larger than this is converted per launch and never kept.
const KEYED_MAX_ENTRY: usize = 256 << 10;

/// The launcher's layer per way a release reads it (the default merge
/// behaviour decides its raw config), and recent code locations' contexts.
#[derive(Default)]
pub struct PreparedLayers {
    raw: [OnceLock<Entry<ContainerContext>>; 3],
    fields: [OnceLock<Entry<FieldsContext>>; 3],
    keyed: Mutex<KeyedCache>,
    merged_raw: MergedCache<ContainerContext, MergedRaw>,
    merged_fields: MergedCache<FieldsContext, MergedFields>,
}

/// A launch's merged context and the env var names its allowlist dropped.
pub type Merge<T> = (T, Vec<String>);
pub type MergedRaw = Merge<ContainerContext>;
pub type MergedFields = Merge<FieldsContext>;

#[derive(Default)]
struct KeyedCache {
    entries: Vec<Keyed>,
    bytes: usize,
}

/// A computed context and the environment lookups it depends on.
pub struct Entry<T> {
    value: Arc<T>,
    seen: Vec<(String, Option<String>)>,
}

/// A layer computed from a request's own input: a code location's container
/// context, or a run's tag config texts.
#[derive(Debug)]
pub struct Keyed {
    version: DagsterVersion,
    kind: Kind,
    key: Value,
    /// What this entry is counted at against [`KEYED_BYTES`].
    charge: usize,
    raw: Option<Entry<ContainerContext>>,
    fields: Option<Entry<FieldsContext>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Location,
    Tags,
}

impl PreparedLayers {
    /// The launcher's layer folded as raw config (Dagster 1.7 onward).
    pub fn raw(
        &self,
        launcher: &Launcher,
        rules: &Rules,
        env: &dyn Env,
    ) -> Result<Arc<ContainerContext>, Error> {
        once(&self.raw[slot(rules)], env, |env| {
            ContainerContext::fold(&[Layer::launcher(launcher, rules)?], env)
        })
    }

    /// The launcher's layer folded field by field (until 1.7).
    pub fn fields(
        &self,
        launcher: &Launcher,
        rules: &Rules,
        env: &dyn Env,
    ) -> Result<Arc<FieldsContext>, Error> {
        once(&self.fields[slot(rules)], env, |_| {
            FieldsContext::fold(&[Layer::launcher(launcher, rules)?])
        })
    }

    /// A code location's container context, folded as `T`'s layering does.
    pub fn location<T: Folded>(
        &self,
        container_context: &Value,
        rules: &Rules,
        env: &dyn Env,
        at: &str,
    ) -> Result<Arc<T>, Error> {
        let key = (Kind::Location, container_context);
        self.keyed(key, rules, env, T::slot, |env| {
            T::fold(
                &Layer::code_location(container_context, env, at, rules)?,
                env,
            )
        })
    }

    /// The run tags' layer as `T`'s layering reads it; `None` when the run
    /// has no Kubernetes tags.
    pub fn tags<T: Folded>(
        &self,
        tags: &Map,
        rules: &Rules,
        env: &dyn Env,
    ) -> Result<Option<Arc<T>>, Error> {
        let Some(key) = tags_key(tags) else {
            return Ok(None);
        };
        let layer = |env: &dyn Env| T::one(&tags_layer(tags, rules)?, env);
        let context = self.keyed((Kind::Tags, &key), rules, env, T::slot, layer)?;
        Ok(Some(context))
    }

    /// A launch's layers (the launcher's, its code location's when it has a
    /// container context, its tags') merged by `merge`, once per combination
    /// of the layers kept above.
    pub fn merged<T: Folded, E: From<Error>>(
        &self,
        launcher: &Launcher,
        rules: &Rules,
        env: &dyn Env,
        (container_context, at): (Option<&Value>, &str),
        tags: &Map,
        merge: impl FnOnce(&T, Option<&T>, Option<&T>, &dyn Env) -> Result<Merge<T>, E>,
    ) -> Result<Arc<Merge<T>>, E>
    where
        Merge<T>: Footprint,
    {
        let base = T::launcher(self, launcher, rules, env)?;
        let location = match container_context {
            Some(context) => Some(self.location::<T>(context, rules, env, at)?),
            None => None,
        };
        let tags = self.tags::<T>(tags, rules, env)?;
        let layers = Layers {
            version: rules.version,
            base: &base,
            location: location.as_ref(),
            tags: tags.as_ref(),
        };
        T::merges(self).get(layers, env, |env| {
            merge(&base, location.as_deref(), tags.as_deref(), env)
        })
    }

    fn keyed<T>(
        &self,
        (kind, key): (Kind, &Value),
        rules: &Rules,
        env: &dyn Env,
        slot: fn(&mut Keyed) -> &mut Option<Entry<T>>,
        compute: impl FnOnce(&dyn Env) -> Result<T, Error>,
    ) -> Result<Arc<T>, Error> {
        let found = |cache: &KeyedCache| {
            cache
                .entries
                .iter()
                .position(|k| k.version == rules.version && k.kind == kind && k.key == *key)
        };
        {
            let mut cache = self.lock();
            if let Some(i) = found(&cache) {
                if let Some(entry) = slot(&mut cache.entries[i]).as_ref() {
                    if still_reads(&entry.seen, env) {
                        return Ok(entry.value.clone());
                    }
                }
            }
        }
        // Computed outside the lock: a slow input never holds up another launch.
        let entry = record(env, compute)?;
        let value = entry.value.clone();
        let charge = charge(key);
        if charge > KEYED_MAX_ENTRY {
            return Ok(value);
        }
        let mut cache = self.lock();
        let i = match found(&cache) {
            Some(i) => i,
            None => {
                while !cache.entries.is_empty()
                    && (cache.entries.len() >= KEYED || cache.bytes + charge > KEYED_BYTES)
                {
                    let old = cache.entries.remove(0);
                    cache.bytes -= old.charge;
                }
                cache.bytes += charge;
                cache.entries.push(Keyed {
                    version: rules.version,
                    kind,
                    key: key.clone(),
                    charge,
                    raw: None,
                    fields: None,
                });
                cache.entries.len() - 1
            }
        };
        *slot(&mut cache.entries[i]) = Some(entry);
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeyedCache> {
        self.keyed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a kept entry costs: its key, and the two converted contexts that may
/// hang off it, each about the key's size again.
fn charge(key: &Value) -> usize {
    3 * value_bytes(key)
}

/// About what a JSON value holds: its text and a word per node.
fn value_bytes(v: &Value) -> usize {
    16 + match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(value_bytes).sum(),
        Value::Object(map) => map_bytes(map),
        _ => 0,
    }
}

fn map_bytes(map: &Map) -> usize {
    map.iter().map(|(k, v)| k.len() + value_bytes(v)).sum()
}

/// The two tags a run's Kubernetes config comes from, as the cache key.
fn tags_key(tags: &Map) -> Option<Value> {
    let config = tags.get(USER_DEFINED_K8S_CONFIG_KEY);
    let resources = tags.get(K8S_RESOURCE_REQUIREMENTS_KEY);
    if config.is_none() && resources.is_none() {
        return None;
    }
    let text = |v: Option<&Value>| v.cloned().unwrap_or(Value::Null);
    Some(Value::Array(vec![text(config), text(resources)]))
}

fn tags_layer(tags: &Map, rules: &Rules) -> Result<Layer, Error> {
    Ok(Layer::tags(user_config_from_tags(tags, "tags", rules)?))
}

/// A once-computed entry, recomputed (and not kept) under an environment
/// that reads differently.
fn once<T>(
    cell: &OnceLock<Entry<T>>,
    env: &dyn Env,
    compute: impl FnOnce(&dyn Env) -> Result<T, Error>,
) -> Result<Arc<T>, Error> {
    if let Some(entry) = cell.get() {
        if still_reads(&entry.seen, env) {
            return Ok(entry.value.clone());
        }
        return Ok(Arc::new(compute(env)?));
    }
    let entry = record(env, compute)?;
    Ok(cell.get_or_init(|| entry).value.clone())
}

fn record<T, E>(
    env: &dyn Env,
    compute: impl FnOnce(&dyn Env) -> Result<T, E>,
) -> Result<Entry<T>, E> {
    let recording = Recording {
        inner: env,
        seen: RefCell::new(Vec::new()),
    };
    let value = Arc::new(compute(&recording)?);
    Ok(Entry {
        value,
        seen: recording.seen.into_inner(),
    })
}

fn still_reads(seen: &[(String, Option<String>)], env: &dyn Env) -> bool {
    seen.iter().all(|(name, value)| env.var(name) == *value)
}

/// An environment that remembers what was read from it.
struct Recording<'a> {
    inner: &'a dyn Env,
    seen: RefCell<Vec<(String, Option<String>)>>,
}

impl Env for Recording<'_> {
    fn var(&self, name: &str) -> Option<String> {
        let value = self.inner.var(name);
        self.seen
            .borrow_mut()
            .push((name.to_owned(), value.clone()));
        value
    }
}

fn slot(rules: &Rules) -> usize {
    match rules.merge_default() {
        None => 0,
        Some(MergeBehavior::Shallow) => 1,
        Some(MergeBehavior::Deep) => 2,
    }
}

// Derived data: a copy of a launcher starts with nothing computed, and two
// launchers from one config are equal whatever either has computed.
impl Clone for PreparedLayers {
    fn clone(&self) -> Self {
        PreparedLayers::default()
    }
}

impl PartialEq for PreparedLayers {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

// The values read from the environment may be secrets: never printed.
impl<T> std::fmt::Debug for Entry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("env_names_read", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PreparedLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedLayers")
    }
}

#[cfg(test)]
mod tests;
