//! A launch's raw layers merged once per combination (Dagster 1.7 onward).
//!
//! The launcher's layer, each code location's and each tag config's are kept
//! as `Arc`s that are replaced, never changed, when their input or the
//! environment they read changes. Merging them (four deep copies of config
//! trees) was a sixth of a run Job's render; the merge of the same three
//! `Arc`s is the same, so it is kept under their identities and a launch
//! copies the result once.

use std::sync::{Arc, Mutex};

use super::super::ContainerContext;
use crate::dagster::version::DagsterVersion;
use crate::recent::Recent;

/// Combinations kept per launcher: the code locations and tag configs a
/// deployment launches at once.
const KEPT: usize = 16;

/// The layers of one launch, by identity.
#[derive(Debug)]
pub struct Layers<'a> {
    pub version: DagsterVersion,
    pub base: &'a Arc<ContainerContext>,
    pub location: Option<&'a Arc<ContainerContext>>,
    pub tags: Option<&'a Arc<ContainerContext>>,
}

/// The merged context and the env var names the allowlist dropped.
pub type MergedRaw = (ContainerContext, Vec<String>);

/// Holding the layers keeps them alive, so an address is never reused for
/// another layer while it is a key.
struct Key {
    version: DagsterVersion,
    base: Arc<ContainerContext>,
    location: Option<Arc<ContainerContext>>,
    tags: Option<Arc<ContainerContext>>,
}

impl Key {
    fn is(&self, layers: &Layers<'_>) -> bool {
        fn same(a: Option<&Arc<ContainerContext>>, b: Option<&Arc<ContainerContext>>) -> bool {
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

pub struct MergedCache(Mutex<Recent<Key, Arc<MergedRaw>>>);

impl Default for MergedCache {
    fn default() -> MergedCache {
        MergedCache(Mutex::new(Recent::new(KEPT)))
    }
}

impl MergedCache {
    /// `merge()`, or what it gave for the same layers before.
    pub fn get<E>(
        &self,
        layers: Layers<'_>,
        merge: impl FnOnce() -> Result<MergedRaw, E>,
    ) -> Result<Arc<MergedRaw>, E> {
        if let Some(hit) = self.lock().find(|key| key.is(&layers)) {
            return Ok(hit.clone());
        }
        let merged = Arc::new(merge()?);
        // A layer only this launch holds was too large to keep (see
        // `KEYED_MAX_ENTRY`): the next launch gets another, so keeping the
        // merge would only hold memory.
        let kept =
            |layer: Option<&Arc<ContainerContext>>| layer.is_none_or(|l| Arc::strong_count(l) > 1);
        if kept(Some(layers.base)) && kept(layers.location) && kept(layers.tags) {
            let key = Key {
                version: layers.version,
                base: layers.base.clone(),
                location: layers.location.cloned(),
                tags: layers.tags.cloned(),
            };
            let mut cache = self.lock();
            if cache.find(|k| k.is(&layers)).is_none() {
                cache.keep(key, merged.clone());
            }
        }
        Ok(merged)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent<Key, Arc<MergedRaw>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::dagster::version::Target;

    fn layer(namespace: &str) -> Arc<ContainerContext> {
        Arc::new(ContainerContext {
            namespace: Some(namespace.into()),
            ..ContainerContext::default()
        })
    }

    fn layers<'a>(
        base: &'a Arc<ContainerContext>,
        tags: Option<&'a Arc<ContainerContext>>,
    ) -> Layers<'a> {
        Layers {
            version: Target::newest().rules.version,
            base,
            location: None,
            tags,
        }
    }

    /// A merge that counts its calls and names its result `merged-<n>`.
    fn counted(calls: &Cell<usize>) -> impl FnOnce() -> Result<MergedRaw, ()> + '_ {
        || {
            calls.set(calls.get() + 1);
            let context = ContainerContext {
                namespace: Some(format!("merged-{}", calls.get())),
                ..ContainerContext::default()
            };
            Ok((context, vec!["DROPPED".into()]))
        }
    }

    /// Layers as the layer cache hands them out: it holds a copy too.
    fn kept(layer: &Arc<ContainerContext>) -> (Arc<ContainerContext>, Arc<ContainerContext>) {
        (layer.clone(), layer.clone())
    }

    #[test]
    fn the_same_layers_are_merged_once() {
        let cache = MergedCache::default();
        let (base, _held) = kept(&layer("base"));
        let (tags, _held_tags) = kept(&layer("tags"));
        let calls = Cell::new(0);
        let first = cache.get(layers(&base, Some(&tags)), counted(&calls));
        let again = cache.get(layers(&base, Some(&tags)), counted(&calls));
        assert_eq!(calls.get(), 1);
        let (Ok(first), Ok(again)) = (first, again) else {
            panic!("the merge does not fail");
        };
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(again.1, vec!["DROPPED".to_owned()]);
    }

    #[test]
    fn other_layers_or_another_release_are_merged_anew() {
        let cache = MergedCache::default();
        let (base, _held) = kept(&layer("base"));
        let (tags, _held_tags) = kept(&layer("tags"));
        // Equal in content, another layer: identity is the key.
        let (twin, _held_twin) = kept(&layer("tags"));
        let calls = Cell::new(0);
        let _ = cache.get(layers(&base, Some(&tags)), counted(&calls));
        let _ = cache.get(layers(&base, Some(&twin)), counted(&calls));
        let _ = cache.get(layers(&base, None), counted(&calls));
        let location = Layers {
            location: Some(&tags),
            ..layers(&base, None)
        };
        let _ = cache.get(location, counted(&calls));
        let Ok(old) = Target::parse("1.7.0") else {
            panic!("1.7.0 is a supported release");
        };
        let older = Layers {
            version: old.rules.version,
            ..layers(&base, Some(&tags))
        };
        let _ = cache.get(older, counted(&calls));
        assert_eq!(calls.get(), 5);
    }

    #[test]
    fn a_layer_nobody_else_keeps_and_a_failed_merge_are_not_kept() {
        let cache = MergedCache::default();
        let (base, _held) = kept(&layer("base"));
        // Only this launch holds it: the layer cache did not keep it.
        let lone = layer("huge");
        let calls = Cell::new(0);
        let _ = cache.get(layers(&base, Some(&lone)), counted(&calls));
        let _ = cache.get(layers(&base, Some(&lone)), counted(&calls));
        assert_eq!(calls.get(), 2);
        assert!(cache.lock().is_empty());
        let failed = cache.get(layers(&base, None), || Err::<MergedRaw, _>("refused"));
        assert_eq!(failed.err(), Some("refused"));
        assert!(cache.lock().is_empty());
    }
}
