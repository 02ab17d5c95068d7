//! The membership announcements waiting for one peer (part of its queue, module `lanes`):
//! snapshots and changes of this node's group memberships, **coalesced** while they wait and
//! sent **ahead of the lanes** in every batch.
//!
//! A change is the member's absolute join count, so only the latest one per (scope, group,
//! member) matters: changes made while the writer is busy merge into the last item, one
//! entry per member, and leave as one `GroupSet` envelope per group (at most
//! [`GROUP_CHUNK`] members each) when the writer takes them. A connect storm of N joins to
//! one group is then a few envelopes per peer instead of N, and a join followed by a leave
//! in one burst is one entry that says "gone".
//!
//! Order. Items leave in the order they were queued, and a change merges only into the last
//! item, so a snapshot and the changes made after it keep their order (a change never
//! overtakes the snapshot it follows, which would bring a stale member back). Every batch
//! takes the announcements first, before any lane: a change leaves no later than anything
//! queued after it, so a member's join reaches the peer before the group sends (or any
//! other envelope) the member makes after joining. A new snapshot replaces what is still
//! waiting: it is read after it and says all of it.
//!
//! Bound. The changes hold one entry per local membership at most, and one snapshot waits
//! at most: the announcements of a peer are bounded by the node's memberships, not by how
//! often they change. They do not count against the queue's limits (`queue_max`), which
//! bound what senders queue.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use wsrelay_process::Pid;

use crate::batch::{BatchLimits, Out};
use crate::envelope::Envelope;

/// Members per `GroupSet` envelope at most (PIDs are under 100 bytes: one stays under
/// 32 KiB, far below a server's `max_payload`).
pub(crate) const GROUP_CHUNK: usize = 256;

/// Scope → group → member → latest join count.
type Counts = HashMap<String, HashMap<String, HashMap<Pid, usize>>>;

#[derive(Debug)]
enum Item {
    /// An encoded envelope of a snapshot: sync begin or end, or a chunk of members (`set`).
    Encoded { out: Out, set: bool },
    /// Changes made since the item before, in one connection epoch.
    Changes { epoch: u64, counts: Counts },
}

/// The announcements waiting for one peer; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Announcements {
    items: VecDeque<Item>,
}

impl Announcements {
    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Records that the local `pid` is in `group` of `scope` `count` times (0: gone), in
    /// connection epoch `epoch`: merged into the last item if that holds changes of the
    /// same epoch.
    pub(crate) fn change(&mut self, epoch: u64, scope: &str, group: &str, pid: &Pid, count: usize) {
        let merge =
            matches!(self.items.back(), Some(Item::Changes { epoch: e, .. }) if *e == epoch);
        if !merge {
            let counts = Counts::new();
            self.items.push_back(Item::Changes { epoch, counts });
        }
        let Some(Item::Changes { counts, .. }) = self.items.back_mut() else {
            return;
        };
        let groups = counts.entry(scope.to_owned()).or_default();
        let members = groups.entry(group.to_owned()).or_default();
        members.insert(pid.clone(), count);
    }

    /// Starts a snapshot with its first envelope (sync begin): everything still waiting is
    /// superseded by it.
    pub(crate) fn begin_snapshot(&mut self, out: Out) {
        self.items.clear();
        self.items.push_back(Item::Encoded { out, set: false });
    }

    /// Queues one more envelope of the snapshot begun last: a chunk of members (`set`) or
    /// the sync end.
    pub(crate) fn push_snapshot(&mut self, out: Out, set: bool) {
        self.items.push_back(Item::Encoded { out, set });
    }

    /// Moves envelopes into `batch` within `limits` (`framed`: the bytes the batch holds,
    /// with their length prefixes, kept up to date), oldest first. Changes are encoded here,
    /// a group's members at most [`GROUP_CHUNK`] to an envelope. Returns the `GroupSet`
    /// envelopes moved.
    pub(crate) fn take(
        &mut self,
        batch: &mut Vec<Out>,
        limits: BatchLimits,
        framed: &mut usize,
    ) -> usize {
        let mut sets = 0;
        while batch.len() < limits.envelopes {
            let (out, set) = match self.items.front_mut() {
                None => break,
                Some(Item::Changes { epoch, counts }) => {
                    let epoch = *epoch;
                    match pop_set(counts) {
                        Some(bytes) => (Out { epoch, bytes }, true),
                        None => {
                            self.items.pop_front();
                            continue;
                        }
                    }
                }
                Some(Item::Encoded { .. }) => match self.items.pop_front() {
                    Some(Item::Encoded { out, set }) => (out, set),
                    _ => break,
                },
            };
            let len = out.bytes.len();
            if !batch.is_empty() && *framed + len + 4 > limits.bytes {
                // Leads the next batch (before what is left of its changes).
                self.items.push_front(Item::Encoded { out, set });
                break;
            }
            *framed += len + 4;
            sets += usize::from(set);
            batch.push(out);
        }
        sets
    }
}

/// Takes up to [`GROUP_CHUNK`] members of one group out of `counts`, as an encoded
/// `GroupSet`; `None` if no change is left.
fn pop_set(counts: &mut Counts) -> Option<Bytes> {
    loop {
        let (scope, groups) = counts.iter_mut().next()?;
        let scope = scope.clone();
        let Some((group, members)) = groups.iter_mut().next() else {
            // Its last group was taken: the scope goes too.
            counts.remove(&scope);
            continue;
        };
        let group = group.clone();
        let chunk: Vec<(Pid, usize)> = if members.len() <= GROUP_CHUNK {
            members.drain().collect()
        } else {
            let pids: Vec<Pid> = members.keys().take(GROUP_CHUNK).cloned().collect();
            pids.into_iter()
                .filter_map(|pid| members.remove(&pid).map(|count| (pid, count)))
                .collect()
        };
        if members.is_empty() {
            groups.remove(&group);
        }
        if !chunk.is_empty() {
            let members = chunk;
            return Some(
                Envelope::GroupSet {
                    scope,
                    group,
                    members,
                }
                .encode(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;

    const LIMITS: BatchLimits = BatchLimits {
        envelopes: 256,
        bytes: 64 << 10,
    };

    fn pid(n: u64) -> Pid {
        Pid::new("a", "app:x", n)
    }

    /// Takes everything: the decoded envelopes in order, per batch.
    fn drain(a: &mut Announcements, limits: BatchLimits) -> Vec<Vec<Envelope>> {
        let mut batches = Vec::new();
        loop {
            let mut batch = Vec::new();
            let mut framed = 0;
            a.take(&mut batch, limits, &mut framed);
            if batch.is_empty() {
                return batches;
            }
            assert!(batch.len() == 1 || framed <= limits.bytes);
            batches.push(
                batch
                    .iter()
                    .map(|o| Envelope::decode(&o.bytes).unwrap())
                    .collect(),
            );
        }
    }

    /// The final count of every member the envelopes name, applied in order.
    fn applied(envs: &[Envelope]) -> HashMap<(String, Pid), usize> {
        let mut state = HashMap::new();
        for env in envs {
            if let Envelope::GroupSet { group, members, .. } = env {
                for (pid, count) in members {
                    state.insert((group.clone(), pid.clone()), *count);
                }
            }
        }
        state
    }

    #[test]
    fn a_burst_of_changes_leaves_as_few_envelopes_with_the_latest_counts() {
        let mut a = Announcements::default();
        for n in 0..1000 {
            a.change(1, "s", "lobby", &pid(n), 1);
        }
        a.change(1, "s", "lobby", &pid(7), 0);
        a.change(1, "s", "lobby", &pid(8), 2);
        a.change(1, "s", "room", &pid(9), 1);
        a.change(1, "s", "room", &pid(9), 0);
        let batches = drain(&mut a, LIMITS);
        let envs: Vec<Envelope> = batches.concat();
        // 1,000 lobby members in chunks of 256, and one room envelope.
        assert_eq!(envs.len(), 1000usize.div_ceil(GROUP_CHUNK) + 1);
        let state = applied(&envs);
        assert_eq!(state[&("lobby".to_owned(), pid(7))], 0);
        assert_eq!(state[&("lobby".to_owned(), pid(8))], 2);
        assert_eq!(state[&("lobby".to_owned(), pid(999))], 1);
        assert_eq!(state[&("room".to_owned(), pid(9))], 0);
        assert!(a.is_empty());
    }

    #[test]
    fn a_change_after_a_snapshot_stays_after_it_and_a_new_snapshot_replaces_all() {
        let mut a = Announcements::default();
        let out = |env: Envelope| Out {
            epoch: 1,
            bytes: env.encode(),
        };
        a.change(1, "s", "g", &pid(1), 1);
        a.begin_snapshot(out(Envelope::GroupSync { end: false }));
        let set = Envelope::GroupSet {
            scope: "s".into(),
            group: "g".into(),
            members: vec![(pid(1), 1)],
        };
        a.push_snapshot(out(set), true);
        // Changes made after the snapshot was read: a leave, then others.
        a.change(1, "s", "g", &pid(1), 0);
        a.push_snapshot(out(Envelope::GroupSync { end: true }), false);
        a.change(1, "s", "g", &pid(2), 1);
        let envs = drain(&mut a, LIMITS).concat();
        let kinds: Vec<String> = envs
            .iter()
            .map(|e| match e {
                Envelope::GroupSync { end } => format!("sync {end}"),
                Envelope::GroupSet { members, .. } => format!("set {:?}", members[0].1),
                _ => unreachable!(),
            })
            .collect();
        // The change made before the snapshot is gone (the snapshot says it); the leave
        // stays behind the snapshot's member.
        assert_eq!(
            kinds,
            ["sync false", "set 1", "set 0", "sync true", "set 1"]
        );
    }

    #[test]
    fn a_change_merges_only_within_its_epoch_and_batches_keep_their_limits() {
        let mut a = Announcements::default();
        a.change(1, "s", "g", &pid(1), 1);
        a.change(2, "s", "g", &pid(1), 0);
        let mut batch = Vec::new();
        let mut framed = 0;
        assert_eq!(a.take(&mut batch, LIMITS, &mut framed), 2);
        assert_eq!(
            batch.iter().map(|o| o.epoch).collect::<Vec<_>>(),
            [1, 2],
            "the old epoch's change is not merged away (the writer fences it)"
        );
        for n in 0..3000 {
            a.change(2, "s", &format!("g{}", n % 7), &pid(n), 1);
        }
        let small = BatchLimits {
            envelopes: 3,
            bytes: 20 << 10,
        };
        let batches = drain(&mut a, small);
        assert!(batches.iter().all(|b| b.len() <= 3));
        assert_eq!(applied(&batches.concat()).len(), 3000);
    }
}
