//! Envelopes for a run of a peer that this node has not heard from yet, waiting for a
//! session that run can accept (`PeerState::held`; why in module `routing`).
//!
//! A restarted node accepts a session only from its first frame. If this node's current
//! session towards it carried frames before the restart, the new run takes the next one as a
//! gap and ends its side; sent there, a monitor of one of its PIDs would be failed with
//! `noconnection` for a connection it never spanned. So such envelopes wait here, in order,
//! until the new run is heard and a session meant for it carries them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::peer::Relation;

/// One envelope waiting.
#[derive(Debug)]
pub(crate) struct Waiting {
    /// The run of the peer it is for.
    pub(crate) inc: u32,
    /// Its lane in the peer's queue.
    pub(crate) lane: u64,
    pub(crate) bytes: Bytes,
    pub(crate) made: Instant,
    /// The monitor or link it announces: failed if its run is not heard from in time.
    pub(crate) rel: Option<Relation>,
}

/// The envelopes waiting for runs of one peer, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Held {
    items: VecDeque<Waiting>,
    /// The runs with an envelope waiting (almost always none or one).
    runs: Vec<u32>,
    bytes: usize,
}

impl Held {
    /// Whether an envelope for run `inc` is waiting: later ones for it wait too, behind it.
    pub(crate) fn holds(&self, inc: u32) -> bool {
        self.runs.contains(&inc)
    }

    /// Whether another envelope of `bytes` would exceed `max` envelopes or `max_bytes`.
    pub(crate) fn is_full(&self, bytes: usize, max: usize, max_bytes: usize) -> bool {
        self.items.len() >= max || self.bytes + bytes > max_bytes
    }

    pub(crate) fn push(&mut self, waiting: Waiting) {
        if !self.runs.contains(&waiting.inc) {
            self.runs.push(waiting.inc);
        }
        self.bytes += waiting.bytes.len();
        self.items.push_back(waiting);
    }

    /// Takes everything: the envelopes for run `inc` in order, and how many others there were
    /// (their run is not the one heard, or the connection ended: they are dropped).
    pub(crate) fn take_for(&mut self, inc: Option<u32>) -> (Vec<Waiting>, usize) {
        self.runs.clear();
        self.bytes = 0;
        let (keep, drop): (Vec<Waiting>, Vec<Waiting>) =
            self.items.drain(..).partition(|w| Some(w.inc) == inc);
        (keep, drop.len())
    }

    /// Takes the envelopes that have waited `after` or longer by `now`.
    pub(crate) fn expire(&mut self, now: Instant, after: Duration) -> Vec<Waiting> {
        let mut expired = Vec::new();
        while let Some(w) = self.items.front() {
            if now.saturating_duration_since(w.made) < after {
                break;
            }
            let w = self.items.pop_front().expect("looked at above");
            self.bytes -= w.bytes.len();
            expired.push(w);
        }
        if !expired.is_empty() {
            self.runs.clear();
            for w in &self.items {
                if !self.runs.contains(&w.inc) {
                    self.runs.push(w.inc);
                }
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(inc: u32, made: Instant, n: u8) -> Waiting {
        Waiting {
            inc,
            lane: 0,
            bytes: Bytes::from(vec![n; 10]),
            made,
            rel: None,
        }
    }

    #[test]
    fn a_run_is_held_until_its_envelopes_are_taken_in_order() {
        let now = Instant::now();
        let mut held = Held::default();
        assert!(!held.holds(7));
        held.push(waiting(7, now, 1));
        held.push(waiting(8, now, 2));
        held.push(waiting(7, now, 3));
        assert!(held.holds(7) && held.holds(8) && !held.holds(9));
        assert!(held.is_full(1, 3, 1 << 20) && held.is_full(1000, 10, 1000));
        assert!(!held.is_full(10, 4, 40));
        let (kept, dropped) = held.take_for(Some(7));
        let order: Vec<u8> = kept.iter().map(|w| w.bytes[0]).collect();
        assert_eq!((order, dropped), (vec![1, 3], 1));
        assert!(!held.holds(7) && !held.holds(8) && !held.is_full(10, 1, 10));
    }

    #[test]
    fn envelopes_waiting_too_long_expire_oldest_first() {
        let start = Instant::now();
        let later = start + Duration::from_secs(2);
        let mut held = Held::default();
        held.push(waiting(7, start, 1));
        held.push(waiting(8, later, 2));
        let expired = held.expire(start + Duration::from_secs(3), Duration::from_secs(3));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].bytes[0], 1);
        assert!(!held.holds(7) && held.holds(8));
        assert!(held.expire(later, Duration::from_secs(3)).is_empty());
    }
}
