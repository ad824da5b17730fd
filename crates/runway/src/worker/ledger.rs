//! Which tasks this worker is running and which it finished lately, with
//! the deliveries it holds for each. A redelivery of a running task joins
//! it (its delivery is acknowledged when the one run ends); a redelivery of
//! a finished one is acknowledged against the stored result.

use std::collections::{HashMap, HashSet, VecDeque};

/// How many finished task ids are remembered.
pub const DONE_MAX: usize = 100_000;

/// What a delivery of a task meets here.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// Nothing: this delivery starts the task.
    Started,
    /// The task is running here: the delivery joined it.
    Joined,
}

/// Running tasks with their held deliveries, and a bounded memory of
/// finished ones.
#[derive(Debug)]
pub struct Ledger<A> {
    running: HashMap<String, Vec<A>>,
    done: HashSet<String>,
    done_order: VecDeque<String>,
}

impl<A> Default for Ledger<A> {
    fn default() -> Self {
        Ledger {
            running: HashMap::new(),
            done: HashSet::new(),
            done_order: VecDeque::new(),
        }
    }
}

impl<A> Ledger<A> {
    /// Records a delivery of `id`: it starts the task, or joins the run.
    pub fn enter(&mut self, id: &str, ack: A) -> Entry {
        match self.running.get_mut(id) {
            Some(held) => {
                held.push(ack);
                Entry::Joined
            }
            None => {
                self.running.insert(id.to_owned(), vec![ack]);
                Entry::Started
            }
        }
    }

    /// Whether `id` finished here lately (its result is stored).
    pub fn is_done(&self, id: &str) -> bool {
        self.done.contains(id)
    }

    pub fn is_running(&self, id: &str) -> bool {
        self.running.contains_key(id)
    }

    /// The deliveries held for `id`, leaving it running with none (they
    /// were handed to a parked copy).
    pub fn take_held(&mut self, id: &str) -> Vec<A> {
        self.running
            .get_mut(id)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Gives deliveries back to a running task (parking failed).
    pub fn give_back(&mut self, id: &str, acks: Vec<A>) -> Result<(), Vec<A>> {
        match self.running.get_mut(id) {
            Some(held) => {
                held.extend(acks);
                Ok(())
            }
            None => Err(acks),
        }
    }

    /// Ends `id`'s run: its deliveries, for acknowledgement or requeue.
    pub fn end(&mut self, id: &str) -> Vec<A> {
        self.running.remove(id).unwrap_or_default()
    }

    /// Remembers that `id`'s result is stored.
    pub fn mark_done(&mut self, id: &str) {
        if self.done.insert(id.to_owned()) {
            self.done_order.push_back(id.to_owned());
            if self.done_order.len() > DONE_MAX {
                if let Some(old) = self.done_order.pop_front() {
                    self.done.remove(&old);
                }
            }
        }
    }

    /// Ends `id`'s run with its result stored: later deliveries of it find
    /// it done. Marked done before the run ends, so a delivery that finds
    /// no run finds the result.
    pub fn finish(&mut self, id: &str) -> Vec<A> {
        self.mark_done(id);
        self.end(id)
    }

    /// Every held delivery of every running task (the grace period ran out).
    pub fn drain(&mut self) -> Vec<A> {
        self.running.drain().flat_map(|(_, a)| a).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redeliveries_join_the_run_and_leave_with_it() {
        let mut l = Ledger::default();
        assert_eq!(l.enter("t", 1), Entry::Started);
        assert_eq!(l.enter("t", 2), Entry::Joined);
        assert_eq!(l.enter("u", 3), Entry::Started);
        assert!(l.is_running("t") && !l.is_done("t"));
        assert_eq!(l.finish("t"), vec![1, 2]);
        assert!(l.is_done("t") && !l.is_running("t"));
        assert_eq!(l.end("u"), vec![3]);
        assert!(
            !l.is_done("u"),
            "a run that ended without a result is not done"
        );
    }

    #[test]
    fn parked_deliveries_leave_the_run_running() {
        let mut l = Ledger::default();
        l.enter("t", 1);
        l.enter("t", 2);
        assert_eq!(l.take_held("t"), vec![1, 2]);
        assert!(l.is_running("t"));
        assert_eq!(l.enter("t", 3), Entry::Joined, "the parked copy joins");
        assert_eq!(l.give_back("t", vec![1]), Ok(()));
        assert_eq!(l.finish("t"), vec![3, 1]);
        assert_eq!(l.give_back("t", vec![9]), Err(vec![9]));
    }

    #[test]
    fn finished_ids_are_remembered_up_to_a_bound() {
        let mut l: Ledger<u8> = Ledger::default();
        for i in 0..=DONE_MAX {
            l.finish(&i.to_string());
        }
        assert!(!l.is_done("0"), "the oldest is forgotten");
        assert!(l.is_done("1") && l.is_done(&DONE_MAX.to_string()));
    }

    #[test]
    fn drain_returns_every_held_delivery() {
        let mut l = Ledger::default();
        l.enter("a", 1);
        l.enter("a", 2);
        l.enter("b", 3);
        let mut all = l.drain();
        all.sort();
        assert_eq!(all, vec![1, 2, 3]);
        assert!(!l.is_running("a"));
    }
}
