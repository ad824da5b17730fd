//! A launch's layers merged once per combination.
//!
//! The launcher's layer, each code location's and each tag config's are kept
//! as `Arc`s that are replaced, never changed, when their input or the
//! environment they read changes. Merging them (deep copies of config trees)
//! was a fifth of a run Job's render; the merge of the same `Arc`s is the
//! same, so it is kept under their identities, with the environment lookups
//! the merge itself made (the 1.6 allowlist check reads the environment), and a
//! launch copies the result once.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::super::{ContainerContext, ContainerFields, FieldsContext};
use super::{map_bytes, record, still_reads, value_bytes, Entry};
use crate::dagster::version::DagsterVersion;
use crate::dagster::Env;
use crate::k8s::config::{Section, UserConfig};
use crate::recent::Recent;

/// Combinations kept per launcher and layering: the code locations and tag
/// configs a deployment launches at once.
const KEPT: usize = 16;
/// A merge larger than this is made per launch and never kept, so a cache
/// holds at most `KEPT` times this (a launcher config padded to a megabyte
/// keeps no second copy of itself).
const MAX_KEPT_BYTES: usize = 64 << 10;

/// The layers of one launch, by identity.
#[derive(Debug)]
pub struct Layers<'a, L> {
    pub version: DagsterVersion,
    pub base: &'a Arc<L>,
    pub location: Option<&'a Arc<L>>,
    pub tags: Option<&'a Arc<L>>,
}

/// Holding the layers keeps them alive, so an address is never reused for
/// another layer while it is a key.
struct Key<L> {
    version: DagsterVersion,
    base: Arc<L>,
    location: Option<Arc<L>>,
    tags: Option<Arc<L>>,
}

impl<L> Key<L> {
    fn is(&self, layers: &Layers<'_, L>) -> bool {
        fn same<L>(a: Option<&Arc<L>>, b: Option<&Arc<L>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        self.version == layers.version
            && Arc::ptr_eq(&self.base, layers.base)
            && same(self.location.as_ref(), layers.location)
            && same(self.tags.as_ref(), layers.tags)
    }
}

/// Merged layers of type `L` into `M`, per combination.
pub struct MergedCache<L, M>(Mutex<Recent<Key<L>, Entry<M>>>);

// Merged configs may hold values read from the environment: never printed.
impl<L, M> std::fmt::Debug for MergedCache<L, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergedCache")
            .field("kept", &self.lock().len())
            .finish()
    }
}

impl<L, M> Default for MergedCache<L, M> {
    fn default() -> MergedCache<L, M> {
        MergedCache(Mutex::new(Recent::new(KEPT)))
    }
}

impl<L, M: Footprint> MergedCache<L, M> {
    /// `merge(env)`, or what it gave for the same layers before while the
    /// environment it read still reads the same.
    pub fn get<E>(
        &self,
        layers: Layers<'_, L>,
        env: &dyn Env,
        merge: impl FnOnce(&dyn Env) -> Result<M, E>,
    ) -> Result<Arc<M>, E> {
        let hit = self
            .lock()
            .find(|key| key.is(&layers))
            .filter(|entry| still_reads(&entry.seen, env))
            .map(|entry| entry.value.clone());
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let entry = record(env, merge)?;
        let merged = entry.value.clone();
        // A layer only this launch holds was not kept by the layer cache (too
        // large, or its environment changed): the next launch gets another,
        // so keeping the merge would only hold memory.
        let kept = |layer: Option<&Arc<L>>| layer.is_none_or(|l| Arc::strong_count(l) > 1);
        let layers_kept = kept(Some(layers.base)) && kept(layers.location) && kept(layers.tags);
        if layers_kept && merged.bytes() <= MAX_KEPT_BYTES {
            let key = Key {
                version: layers.version,
                base: layers.base.clone(),
                location: layers.location.cloned(),
                tags: layers.tags.cloned(),
            };
            let mut cache = self.lock();
            // A merge under an older environment makes way for this one.
            cache.remove(|k| k.is(&layers));
            cache.keep(key, entry);
        }
        Ok(merged)
    }
}

impl<L, M> MergedCache<L, M> {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent<Key<L>, Entry<M>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// About how many bytes a merge holds.
pub trait Footprint {
    fn bytes(&self) -> usize;
}

impl Footprint for (ContainerContext, Vec<String>) {
    fn bytes(&self) -> usize {
        let (context, dropped) = self;
        user_bytes(&context.run_k8s_config) + opt_bytes(&context.namespace) + strings(dropped)
    }
}

impl Footprint for (FieldsContext, Vec<String>) {
    fn bytes(&self) -> usize {
        let (context, dropped) = self;
        fields_bytes(&context.fields)
            + user_bytes(&context.run_k8s_config)
            + opt_bytes(&context.namespace)
            + strings(dropped)
    }
}

fn user_bytes(user: &UserConfig) -> usize {
    Section::ALL.iter().map(|s| map_bytes(user.get(*s))).sum()
}

fn fields_bytes(f: &ContainerFields) -> usize {
    let values = |v: &[Value]| v.iter().map(value_bytes).sum::<usize>();
    opt_bytes(&f.image_pull_policy)
        + opt_bytes(&f.service_account_name)
        + opt_bytes(&f.scheduler_name)
        + strings(&f.env_config_maps)
        + strings(&f.env_secrets)
        + strings(&f.env_vars)
        + values(&f.image_pull_secrets)
        + values(&f.volume_mounts)
        + values(&f.volumes)
        + values(&f.env)
        + map_bytes(&f.labels)
        + map_bytes(&f.resources)
        + map_bytes(&f.security_context)
}

fn opt_bytes(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

fn strings(list: &[String]) -> usize {
    list.iter().map(|s| 16 + s.len()).sum()
}

#[cfg(test)]
mod tests;
