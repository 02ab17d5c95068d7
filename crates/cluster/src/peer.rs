//! One remote node as seen from here: its session state, the relations that span the pair, and
//! the outbound queue its writer task drains.
//!
//! A *connection* with a peer is a pair of sessions, one per direction. Every frame of a
//! session carries consecutive sequence numbers; the receiver accepts only the next one. A gap,
//! an unknown session, a RESET or the peer's silence ends the connection on both sides: each
//! side fails the monitors and links it holds across the pair with `noconnection` (take, then
//! deliver: exactly once), forgets the remote watchers of its processes, starts a new outbound
//! session and drops everything still arriving from the old one (fencing).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use wsrelay_process::Pid;

/// An envelope waiting for the writer, stamped with the connection epoch it belongs to.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) epoch: u64,
    pub(crate) bytes: Bytes,
}

/// What the receiver expects from the peer's outbound session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// Accepting `session`; `next` is the sequence number expected.
    Current { session: u64, next: u64 },
    /// The connection ended: waiting for a new session that starts at 1.
    Awaiting,
}

/// How a frame in a session is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// In order: process it.
    Accept,
    /// The peer started a new session: end the connection here (no RESET), then accept.
    NewSession,
    /// From a session already ended: drop silently.
    Stale,
    /// Lost frames or an unknown session: end the connection and send RESET for `session`.
    Gap,
}

/// The session state and relations of one peer, under the peer's lock.
#[derive(Debug)]
pub(crate) struct PeerState {
    /// Bumped every time the connection ends; queued envelopes of older epochs are dropped.
    pub(crate) epoch: u64,
    pub(crate) out_session: u64,
    pub(crate) next_seq: u64,
    pub(crate) published_seq: u64,
    pub(crate) acked_seq: u64,
    pub(crate) inbound: Inbound,
    pub(crate) fenced: VecDeque<u64>,
    pub(crate) peer_inc: Option<u32>,
    /// Earlier incarnations of the peer seen here (newest last, at most 16).
    pub(crate) past_incs: VecDeque<u32>,
    pub(crate) last_heard: Instant,
    /// Whether an accepted frame ever came from the peer (it has a `wsrelay_peer_up` series).
    pub(crate) heard_ever: bool,
    /// When the peer was declared down; `None` while it is up.
    pub(crate) down_since: Option<Instant>,
    /// Removed from the peer table: down for good (frames go to a new peer of the name).
    pub(crate) retired: bool,
    pub(crate) suspect_since: Option<Instant>,
    pub(crate) received_since_ack: u64,
    /// (local watcher, remote target): monitors held here.
    pub(crate) monitors: HashSet<(Pid, Pid)>,
    /// (remote watcher, local target): monitors the peer holds on local processes.
    pub(crate) watched: HashSet<(Pid, Pid)>,
    /// (local, remote): links across the pair.
    pub(crate) links: HashSet<(Pid, Pid)>,
}

/// Relations taken from a peer when its connection ends, to fail outside the lock.
#[derive(Debug, Default)]
pub(crate) struct Severed {
    pub(crate) monitors: Vec<(Pid, Pid)>,
    pub(crate) watched: Vec<(Pid, Pid)>,
    pub(crate) links: Vec<(Pid, Pid)>,
}

impl PeerState {
    fn new(now: Instant) -> PeerState {
        PeerState {
            epoch: 1,
            out_session: crate::random::random_u64(),
            next_seq: 1,
            published_seq: 0,
            acked_seq: 0,
            inbound: Inbound::Awaiting,
            fenced: VecDeque::new(),
            peer_inc: None,
            past_incs: VecDeque::new(),
            last_heard: now,
            heard_ever: false,
            down_since: None,
            retired: false,
            suspect_since: None,
            received_since_ack: 0,
            monitors: HashSet::new(),
            watched: HashSet::new(),
            links: HashSet::new(),
        }
    }

    fn is_fenced(&self, session: u64) -> bool {
        self.fenced.contains(&session)
    }

    pub(crate) fn fence(&mut self, session: u64) {
        if !self.fenced.contains(&session) {
            self.fenced.push_back(session);
            if self.fenced.len() > 32 {
                self.fenced.pop_front();
            }
        }
    }

    /// Judges data frame `seq` of `session`, and advances the expected sequence if accepted.
    pub(crate) fn judge_data(&mut self, session: u64, seq: u64) -> Verdict {
        match self.inbound {
            Inbound::Current { session: c, next } if c == session => {
                if seq == next {
                    self.inbound = Inbound::Current {
                        session,
                        next: next + 1,
                    };
                    Verdict::Accept
                } else {
                    Verdict::Gap
                }
            }
            _ if self.is_fenced(session) => Verdict::Stale,
            Inbound::Current { .. } if seq == 1 => Verdict::NewSession,
            Inbound::Current { .. } => Verdict::Gap,
            Inbound::Awaiting if seq == 1 => {
                self.inbound = Inbound::Current { session, next: 2 };
                Verdict::Accept
            }
            Inbound::Awaiting => Verdict::Gap,
        }
    }

    /// Judges a heartbeat announcing that `published` frames were sent in `session`.
    pub(crate) fn judge_heartbeat(&mut self, session: u64, published: u64) -> Verdict {
        match self.inbound {
            Inbound::Current { session: c, next } if c == session => {
                if published >= next {
                    Verdict::Gap
                } else {
                    Verdict::Accept
                }
            }
            _ if self.is_fenced(session) => Verdict::Stale,
            Inbound::Current { .. } if published == 0 => Verdict::NewSession,
            Inbound::Current { .. } => Verdict::Gap,
            Inbound::Awaiting if published == 0 => Verdict::Accept,
            Inbound::Awaiting => Verdict::Gap,
        }
    }

    /// Ends the connection: a new outbound session, the inbound one fenced, relations taken.
    pub(crate) fn end(&mut self) -> Severed {
        self.epoch += 1;
        self.out_session = crate::random::random_u64();
        self.next_seq = 1;
        self.published_seq = 0;
        self.acked_seq = 0;
        self.received_since_ack = 0;
        if let Inbound::Current { session, .. } = self.inbound {
            self.fence(session);
        }
        self.inbound = Inbound::Awaiting;
        Severed {
            monitors: self.monitors.drain().collect(),
            watched: self.watched.drain().collect(),
            links: self.links.drain().collect(),
        }
    }

    /// Records that the peer now runs incarnation `inc`; returns the one it replaces.
    pub(crate) fn new_incarnation(&mut self, inc: u32) -> Option<u32> {
        match self.peer_inc.replace(inc) {
            Some(old) if old != inc => {
                self.past_incs.retain(|&i| i != inc);
                self.past_incs.push_back(old);
                if self.past_incs.len() > 16 {
                    self.past_incs.pop_front();
                }
                Some(old)
            }
            _ => None,
        }
    }

    /// Whether a PID of incarnation `inc` belongs to an earlier run of the peer. An unknown
    /// incarnation may be a restart not heard of yet, so it is let through (the peer drops
    /// it on arrival if it is not its own).
    pub(crate) fn is_past(&self, inc: u32) -> bool {
        self.past_incs.contains(&inc)
    }

    /// What this side acknowledges of the peer's session.
    pub(crate) fn ack(&self) -> (u64, u64) {
        match self.inbound {
            Inbound::Current { session, next } => (session, next - 1),
            Inbound::Awaiting => (0, 0),
        }
    }
}

/// A remote node.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) name: String,
    /// `wsr.<cluster>.n.<peer>.<me>`.
    pub(crate) subject: async_nats::Subject,
    pub(crate) state: Mutex<PeerState>,
    pub(crate) queue: mpsc::UnboundedSender<Out>,
    pub(crate) queued: AtomicUsize,
    /// Woken when the queue drops below its high-water mark or the peer goes down.
    pub(crate) space: Notify,
    /// Woken when the peer acknowledges frames or the connection ends.
    pub(crate) credit: Notify,
    /// Declared down (see [`PeerState::down_since`]); read without the lock on hot paths.
    pub(crate) down: AtomicBool,
}

impl Peer {
    pub(crate) fn new(
        name: &str,
        subject: String,
        now: Instant,
    ) -> (Peer, mpsc::UnboundedReceiver<Out>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let peer = Peer {
            name: name.to_owned(),
            subject: subject.into(),
            state: Mutex::new(PeerState::new(now)),
            queue: tx,
            queued: AtomicUsize::new(0),
            space: Notify::new(),
            credit: Notify::new(),
            down: AtomicBool::new(false),
        };
        (peer, rx)
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Queues `bytes` in the current epoch; the caller holds the state lock (`st`), so the
    /// epoch cannot change in between.
    pub(crate) fn push(&self, st: &PeerState, bytes: Bytes) {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let _ = self.queue.send(Out {
            epoch: st.epoch,
            bytes,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_accept_in_order_and_fence_after_end() {
        let mut st = PeerState::new(Instant::now());
        assert_eq!(st.judge_data(7, 1), Verdict::Accept);
        assert_eq!(st.judge_data(7, 2), Verdict::Accept);
        assert_eq!(st.judge_data(7, 4), Verdict::Gap);
        st.end();
        assert_eq!(st.judge_data(7, 3), Verdict::Stale);
        assert_eq!(st.judge_heartbeat(7, 9), Verdict::Stale);
        assert_eq!(st.judge_data(8, 2), Verdict::Gap);
        st.fence(8);
        assert_eq!(st.judge_data(9, 1), Verdict::Accept);
        assert_eq!(st.judge_data(10, 1), Verdict::NewSession);
        assert_eq!(st.judge_heartbeat(9, 1), Verdict::Accept);
        assert_eq!(st.judge_heartbeat(9, 2), Verdict::Gap);
    }
}
