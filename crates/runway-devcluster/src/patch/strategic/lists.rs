//! Merging lists: keyed lists element by element, sets of scalars, and
//! the order upstream gives the result.

use serde_json::{Map, Value};

use super::{json_eq, smp_fresh, smp_object, ListStrategy, DIRECTIVE};
use crate::patch::go_type;
use crate::status::ApiError;

/// One element of a merged list, with what ordering needs.
struct Item {
    value: Value,
    /// Position in the original list (none for an element the patch added).
    orig: Option<usize>,
}

/// Merges a patch list into an original list with a merging strategy, then
/// orders the result as upstream does: elements named by the patch (or by
/// `$setElementOrder`) in that order, the others in their original order,
/// interleaved by original position where both are known.
pub(super) fn merge_list(
    orig: &[Value],
    patch: &[Value],
    strategy: ListStrategy,
    order: Option<&[Value]>,
    path: &str,
) -> Result<Vec<Value>, ApiError> {
    let (items, patch_rest): (Vec<Item>, Vec<&Value>) = match strategy {
        ListStrategy::Keyed(key) => match merge_keyed(orig, patch, key, path)? {
            Keyed::Replaced(list) => return Ok(list),
            Keyed::Merged(items, rest) => (items, rest),
        },
        ListStrategy::Set | ListStrategy::Replace => (union(orig, patch), patch.iter().collect()),
    };
    let key = match strategy {
        ListStrategy::Keyed(key) => Some(key),
        _ => None,
    };
    let wanted: Vec<&Value> = match order {
        Some(order) => order.iter().collect(),
        None => patch_rest,
    };
    let (named, server_only) = split_by_order(items, key, &wanted);
    Ok(interleave(server_only, named))
}

/// The original elements, then the patch's, each value once.
fn union(orig: &[Value], patch: &[Value]) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::with_capacity(orig.len() + patch.len());
    let originals = orig.iter().enumerate().map(|(i, v)| (Some(i), v));
    for (pos, v) in originals.chain(patch.iter().map(|v| (None, v))) {
        if !items.iter().any(|it| json_eq(&it.value, v)) {
            items.push(Item {
                value: v.clone(),
                orig: pos,
            });
        }
    }
    items
}

/// The elements named in the wanted order (sorted by it), and the others.
fn split_by_order(
    items: Vec<Item>,
    key: Option<&str>,
    wanted: &[&Value],
) -> (Vec<Item>, Vec<Item>) {
    let same = |a: &Value, b: &Value| match key {
        Some(key) => match (a.get(key), b.get(key)) {
            (Some(x), Some(y)) => json_eq(x, y),
            _ => false,
        },
        None => json_eq(a, b),
    };
    let mut named: Vec<(usize, Item)> = Vec::new();
    let mut server_only: Vec<Item> = Vec::new();
    for item in items {
        match wanted.iter().position(|o| same(o, &item.value)) {
            Some(pos) => named.push((pos, item)),
            None => server_only.push(item),
        }
    }
    named.sort_by_key(|(pos, _)| *pos);
    (
        named.into_iter().map(|(_, item)| item).collect(),
        server_only,
    )
}

/// Upstream `mergeSortedSlice(serverOnly, patchItems, original)`.
fn interleave(server_only: Vec<Item>, named: Vec<Item>) -> Vec<Value> {
    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = named.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!((l.orig, r.orig), (Some(li), Some(ri)) if li < ri),
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some(item) = next {
            out.push(item.value);
        }
    }
    out
}

enum Keyed<'a> {
    /// A `{"$patch": "replace"}` element: the list is the patch's elements.
    Replaced(Vec<Value>),
    /// The merged elements and the patch's non-directive elements.
    Merged(Vec<Item>, Vec<&'a Value>),
}

/// Merges a list of objects by a merge key.
fn merge_keyed<'a>(
    orig: &[Value],
    patch: &'a [Value],
    key: &str,
    path: &str,
) -> Result<Keyed<'a>, ApiError> {
    let mut items: Vec<Item> = orig
        .iter()
        .enumerate()
        .map(|(i, v)| Item {
            value: v.clone(),
            orig: Some(i),
        })
        .collect();
    let (rest, replace) = apply_directives(&mut items, patch, key, path)?;
    if replace {
        let mut list = Vec::with_capacity(rest.len());
        for element in rest {
            if let Some(v) = smp_fresh(element, "", None, path)? {
                list.push(v);
            }
        }
        return Ok(Keyed::Replaced(list));
    }
    for element in &rest {
        let want = key_of(element, key, path)?;
        let Value::Object(p) = element else {
            continue;
        };
        match items.iter_mut().find(|item| has_key(item, key, want)) {
            Some(item) => {
                if let Value::Object(existing) = &mut item.value {
                    // A `$patch` directive was taken out above, so the element stays.
                    smp_object(existing, p, path)?;
                }
            }
            None => {
                let mut fresh = Map::new();
                smp_object(&mut fresh, p, path)?;
                items.push(Item {
                    value: Value::Object(fresh),
                    orig: None,
                });
            }
        }
    }
    Ok(Keyed::Merged(items, rest))
}

/// Applies the `$patch` elements of a keyed patch list (`delete` removes the
/// element with that key); the other elements, and whether one said
/// `replace`.
fn apply_directives<'a>(
    items: &mut Vec<Item>,
    patch: &'a [Value],
    key: &str,
    path: &str,
) -> Result<(Vec<&'a Value>, bool), ApiError> {
    let mut rest: Vec<&Value> = Vec::with_capacity(patch.len());
    let mut replace = false;
    for element in patch {
        let Value::Object(map) = element else {
            return Err(ApiError::bad_request(format!(
                "list {path:?} merges by {key:?}, but a patch element is a {}: {element}",
                go_type(element)
            )));
        };
        let Some(directive) = map.get(DIRECTIVE) else {
            rest.push(element);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let want = key_of(element, key, path)?;
                items.retain(|item| !has_key(item, key, want));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(ApiError::bad_request(format!(
                    "merging lists cannot yet be specified in the patch (at {path:?})"
                )))
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown patch type: {directive} in list element {element} (at {path:?})"
                )))
            }
        }
    }
    Ok((rest, replace))
}

/// A patch element's merge key value; a keyed element must have one.
fn key_of<'a>(v: &'a Value, key: &str, path: &str) -> Result<&'a Value, ApiError> {
    v.get(key).ok_or_else(|| {
        ApiError::bad_request(format!(
            "map: {v} does not contain declared merge key: {key} (at {path:?})"
        ))
    })
}

fn has_key(item: &Item, key: &str, want: &Value) -> bool {
    item.value.get(key).is_some_and(|k| json_eq(k, want))
}
