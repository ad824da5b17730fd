use std::cell::Cell;
use std::collections::BTreeMap;

use super::*;
use crate::dagster::context::ContainerContext;
use crate::dagster::version::Target;

type Merged = (ContainerContext, Vec<String>);

fn layer(namespace: &str) -> Arc<ContainerContext> {
    Arc::new(ContainerContext {
        namespace: Some(namespace.into()),
        ..ContainerContext::default()
    })
}

/// A layer as the layer cache hands it out: the cache holds a copy too.
fn kept(namespace: &str) -> (Arc<ContainerContext>, Arc<ContainerContext>) {
    let layer = layer(namespace);
    (layer.clone(), layer)
}

fn layers<'a>(
    base: &'a Arc<ContainerContext>,
    tags: Option<&'a Arc<ContainerContext>>,
) -> Layers<'a, ContainerContext> {
    Layers {
        version: Target::newest().rules.version,
        base,
        location: None,
        tags,
    }
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A merge that counts its calls, reads `DROP` as an allowlist would, and
/// names its result after the call.
fn counted(calls: &Cell<usize>) -> impl FnOnce(&dyn Env) -> Result<Merged, ()> + '_ {
    |env| {
        calls.set(calls.get() + 1);
        let context = ContainerContext {
            namespace: Some(format!("merged-{}", calls.get())),
            ..ContainerContext::default()
        };
        Ok((context, env.var("DROP").into_iter().collect()))
    }
}

#[test]
fn the_same_layers_are_merged_once() {
    let cache = MergedCache::<ContainerContext, Merged>::default();
    let (base, _held) = kept("base");
    let (tags, _held_tags) = kept("tags");
    let e = env(&[("DROP", "SECRET_NAME")]);
    let calls = Cell::new(0);
    let first = cache.get(layers(&base, Some(&tags)), &e, counted(&calls));
    let again = cache.get(layers(&base, Some(&tags)), &e, counted(&calls));
    assert_eq!(calls.get(), 1);
    let (Ok(first), Ok(again)) = (first, again) else {
        panic!("the merge does not fail");
    };
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(again.1, vec!["SECRET_NAME".to_owned()]);
}

#[test]
fn other_layers_or_another_release_are_merged_anew() {
    let cache = MergedCache::<ContainerContext, Merged>::default();
    let (base, _held) = kept("base");
    let (tags, _held_tags) = kept("tags");
    // Equal in content, another layer: identity is the key.
    let (twin, _held_twin) = kept("tags");
    let e = env(&[]);
    let calls = Cell::new(0);
    let _ = cache.get(layers(&base, Some(&tags)), &e, counted(&calls));
    let _ = cache.get(layers(&base, Some(&twin)), &e, counted(&calls));
    let _ = cache.get(layers(&base, None), &e, counted(&calls));
    let location = Layers {
        location: Some(&tags),
        ..layers(&base, None)
    };
    let _ = cache.get(location, &e, counted(&calls));
    let Ok(old) = Target::parse("1.7.0") else {
        panic!("1.7.0 is a supported release");
    };
    let older = Layers {
        version: old.rules.version,
        ..layers(&base, Some(&tags))
    };
    let _ = cache.get(older, &e, counted(&calls));
    assert_eq!(calls.get(), 5);
    assert_eq!(cache.len(), 5);
}

#[test]
fn a_merge_is_made_again_when_the_environment_it_read_changed() {
    let cache = MergedCache::<ContainerContext, Merged>::default();
    let (base, _held) = kept("base");
    let calls = Cell::new(0);
    let one = env(&[("DROP", "ONE")]);
    let two = env(&[("DROP", "TWO")]);
    let _ = cache.get(layers(&base, None), &one, counted(&calls));
    let changed = cache.get(layers(&base, None), &two, counted(&calls));
    assert_eq!(calls.get(), 2);
    assert_eq!(changed.map(|m| m.1.clone()), Ok(vec!["TWO".to_owned()]));
    // The newer merge replaced the older one, and is answered from now on.
    assert_eq!(cache.len(), 1);
    let _ = cache.get(layers(&base, None), &two, counted(&calls));
    assert_eq!(calls.get(), 2);
}

#[test]
fn a_layer_nobody_else_keeps_and_a_failed_merge_are_not_kept() {
    let cache = MergedCache::<ContainerContext, Merged>::default();
    let (base, _held) = kept("base");
    let e = env(&[]);
    // Only this launch holds it: the layer cache did not keep it.
    let lone = layer("huge");
    let calls = Cell::new(0);
    let _ = cache.get(layers(&base, Some(&lone)), &e, counted(&calls));
    let _ = cache.get(layers(&base, Some(&lone)), &e, counted(&calls));
    assert_eq!(calls.get(), 2);
    assert_eq!(cache.len(), 0);
    let failed = cache.get(layers(&base, None), &e, |_| Err::<Merged, _>("refused"));
    assert_eq!(failed.err(), Some("refused"));
    assert_eq!(cache.len(), 0);
}

#[test]
fn a_large_merge_is_made_per_launch_and_not_kept() {
    let cache = MergedCache::<ContainerContext, Merged>::default();
    let (base, _held) = kept("base");
    let e = env(&[]);
    let calls = Cell::new(0);
    let large = || {
        calls.set(calls.get() + 1);
        let context = ContainerContext {
            namespace: Some("n".repeat(MAX_KEPT_BYTES + 1)),
            ..ContainerContext::default()
        };
        Ok::<Merged, ()>((context, Vec::new()))
    };
    let first = cache.get(layers(&base, None), &e, |_| large());
    let again = cache.get(layers(&base, None), &e, |_| large());
    assert!(first.is_ok() && again.is_ok());
    assert_eq!(calls.get(), 2);
    assert_eq!(cache.len(), 0);
}
