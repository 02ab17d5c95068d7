//! The outbound queue of one peer: one *lane* per sending process, served deficit round
//! robin by bytes, so a process sending large messages cannot starve the small messages of
//! others to the same node (`docs/cluster-design.md §2`, "Flow control").
//!
//! Everything a process sends to the node — messages and its signals (monitor, link, exit,
//! link-down …) — goes into its lane, so the order per sender (Erlang's order per sender and
//! receiver, and more) is kept; envelopes that speak for no process (terminate, sends
//! without a sender) share one lane of the node. Group membership waits apart, coalesced,
//! and goes first in every batch (module `announce`). Lanes exist only while
//! they hold envelopes, and at most [`MAX_LANES`] at once: a sender without a lane when
//! they are all taken queues in one shared overflow lane, and while that lane holds anything
//! no new lane opens, so no sender can have envelopes in two lanes at once.
//!
//! The queue lives in the peer's state, under the peer's lock: senders already take that
//! lock to stamp the connection epoch, and the writer takes it once per batch.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::announce::Announcements;
use crate::batch::{BatchLimits, Out};

/// Lanes open at once per peer at most (besides the overflow lane).
pub(crate) const MAX_LANES: usize = 1024;
/// Bytes a lane may send per round: fairness is measured in these.
const QUANTUM: usize = 16 << 10;
/// The lane of senders that found every lane taken.
const OVERFLOW_LANE: u64 = u64::MAX - 1;
/// Emptied lanes kept for reuse (their buffers), so a sender that sends one message at a
/// time does not allocate one each time.
const SPARE_LANES: usize = 16;
/// A spare lane's buffer larger than this is freed rather than kept.
const SPARE_CAPACITY: usize = 1024;

/// What [`Lanes::take`] moved into a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Taken {
    /// Envelopes of the lanes (what the queue's counts hold).
    pub(crate) envelopes: usize,
    /// Their bytes.
    pub(crate) bytes: usize,
    /// `GroupSet` envelopes of the announcements, which the counts do not hold.
    pub(crate) group_sets: usize,
}

/// The per-sender lanes of one peer and its membership announcements; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    /// Group membership, sent ahead of the lanes.
    pub(crate) announcements: Announcements,
    lanes: HashMap<u64, Lane, BuildHasherDefault<IdHasher>>,
    /// The lanes holding envelopes, in the order they are served.
    ring: VecDeque<u64>,
    spare: Vec<VecDeque<Out>>,
}

#[derive(Debug, Default)]
struct Lane {
    queue: VecDeque<Out>,
    /// The bytes of the envelopes in `queue`.
    bytes: usize,
    /// Bytes the lane may still send in this round.
    deficit: usize,
}

/// What one sender holds of the queue, and how many lanes share it ([`Lanes::share`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Share {
    /// Envelopes in the sender's lane.
    pub(crate) envelopes: usize,
    /// Their bytes.
    pub(crate) bytes: usize,
    /// Lanes holding envelopes (the overflow lane included).
    pub(crate) lanes: usize,
}

impl Lanes {
    /// Queues `out` in the lane of `sender` ([`NODE_LANE`](crate::envelope::NODE_LANE) for none); true if the queue was
    /// empty before (the writer may be waiting).
    pub(crate) fn push(&mut self, sender: u64, out: Out) -> bool {
        if let Some(lane) = self.lanes.get_mut(&sender) {
            lane.bytes += out.bytes.len();
            lane.queue.push_back(out);
            return false;
        }
        let was_empty = self.ring.is_empty();
        let key = if self.lanes.len() >= MAX_LANES || self.lanes.contains_key(&OVERFLOW_LANE) {
            OVERFLOW_LANE
        } else {
            sender
        };
        let lane = self.lanes.entry(key).or_insert_with(|| {
            self.ring.push_back(key);
            Lane {
                queue: self.spare.pop().unwrap_or_default(),
                bytes: 0,
                deficit: QUANTUM,
            }
        });
        lane.bytes += out.bytes.len();
        lane.queue.push_back(out);
        was_empty
    }

    /// What `sender` holds of the queue: its lane's, or, when it has none and the overflow
    /// lane is open (where its next envelope would wait), the overflow lane's.
    pub(crate) fn share(&self, sender: u64) -> Share {
        let lane = self
            .lanes
            .get(&sender)
            .or_else(|| self.lanes.get(&OVERFLOW_LANE));
        Share {
            envelopes: lane.map_or(0, |l| l.queue.len()),
            bytes: lane.map_or(0, |l| l.bytes),
            lanes: self.lanes.len(),
        }
    }

    /// Whether nothing waits, in the lanes or the announcements.
    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty() && self.announcements.is_empty()
    }

    /// Moves envelopes into `batch` within `limits`: the membership announcements first
    /// (module `announce`), then the lanes, deficit round robin: each visit adds
    /// [`QUANTUM`] to a lane's deficit, and a lane sends while its next envelope fits the
    /// deficit. An envelope that does not fit the batch any more leads the next one; the
    /// first envelope of a batch always goes, whatever its size.
    pub(crate) fn take(&mut self, batch: &mut Vec<Out>, limits: BatchLimits) -> Taken {
        let mut framed = batch.iter().map(|o| o.bytes.len() + 4).sum::<usize>();
        let group_sets = self.announcements.take(batch, limits, &mut framed);
        let before = batch.len();
        let bytes = self.take_counting(batch, limits).0;
        Taken {
            envelopes: batch.len() - before,
            bytes,
            group_sets,
        }
    }

    /// [`Lanes::take`], also returning the lane visits it made (what the tests bound).
    ///
    /// A visit that sends nothing only pays the lane its next quantum. When a whole turn of
    /// the ring sends nothing (every head larger than its lane's deficit), the turns until
    /// the first lane can send are paid to every lane in one step ([`Lanes::skip_rounds`])
    /// instead of one quantum per visit: with 1,024 lanes of 1 MiB heads that was some
    /// 64 turns of the ring under the peer's lock. The order is the same as quantum by
    /// quantum, since idle turns change nothing but the deficits.
    fn take_counting(&mut self, batch: &mut Vec<Out>, limits: BatchLimits) -> (usize, usize) {
        let mut framed = batch.iter().map(|o| o.bytes.len() + 4).sum::<usize>();
        let mut moved = 0;
        let mut visits = 0;
        // Visits in a row that sent nothing.
        let mut idle = 0;
        while let Some(&key) = self.ring.front() {
            if idle > 0 && idle == self.ring.len() {
                self.skip_rounds();
                idle = 0;
            }
            visits += 1;
            let alone = self.ring.len() == 1;
            let Some(lane) = self.lanes.get_mut(&key) else {
                self.ring.pop_front();
                // The turn is not whole any more: count it again from here.
                idle = 0;
                continue;
            };
            let mut sent = false;
            while let Some(next) = lane.queue.front() {
                let len = next.bytes.len();
                let fits = batch.is_empty() || framed + len + 4 <= limits.bytes;
                if batch.len() >= limits.envelopes || !fits {
                    return (moved, visits);
                }
                if len > lane.deficit && !alone {
                    break;
                }
                lane.deficit = lane.deficit.saturating_sub(len);
                lane.bytes -= len;
                framed += len + 4;
                moved += len;
                sent = true;
                batch.extend(lane.queue.pop_front());
            }
            idle = if sent { 0 } else { idle + 1 };
            self.ring.pop_front();
            if lane.queue.is_empty() {
                self.close(key);
            } else {
                // Its next visit's quantum, paid now.
                lane.deficit += QUANTUM;
                self.ring.push_back(key);
            }
        }
        (moved, visits)
    }

    /// Pays every lane the quanta of the idle turns of the ring before the first lane can
    /// send its head: the fewest turns any lane still needs. Called after a whole turn sent
    /// nothing, so the ring is where it started and each lane had its quantum for this turn.
    fn skip_rounds(&mut self) {
        let rounds = self
            .lanes
            .values()
            .filter_map(|lane| {
                let head = lane.queue.front()?.bytes.len();
                Some(head.saturating_sub(lane.deficit).div_ceil(QUANTUM))
            })
            .min()
            .unwrap_or(0);
        if rounds == 0 {
            return;
        }
        let pay = rounds.saturating_mul(QUANTUM);
        for lane in self.lanes.values_mut() {
            lane.deficit = lane.deficit.saturating_add(pay);
        }
    }

    /// Removes an emptied lane, keeping its buffer for the next one.
    fn close(&mut self, key: u64) {
        if let Some(lane) = self.lanes.remove(&key) {
            if self.spare.len() < SPARE_LANES && lane.queue.capacity() <= SPARE_CAPACITY {
                self.spare.push(lane.queue);
            }
        }
    }

    /// Lanes open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lanes.len()
    }
}

/// Hashes lane keys (local PID numbers, not chosen by anyone outside) with one multiply:
/// the default hasher costs more than the rest of a push.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits, which the table uses, depend on every bit of n.
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::envelope::NODE_LANE;

    const LIMITS: BatchLimits = BatchLimits {
        envelopes: 256,
        bytes: 64 << 10,
    };

    fn out(tag: u8, len: usize) -> Out {
        let mut v = vec![0u8; len.max(1)];
        v[0] = tag;
        Out {
            epoch: 1,
            bytes: Bytes::from(v),
        }
    }

    /// Takes batches until the queue is empty: the tags in the order they went out.
    fn drain(lanes: &mut Lanes, limits: BatchLimits) -> Vec<Vec<u8>> {
        let mut batches = Vec::new();
        loop {
            let mut batch = Vec::new();
            lanes.take(&mut batch, limits);
            if batch.is_empty() {
                return batches;
            }
            batches.push(batch.iter().map(|o| o.bytes[0]).collect());
        }
    }

    /// The quantum-by-quantum deficit round robin that [`Lanes::take`] replaced, kept to
    /// check that skipping idle turns changes nothing but the visit count. Returns the
    /// visits it made.
    fn take_by_quantum(lanes: &mut Lanes, batch: &mut Vec<Out>, limits: BatchLimits) -> usize {
        let mut framed = batch.iter().map(|o| o.bytes.len() + 4).sum::<usize>();
        let mut visits = 0;
        while let Some(&key) = lanes.ring.front() {
            visits += 1;
            let alone = lanes.ring.len() == 1;
            let Some(lane) = lanes.lanes.get_mut(&key) else {
                lanes.ring.pop_front();
                continue;
            };
            while let Some(next) = lane.queue.front() {
                let len = next.bytes.len();
                let fits = batch.is_empty() || framed + len + 4 <= limits.bytes;
                if batch.len() >= limits.envelopes || !fits {
                    return visits;
                }
                if len > lane.deficit && !alone {
                    break;
                }
                lane.deficit = lane.deficit.saturating_sub(len);
                framed += len + 4;
                batch.extend(lane.queue.pop_front());
            }
            lanes.ring.pop_front();
            if lane.queue.is_empty() {
                lanes.close(key);
            } else {
                lane.deficit += QUANTUM;
                lanes.ring.push_back(key);
            }
        }
        visits
    }

    /// An envelope identified by sender and sequence number, so two runs can be compared.
    fn tagged(sender: u64, seq: u32, len: usize) -> Out {
        let mut v = vec![0u8; len.max(12)];
        v[..8].copy_from_slice(&sender.to_le_bytes());
        v[8..12].copy_from_slice(&seq.to_le_bytes());
        Out {
            epoch: 1,
            bytes: Bytes::from(v),
        }
    }

    fn ids(batch: &[Out]) -> Vec<(u64, u32, usize)> {
        batch
            .iter()
            .map(|o| {
                let sender = u64::from_le_bytes(o.bytes[..8].try_into().unwrap());
                let seq = u32::from_le_bytes(o.bytes[8..12].try_into().unwrap());
                (sender, seq, o.bytes.len())
            })
            .collect()
    }

    proptest::proptest! {
        /// Pushes and takes interleaved at random, with envelopes from a few bytes to over a
        /// MiB: every batch is the one the quantum-by-quantum version takes.
        #[test]
        fn skipping_idle_turns_keeps_the_order_of_the_quantum_by_quantum_version(
            ops in proptest::collection::vec(
                (0u64..40, 0usize..4, 1usize..8, 0usize..3, 1usize..6),
                1..60,
            ),
        ) {
            let mut fast = Lanes::default();
            let mut slow = Lanes::default();
            let mut seq = 0u32;
            for (sender, size_class, count, takes, envelopes) in ops {
                let len = [40, 9_000, 70_000, 1_300_000][size_class] + sender as usize * 37;
                for _ in 0..count {
                    seq += 1;
                    fast.push(sender, tagged(sender, seq, len));
                    slow.push(sender, tagged(sender, seq, len));
                }
                let limits = BatchLimits { envelopes: envelopes * 3, bytes: 256 << 10 };
                for _ in 0..takes {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    let moved = fast.take(&mut a, limits);
                    take_by_quantum(&mut slow, &mut b, limits);
                    proptest::prop_assert_eq!(ids(&a), ids(&b));
                    proptest::prop_assert_eq!(moved.bytes, a.iter().map(|o| o.bytes.len()).sum::<usize>());
                    proptest::prop_assert_eq!(moved.envelopes, a.len());
                }
            }
            loop {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                fast.take(&mut a, LIMITS);
                take_by_quantum(&mut slow, &mut b, LIMITS);
                proptest::prop_assert_eq!(ids(&a), ids(&b));
                if a.is_empty() {
                    break;
                }
            }
        }
    }

    #[test]
    fn many_lanes_of_large_heads_cost_a_few_turns_of_the_ring_not_one_per_quantum() {
        let (mut fast, mut slow) = (Lanes::default(), Lanes::default());
        for sender in 0..MAX_LANES as u64 {
            fast.push(sender, tagged(sender, 0, 1 << 20));
            slow.push(sender, tagged(sender, 0, 1 << 20));
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (_, visits) = fast.take_counting(&mut a, LIMITS);
        let slow_visits = take_by_quantum(&mut slow, &mut b, LIMITS);
        assert_eq!(ids(&a), ids(&b));
        // One idle turn, the skip, then the first lane sends (and the batch is full).
        assert!(visits <= 2 * MAX_LANES + 1, "{visits} visits for one batch");
        // What the skip saves: a turn of the ring per 16 KiB of the head.
        assert!(slow_visits > 60 * MAX_LANES, "{slow_visits}");
        // Every following batch: one lane, one visit each, as the deficits are paid.
        for _ in 1..MAX_LANES {
            let mut a = Vec::new();
            let (_, visits) = fast.take_counting(&mut a, LIMITS);
            assert_eq!(a.len(), 1);
            assert!(visits <= 2 * MAX_LANES + 1, "{visits} visits for one batch");
        }
        assert_eq!(fast.open(), 0);
    }

    #[test]
    fn small_messages_pass_a_large_sender_and_each_lane_keeps_its_order() {
        let mut lanes = Lanes::default();
        for _ in 0..8 {
            lanes.push(1, out(1, 900 << 10));
        }
        for i in 0..100 {
            lanes.push(2, out(100 + i, 100));
        }
        let sent: Vec<u8> = drain(&mut lanes, LIMITS).concat();
        let small: Vec<u8> = sent.iter().copied().filter(|&t| t >= 100).collect();
        assert_eq!(small, (100..200).collect::<Vec<u8>>(), "order per lane");
        let last_small = sent.iter().rposition(|&t| t >= 100).unwrap();
        let large_before = sent[..last_small].iter().filter(|&&t| t == 1).count();
        assert!(
            large_before <= 1,
            "small messages waited for {large_before} large ones"
        );
    }

    #[test]
    fn an_envelope_larger_than_a_batch_goes_alone_and_batches_stay_within_limits() {
        let mut lanes = Lanes::default();
        lanes.push(1, out(1, 100));
        lanes.push(1, out(2, 200 << 10));
        lanes.push(1, out(3, 100));
        assert_eq!(drain(&mut lanes, LIMITS), [vec![1], vec![2], vec![3]]);
        for i in 0..10 {
            lanes.push(NODE_LANE, out(i, 10));
        }
        let limits = BatchLimits {
            envelopes: 4,
            bytes: 1 << 20,
        };
        let batches = drain(&mut lanes, limits);
        assert_eq!(batches.concat(), (0..10).collect::<Vec<u8>>());
        assert!(batches.iter().all(|b| b.len() <= 4));
    }

    #[test]
    fn senders_beyond_the_lane_cap_share_one_lane_in_order() {
        let mut lanes = Lanes::default();
        for sender in 0..MAX_LANES as u64 {
            lanes.push(sender, out(0, 1));
        }
        assert_eq!(lanes.open(), MAX_LANES);
        // Two senders without a lane: the overflow lane, in their order.
        lanes.push(5000, out(1, 1));
        lanes.push(5001, out(2, 1));
        lanes.push(5000, out(3, 1));
        assert_eq!(lanes.open(), MAX_LANES + 1);
        // A sender with a lane keeps using it.
        lanes.push(7, out(4, 1));
        let sent: Vec<u8> = drain(&mut lanes, LIMITS).concat();
        let overflow: Vec<u8> = sent
            .iter()
            .copied()
            .filter(|t| (1..=3).contains(t))
            .collect();
        assert_eq!(overflow, [1, 2, 3]);
        assert_eq!(lanes.open(), 0);
        assert!(lanes.spare.len() <= SPARE_LANES);
    }

    #[test]
    fn a_share_is_what_the_senders_lane_holds_until_it_is_sent() {
        let mut lanes = Lanes::default();
        lanes.push(1, out(1, 100));
        lanes.push(1, out(2, 50));
        lanes.push(2, out(3, 10));
        let share = |envelopes, bytes, lanes| Share {
            envelopes,
            bytes,
            lanes,
        };
        assert_eq!(lanes.share(1), share(2, 150, 2));
        assert_eq!(lanes.share(2), share(1, 10, 2));
        assert_eq!(lanes.share(3), share(0, 0, 2));
        let mut batch = Vec::new();
        let one = BatchLimits {
            envelopes: 1,
            bytes: 1 << 20,
        };
        lanes.take(&mut batch, one);
        assert_eq!(lanes.share(1), share(1, 50, 2));
        drain(&mut lanes, LIMITS);
        assert_eq!(lanes.share(1), share(0, 0, 0));
        // A sender without a lane once every lane is taken waits in the overflow lane: its
        // share is that lane's.
        for sender in 0..MAX_LANES as u64 {
            lanes.push(sender, out(0, 1));
        }
        lanes.push(5000, out(1, 7));
        assert_eq!(lanes.share(5001), share(1, 7, MAX_LANES + 1));
    }
}
