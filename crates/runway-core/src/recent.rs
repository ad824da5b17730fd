//! The last few values computed from inputs that tend to repeat (an
//! instance's storage, a step's configs), found by comparing inputs, so a hit
//! is exact and needs no hash of a JSON tree. The caller decides what a key
//! is and how the store is shared; a failure is never kept.

use std::collections::VecDeque;

/// At most `capacity` entries; the oldest makes room for a new one.
#[derive(Debug)]
pub struct Recent<K, V> {
    entries: VecDeque<(K, V)>,
    capacity: usize,
}

impl<K, V> Recent<K, V> {
    pub const fn new(capacity: usize) -> Recent<K, V> {
        Recent {
            entries: VecDeque::new(),
            capacity,
        }
    }

    /// The value kept for the first key `matches` accepts.
    pub fn find(&self, matches: impl Fn(&K) -> bool) -> Option<&V> {
        self.entries
            .iter()
            .find(|(key, _)| matches(key))
            .map(|(_, value)| value)
    }

    /// Keeps `value` for `key`, dropping the oldest entry when full.
    pub fn keep(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((key, value));
    }

    /// Drops every entry whose key `matches` accepts.
    pub fn remove(&mut self, matches: impl Fn(&K) -> bool) {
        self.entries.retain(|(key, _)| !matches(key));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_key_and_drops_the_oldest_beyond_capacity() {
        let mut recent = Recent::new(2);
        assert!(recent.is_empty());
        recent.keep("a", 1);
        recent.keep("b", 2);
        assert_eq!(recent.find(|k| *k == "a"), Some(&1));
        recent.keep("c", 3);
        assert_eq!(recent.len(), 2);
        assert_eq!(recent.find(|k| *k == "a"), None);
        assert_eq!(recent.find(|k| *k == "b"), Some(&2));
        assert_eq!(recent.find(|k| *k == "c"), Some(&3));
        recent.remove(|k| *k == "b");
        assert_eq!(recent.find(|k| *k == "b"), None);
        assert_eq!(recent.len(), 1);
    }

    #[test]
    fn a_store_of_no_capacity_keeps_nothing() {
        let mut recent = Recent::new(0);
        recent.keep("a", 1);
        assert_eq!(recent.find(|_| true), None);
    }
}
