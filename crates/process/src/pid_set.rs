//! A set of PIDs for a process's relations that holds one PID without a table.
//!
//! Most processes that monitor or link at all do so with one other process: a relay
//! connection monitors its target, a per-connection target is monitored by its connection.
//! A `HashSet` for that one PID costs a heap block for the table and 16 bytes of hasher state
//! in every set; this holds it in place and switches to a table at the second PID
//! (docs/OPERATIONS.md, "Memory per connection").

use std::collections::HashSet;

use crate::Pid;

/// A set of PIDs: empty, one PID in place, or a table (boxed, so the set is two words).
#[derive(Default)]
pub(crate) enum PidSet {
    #[default]
    Empty,
    One(Pid),
    // Boxed on purpose: a `HashSet` in place would make every set (and every process's
    // `Relations`) six words instead of two, for the rare process with many relations.
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<Pid>>),
}

impl PidSet {
    /// Adds `pid`; whether it was new.
    pub(crate) fn insert(&mut self, pid: Pid) -> bool {
        match self {
            PidSet::Empty => {
                *self = PidSet::One(pid);
                true
            }
            PidSet::One(one) if *one == pid => false,
            PidSet::One(one) => {
                let one = one.clone();
                *self = PidSet::Many(Box::new(HashSet::from([one, pid])));
                true
            }
            PidSet::Many(many) => many.insert(pid),
        }
    }

    /// Removes `pid`; whether it was there.
    pub(crate) fn remove(&mut self, pid: &Pid) -> bool {
        match self {
            PidSet::Empty => false,
            PidSet::One(one) if one == pid => {
                *self = PidSet::Empty;
                true
            }
            PidSet::One(_) => false,
            PidSet::Many(many) => many.remove(pid),
        }
    }

    /// How many PIDs the set holds.
    pub(crate) fn len(&self) -> usize {
        match self {
            PidSet::Empty => 0,
            PidSet::One(_) => 1,
            PidSet::Many(many) => many.len(),
        }
    }

    /// The PIDs, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Pid> {
        let (one, many) = match self {
            PidSet::Empty => (None, None),
            PidSet::One(one) => (Some(one), None),
            PidSet::Many(many) => (None, Some(many.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

impl IntoIterator for PidSet {
    type Item = Pid;
    type IntoIter =
        std::iter::Chain<std::option::IntoIter<Pid>, std::collections::hash_set::IntoIter<Pid>>;

    fn into_iter(self) -> Self::IntoIter {
        let (one, many) = match self {
            PidSet::Empty => (None, HashSet::new()),
            PidSet::One(one) => (Some(one), HashSet::new()),
            PidSet::Many(many) => (None, *many),
        };
        one.into_iter().chain(many)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(id: u64) -> Pid {
        Pid::new("n", "h", id)
    }

    #[test]
    fn holds_one_in_place_and_more_in_a_table() {
        let mut set = PidSet::default();
        assert!(set.insert(pid(1)));
        assert!(!set.insert(pid(1)));
        assert!(matches!(set, PidSet::One(_)));
        assert!(set.insert(pid(2)));
        assert!(set.insert(pid(3)));
        assert_eq!(set.len(), 3);
        assert!(set.remove(&pid(2)));
        assert!(!set.remove(&pid(2)));
        let mut left: Vec<u64> = set.iter().map(Pid::id).collect();
        left.sort_unstable();
        assert_eq!(left, [1, 3]);
        assert_eq!(set.into_iter().count(), 2);
    }

    #[test]
    fn removing_the_one_empties_it() {
        let mut set = PidSet::default();
        set.insert(pid(1));
        assert!(!set.remove(&pid(2)));
        assert!(set.remove(&pid(1)));
        assert_eq!(set.len(), 0);
        assert_eq!(set.iter().count(), 0);
        assert!(set.insert(pid(2)));
        assert_eq!(set.into_iter().collect::<Vec<_>>(), [pid(2)]);
    }

    #[test]
    fn is_two_words() {
        assert_eq!(std::mem::size_of::<PidSet>(), 16);
    }
}
