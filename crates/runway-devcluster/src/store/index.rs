//! The label and owner indexes: current objects by label key and value
//! (Dagster and the Job controller list pods by `job-name=` or
//! `dagster/run-id=`), and by the uid of each of their owner references (the
//! garbage collector's dependents).

use std::ops::Bound;

use super::{Key, KeySet, Obj, Store, Stored};
use crate::validate::Kind;

/// What no label index entry holds.
static NO_KEYS: KeySet = KeySet::Few(Vec::new());

impl Store {
    /// Current objects of `kind` in `namespace` with an owner reference to
    /// `uid`, in key order.
    pub fn owned_by(&self, kind: Kind, namespace: &str, uid: &str) -> Vec<Obj> {
        let lo = Key::new(kind, namespace, "");
        self.by_owner
            .get(uid)
            .into_iter()
            .flat_map(|keys| keys.range_from(Bound::Included(&lo)))
            .take_while(|k| k.kind == kind as u8 && k.namespace == namespace)
            .filter_map(|k| self.objects.get(k).cloned())
            .collect()
    }

    /// The index entry of the term with the fewest objects; `None` when
    /// there are no terms (scan the kind).
    pub(super) fn rarest(&self, terms: &[(&str, &str)]) -> Option<&KeySet> {
        terms
            .iter()
            .map(|(k, v)| {
                self.by_label
                    .get(*k)
                    .and_then(|values| values.get(*v))
                    .unwrap_or(&NO_KEYS)
            })
            .min_by_key(|keys| keys.len())
    }

    pub(super) fn index(&mut self, key: &Key, obj: &Stored) {
        for (k, v) in obj.labels() {
            self.by_label
                .entry(k.to_owned())
                .or_default()
                .entry(v.to_owned())
                .or_default()
                .insert(key.clone());
        }
        for uid in owner_uids(obj) {
            self.by_owner
                .entry(uid.to_owned())
                .or_default()
                .insert(key.clone());
        }
    }

    pub(super) fn unindex(&mut self, key: &Key, obj: &Stored) {
        for (k, v) in obj.labels() {
            if let Some(values) = self.by_label.get_mut(k) {
                if let Some(keys) = values.get_mut(v) {
                    keys.remove(key);
                    if keys.is_empty() {
                        values.remove(v);
                    }
                }
                if values.is_empty() {
                    self.by_label.remove(k);
                }
            }
        }
        for uid in owner_uids(obj) {
            if let Some(keys) = self.by_owner.get_mut(uid) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_owner.remove(uid);
                }
            }
        }
    }
}

fn owner_uids(obj: &Stored) -> impl Iterator<Item = &str> {
    obj.owners().iter().map(|o| &*o.uid)
}
