//! The key sets of the label and owner indexes. Most label values and owner
//! uids name one object (`job-name=`, `controller-uid=`, a run id), and a
//! `BTreeSet` spends a whole node (eleven keys) on one; a short sorted `Vec`
//! holds those, and a set that grows past it becomes a `BTreeSet`.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::Key;

/// Above this many keys, a B-tree (sorted-Vec inserts shift the tail).
const FEW: usize = 8;

#[derive(Debug)]
pub(super) enum KeySet {
    Few(Vec<Key>),
    Many(BTreeSet<Key>),
}

impl Default for KeySet {
    fn default() -> Self {
        KeySet::Few(Vec::new())
    }
}

impl KeySet {
    pub(super) fn insert(&mut self, key: Key) {
        match self {
            KeySet::Few(keys) => {
                let Err(at) = keys.binary_search(&key) else {
                    return;
                };
                if keys.len() < FEW {
                    keys.reserve_exact(1);
                    keys.insert(at, key);
                } else {
                    let mut set: BTreeSet<Key> = std::mem::take(keys).into_iter().collect();
                    set.insert(key);
                    *self = KeySet::Many(set);
                }
            }
            KeySet::Many(set) => {
                set.insert(key);
            }
        }
    }

    pub(super) fn remove(&mut self, key: &Key) {
        match self {
            KeySet::Few(keys) => {
                if let Ok(at) = keys.binary_search(key) {
                    keys.remove(at);
                    keys.shrink_to_fit();
                }
            }
            KeySet::Many(set) => {
                set.remove(key);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            KeySet::Few(keys) => keys.len(),
            KeySet::Many(set) => set.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys from `start` on, in order.
    pub(super) fn range_from<'a>(
        &'a self,
        start: Bound<&Key>,
    ) -> Box<dyn Iterator<Item = &'a Key> + 'a> {
        match self {
            KeySet::Few(keys) => {
                let from = match start {
                    Bound::Included(k) => keys.partition_point(|x| x < k),
                    Bound::Excluded(k) => keys.partition_point(|x| x <= k),
                    Bound::Unbounded => 0,
                };
                Box::new(keys[from..].iter())
            }
            KeySet::Many(set) => Box::new(set.range::<Key, _>((start, Bound::Unbounded))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Kind;

    fn key(n: usize) -> Key {
        Key::new(Kind::Pod, "ns", &format!("p{n:02}"))
    }

    #[test]
    fn stays_ordered_and_deduplicated_across_the_switch_to_a_tree() {
        let mut few = KeySet::default();
        let mut reference = BTreeSet::new();
        // Out of order, with repeats, growing past FEW and shrinking back.
        for n in [5, 1, 9, 1, 3, 12, 7, 0, 11, 2, 5, 10, 4] {
            few.insert(key(n));
            reference.insert(key(n));
            assert_eq!(few.len(), reference.len());
        }
        assert!(matches!(few, KeySet::Many(_)));
        for n in [1, 12, 40] {
            few.remove(&key(n));
            reference.remove(&key(n));
        }
        let from = key(4);
        for start in [
            Bound::Included(&from),
            Bound::Excluded(&from),
            Bound::Unbounded,
        ] {
            let got: Vec<&Key> = few.range_from(start).collect();
            let want: Vec<&Key> = reference
                .range::<Key, _>((start, Bound::Unbounded))
                .collect();
            assert_eq!(got, want);
        }
        let mut small = KeySet::default();
        for n in [3, 1, 2] {
            small.insert(key(n));
        }
        small.remove(&key(2));
        let got: Vec<&Key> = small.range_from(Bound::Excluded(&key(1))).collect();
        assert_eq!(got, vec![&key(3)]);
        assert!(!small.is_empty());
    }
}
