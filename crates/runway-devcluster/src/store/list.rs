//! Lists: objects of a kind in key order (namespace/name, as etcd returns
//! them), at the current revision or a snapshot, a page at a time.

use std::collections::BTreeMap;

use super::{too_old, Key, ListPage, ListQuery, Obj, Store, Stored};
use crate::status::ApiError;
use crate::validate::Kind;

impl Store {
    /// Objects of a kind in key order (namespace/name, as etcd returns them),
    /// filtered by `keep`, at the current revision or a snapshot.
    pub fn list(
        &self,
        q: &ListQuery<'_>,
        mut keep: impl FnMut(&Stored) -> bool,
    ) -> Result<ListPage, ApiError> {
        let at = q.at.unwrap_or(self.rev);
        if at > self.rev {
            return Err(ApiError::too_large_resource_version(at, self.rev));
        }
        let lo = Key {
            kind: q.kind as u8,
            namespace: q.namespace.unwrap_or("").to_owned(),
            name: String::new(),
        };
        let in_scope =
            |k: &Key| k.kind == q.kind as u8 && q.namespace.is_none_or(|ns| k.namespace == ns);
        let start = match q.after {
            Some(after) if *after >= lo => std::ops::Bound::Excluded(after.clone()),
            _ => std::ops::Bound::Included(lo),
        };
        let range = (start, std::ops::Bound::Unbounded);
        let snapshot;
        let source: Box<dyn Iterator<Item = (&Key, &Obj)>> = if at != self.rev {
            snapshot = self.snapshot(q.kind, at)?;
            Box::new(snapshot.range(range))
        } else if let Some(keys) = self.rarest(q.labels) {
            Box::new(
                keys.range_from(range.0.as_ref())
                    .filter_map(|k| self.objects.get_key_value(k)),
            )
        } else {
            Box::new(self.objects.range(range))
        };
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0u64;
        for (key, obj) in source {
            if !in_scope(key) {
                break;
            }
            if !has_labels(obj, q.labels) || !keep(obj) {
                continue;
            }
            if q.limit > 0 && items.len() == q.limit {
                remaining += 1;
                continue;
            }
            if q.limit > 0 && items.len() + 1 == q.limit {
                next = Some(key.clone());
            }
            items.push(obj.clone());
        }
        if remaining == 0 {
            next = None;
        }
        Ok(ListPage {
            items,
            rev: at,
            next,
            remaining,
        })
    }

    /// The objects of `kind` as they were at `rev`, undoing later changes.
    fn snapshot(&self, kind: Kind, rev: u64) -> Result<BTreeMap<Key, Obj>, ApiError> {
        if rev < self.compacted {
            return Err(too_old(rev, self.compacted));
        }
        let mut map: BTreeMap<Key, Obj> = self
            .objects
            .iter()
            .filter(|(k, _)| k.kind == kind as u8)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for event in self.log.iter().rev().take_while(|e| e.rev > rev) {
            if event.kind as u8 != kind as u8 {
                continue;
            }
            let key = Key::of(kind, &event.object);
            match &event.prev {
                Some(prev) => {
                    map.insert(key, prev.clone());
                }
                None => {
                    map.remove(&key);
                }
            }
        }
        Ok(map)
    }
}

fn has_labels(obj: &Stored, terms: &[(&str, &str)]) -> bool {
    terms
        .iter()
        .all(|(k, v)| obj.label(k).flatten() == Some(*v))
}
