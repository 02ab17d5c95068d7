//! One remote node as seen from here: its session state and credit, the relations that span
//! the pair, and the outbound queue (module `lanes`) its writer task drains.
//!
//! A *connection* with a peer is a pair of sessions, one per direction. Every frame of a
//! session carries consecutive sequence numbers; the receiver accepts only the next one. A gap,
//! an unknown session, a RESET or the peer's silence ends the connection on both sides: each
//! side fails the monitors and links it holds across the pair with `noconnection` (take, then
//! deliver: exactly once), forgets the remote watchers of its processes, starts a new outbound
//! session and drops everything still arriving from the old one (fencing).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use wsrelay_process::Pid;

use crate::batch::Out;
use crate::frame::{Grant, Heartbeat};
use crate::held::{Held, Waiting};
use crate::lanes::Lanes;
use crate::ClusterOptions;

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
    /// Bytes of the data frames sealed in `out_session` (frames 1 to `next_seq - 1`).
    pub(crate) sent_bytes: u64,
    /// Bytes of them the peer acknowledged.
    pub(crate) acked_bytes: u64,
    /// The credit the peer last granted; this node's own settings until it has.
    pub(crate) grant: Option<Grant>,
    /// Envelopes waiting for the writer.
    pub(crate) queue: Lanes,
    pub(crate) inbound: Inbound,
    /// Bytes of the data frames accepted in the inbound session (frames 1 to `next - 1`).
    pub(crate) received_bytes: u64,
    pub(crate) fenced: VecDeque<u64>,
    /// This node's earlier outbound sessions towards the peer (newest last, at most 16).
    pub(crate) own_sessions: VecDeque<u64>,
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
    /// Frames and bytes accepted since the last acknowledgement sent.
    pub(crate) received_since_ack: u64,
    pub(crate) bytes_since_ack: u64,
    /// (local watcher, remote target): monitors held here.
    pub(crate) monitors: HashSet<(Pid, Pid)>,
    /// (remote watcher, local target): monitors the peer holds on local processes.
    pub(crate) watched: HashSet<(Pid, Pid)>,
    /// (local, remote): links across the pair.
    pub(crate) links: HashSet<(Pid, Pid)>,
    /// Relations made while the peer is declared down towards PIDs of a run of it not seen
    /// here yet, and when: they are in `monitors` and `links` like any other, and fail with
    /// `noconnection` if that run is not heard from within `dead_after` (module `routing`).
    /// Empty while the peer is up; at most `early_relations_max` entries.
    pub(crate) early: HashMap<Relation, Instant>,
    /// The run of the peer the current outbound session was started for: every frame of it
    /// was sealed after this node knew that run had started (it was heard, or a PID of it
    /// was used here before the session's first frame), so none reached an earlier run, and
    /// that run accepts the session from its first frame. `None` if not known.
    pub(crate) session_for: Option<u32>,
    /// Envelopes for PIDs of a run not heard from yet that the current session cannot carry
    /// there (module `held`): they go out when that run is heard, in the session that then
    /// serves it. Empty while the peer is declared down (`early` covers that case).
    pub(crate) held: Held,
}

/// A relation this node holds across the pair, as kept in [`PeerState::monitors`] and
/// [`PeerState::links`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Relation {
    /// A local watcher monitors a remote target.
    Monitor { watcher: Pid, target: Pid },
    /// A local process is linked with a remote one.
    Link { local: Pid, remote: Pid },
}

impl Relation {
    /// The process of the peer.
    pub(crate) fn remote(&self) -> &Pid {
        match self {
            Relation::Monitor { target, .. } => target,
            Relation::Link { remote, .. } => remote,
        }
    }

    /// Records the relation as held.
    pub(crate) fn record(&self, st: &mut PeerState) {
        match self {
            Relation::Monitor { watcher, target } => {
                st.monitors.insert((watcher.clone(), target.clone()));
            }
            Relation::Link { local, remote } => {
                st.links.insert((local.clone(), remote.clone()));
            }
        }
    }
}

/// The incarnation a PID belongs to (the high 32 bits of its number).
pub(crate) fn incarnation_of(pid: &Pid) -> u32 {
    (pid.id() >> 32) as u32
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
            sent_bytes: 0,
            acked_bytes: 0,
            grant: None,
            queue: Lanes::default(),
            inbound: Inbound::Awaiting,
            received_bytes: 0,
            fenced: VecDeque::new(),
            own_sessions: VecDeque::new(),
            peer_inc: None,
            past_incs: VecDeque::new(),
            last_heard: now,
            heard_ever: false,
            down_since: None,
            retired: false,
            suspect_since: None,
            received_since_ack: 0,
            bytes_since_ack: 0,
            monitors: HashSet::new(),
            watched: HashSet::new(),
            links: HashSet::new(),
            early: HashMap::new(),
            session_for: None,
            held: Held::default(),
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

    /// Judges data frame `seq` of `session`, `len` bytes, and advances the expected sequence
    /// (and the bytes received) if accepted.
    pub(crate) fn judge_data(&mut self, session: u64, seq: u64, len: u64) -> Verdict {
        match self.inbound {
            Inbound::Current { session: c, next } if c == session => {
                if seq == next {
                    self.inbound = Inbound::Current {
                        session,
                        next: next + 1,
                    };
                    self.received_bytes += len;
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
                self.received_bytes = len;
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
        let mut severed = self.end_outbound();
        self.end_inbound();
        self.early.clear();
        severed.watched = self.watched.drain().collect();
        severed
    }

    /// Ends this side's outbound session only: a new one (what was queued for the old one is
    /// dropped), and the monitors and links this side holds are taken. Alone, for a session
    /// the peer never accepted while its own goes on (a reset with `kept`, module `inbound`):
    /// the peer has none of what that session announced, and the monitors it holds here stay.
    pub(crate) fn end_outbound(&mut self) -> Severed {
        self.own_sessions.push_back(self.out_session);
        if self.own_sessions.len() > 16 {
            self.own_sessions.pop_front();
        }
        self.epoch += 1;
        self.out_session = crate::random::random_u64();
        self.next_seq = 1;
        self.published_seq = 0;
        self.acked_seq = 0;
        self.sent_bytes = 0;
        self.acked_bytes = 0;
        self.session_for = None;
        Severed {
            monitors: self.monitors.drain().collect(),
            watched: Vec::new(),
            links: self.links.drain().collect(),
        }
    }

    /// Whether a frame of a session not accepted here, acknowledging `ack` (the session of
    /// this node its sender accepts), was meant for another run of this node: nothing of the
    /// peer is accepted here, and `ack` is none of this node's sessions towards it. Then its
    /// loss ends nothing here: the peer is told (a reset with `kept`) and this side goes on.
    pub(crate) fn sealed_for_another_run(&self, ack: u64) -> bool {
        self.inbound == Inbound::Awaiting
            && ack != 0
            && ack != self.out_session
            && !self.own_sessions.contains(&ack)
    }

    /// Fences the inbound session and waits for a new one, which starts at 1.
    pub(crate) fn end_inbound(&mut self) {
        self.received_bytes = 0;
        self.received_since_ack = 0;
        self.bytes_since_ack = 0;
        if let Inbound::Current { session, .. } = self.inbound {
            self.fence(session);
        }
        self.inbound = Inbound::Awaiting;
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

    /// Whether a PID of incarnation `inc` belongs to a run of the peer not seen here yet:
    /// neither the run last heard nor an earlier one. Its PID came from that run, so the run
    /// has started (a restart not heard of yet). False while no run was ever heard: then
    /// there is no run to tell it from.
    pub(crate) fn is_unseen(&self, inc: u32) -> bool {
        self.peer_inc.is_some_and(|seen| seen != inc) && !self.is_past(inc)
    }

    /// Whether an envelope for a PID of run `inc` must wait in [`PeerState::held`]: the peer
    /// is up in another run, `inc` is not one seen here before, and the current session was
    /// not started for it (its frames may have reached the earlier run, so `inc` would take
    /// its next frame as a gap). A session that has sealed no frame yet is claimed for `inc`
    /// instead. While anything for `inc` waits, so does the rest for it (order per sender).
    pub(crate) fn must_hold(&mut self, inc: u32) -> bool {
        if self.held.holds(inc) {
            return true;
        }
        if self.down_since.is_some() || self.session_for == Some(inc) || !self.is_unseen(inc) {
            return false;
        }
        if self.next_seq == 1 && self.session_for.is_none() {
            self.session_for = Some(inc);
            return false;
        }
        true
    }

    /// Records `rel`, made at `now` while the peer is declared down, if its remote process
    /// belongs to a run not seen yet, the peer is still in the table and fewer than `max`
    /// such relations are held; false otherwise (the caller fails it with `noconnection`).
    pub(crate) fn hold_early(&mut self, rel: Relation, now: Instant, max: usize) -> bool {
        if self.retired
            || !self.is_unseen(incarnation_of(rel.remote()))
            || (self.early.len() >= max && !self.early.contains_key(&rel))
        {
            return false;
        }
        rel.record(self);
        self.early.insert(rel, now);
        true
    }

    /// Takes `rel` if it is held, with its early deadline if it has one: whoever takes it
    /// answers for it (exactly once).
    pub(crate) fn take(&mut self, rel: &Relation) -> bool {
        if !self.early.is_empty() {
            self.early.remove(rel);
        }
        match rel {
            Relation::Monitor { watcher, target } => {
                self.monitors.remove(&(watcher.clone(), target.clone()))
            }
            Relation::Link { local, remote } => self.links.remove(&(local.clone(), remote.clone())),
        }
    }

    /// Takes the relations held early (see [`PeerState::early`]) for `after` or longer by
    /// `now`: their run was not heard from in time.
    pub(crate) fn expire_early(&mut self, now: Instant, after: Duration) -> Vec<Relation> {
        let expired: Vec<Relation> = self
            .early
            .iter()
            .filter(|(_, &made)| now.saturating_duration_since(made) >= after)
            .map(|(rel, _)| rel.clone())
            .collect();
        expired.into_iter().filter(|rel| self.take(rel)).collect()
    }

    /// Takes the relations towards PIDs of runs other than `inc`, the run that was just
    /// heard from (after it restarted): those processes are gone. Also the monitors their
    /// processes held on local ones (none if the peer was declared down: that took them).
    pub(crate) fn sever_other_runs(&mut self, inc: u32) -> Severed {
        let other = |pid: &Pid| incarnation_of(pid) != inc;
        self.early.retain(|rel, _| !other(rel.remote()));
        Severed {
            monitors: take_pairs(&mut self.monitors, |(_, t)| other(t)),
            watched: take_pairs(&mut self.watched, |(w, _)| other(w)),
            links: take_pairs(&mut self.links, |(_, r)| other(r)),
        }
    }

    /// Marks the peer removed from the table if it is declared down and holds no relation
    /// early: every relation across it has been failed, and none can be added any more.
    pub(crate) fn retire_if_idle(&mut self) -> bool {
        if self.down_since.is_some() && self.early.is_empty() {
            self.retired = true;
        }
        self.retired
    }

    /// What this side acknowledges of the peer's session: session, last sequence number,
    /// bytes up to it.
    pub(crate) fn ack(&self) -> (u64, u64, u64) {
        match self.inbound {
            Inbound::Current { session, next } => (session, next - 1, self.received_bytes),
            Inbound::Awaiting => (0, 0, 0),
        }
    }

    /// Counts an accepted data frame of `len` bytes; true if an acknowledgement is due: a
    /// quarter of the credit this node grants (`own`) was used since the last one, so the
    /// sender never waits for a heartbeat while within its window.
    pub(crate) fn ack_due(&mut self, len: u64, own: Grant) -> bool {
        self.received_since_ack += 1;
        self.bytes_since_ack += len;
        let due = self.received_since_ack >= u64::from(own.frames / 4).max(1)
            || self.bytes_since_ack >= own.bytes / 4;
        if due {
            self.received_since_ack = 0;
            self.bytes_since_ack = 0;
        }
        due
    }

    /// Takes the peer's acknowledgement and grant from a heartbeat; true if the credit may
    /// have grown. Values beyond what was sent (a confused or hostile peer) are clamped.
    pub(crate) fn on_ack(&mut self, hb: &Heartbeat) -> bool {
        let grew = self.grant.replace(hb.grant) != Some(hb.grant);
        if hb.ack_session == self.out_session && hb.ack_seq > self.acked_seq {
            self.acked_seq = hb.ack_seq.min(self.next_seq - 1);
            self.acked_bytes = hb.ack_bytes.min(self.sent_bytes).max(self.acked_bytes);
            return true;
        }
        grew
    }

    /// Whether a data frame of `len` bytes may go now: within the peer's grant (`own` until
    /// it sent one), or alone, whatever its size, when nothing is in flight (a frame larger
    /// than the window must not wait forever).
    pub(crate) fn has_credit(&self, len: u64, own: Grant) -> bool {
        let frames = (self.next_seq - 1).saturating_sub(self.acked_seq);
        if frames == 0 {
            return true;
        }
        let grant = self.grant.unwrap_or(own);
        let bytes = self.sent_bytes.saturating_sub(self.acked_bytes);
        frames < u64::from(grant.frames) && bytes.saturating_add(len) <= grant.bytes
    }
}

/// Which envelope of a group snapshot [`Peer::push_snapshot`] queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotPart {
    Begin,
    Members,
    End,
}

/// A remote node.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) name: String,
    /// `wsr.<cluster>.n.<peer>.<me>`.
    pub(crate) subject: async_nats::Subject,
    pub(crate) state: Mutex<PeerState>,
    /// Envelopes and their bytes in the queue ([`PeerState::queue`]), read without the lock.
    pub(crate) queued: AtomicUsize,
    pub(crate) queued_bytes: AtomicUsize,
    /// Wakes the writer when the queue stops being empty, and when the peer is dropped.
    pub(crate) wake: Arc<Notify>,
    /// Woken when the queue drops below its high-water marks or the peer goes down.
    pub(crate) space: Notify,
    /// Woken when the peer acknowledges frames or the connection ends.
    pub(crate) credit: Notify,
    /// Declared down (see [`PeerState::down_since`]); read without the lock on hot paths.
    pub(crate) down: AtomicBool,
}

impl Peer {
    pub(crate) fn new(name: &str, subject: String, now: Instant) -> Peer {
        Peer {
            name: name.to_owned(),
            subject: subject.into(),
            state: Mutex::new(PeerState::new(now)),
            queued: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            wake: Arc::new(Notify::new()),
            space: Notify::new(),
            credit: Notify::new(),
            down: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Queues `bytes` in the lane of `sender` (module `lanes`) in the current epoch; the
    /// caller holds the state lock (`st`), so the epoch cannot change in between.
    pub(crate) fn push(&self, st: &mut PeerState, sender: u64, bytes: Bytes) {
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.queued_bytes.fetch_add(bytes.len(), Ordering::AcqRel);
        let out = Out {
            epoch: st.epoch,
            bytes,
        };
        if st.queue.push(sender, out) {
            self.wake.notify_one();
        }
    }

    /// Queues `bytes` for the process `to` in the lane of `sender`, or holds it until `to`'s
    /// run is heard (see [`PeerState::must_hold`]); `rel` is the monitor or link it
    /// announces, if any. False if it had to wait and the wait is full (the caller refuses
    /// it as if the peer were unreachable).
    pub(crate) fn push_to(
        &self,
        st: &mut PeerState,
        to: &Pid,
        sender: u64,
        bytes: Bytes,
        rel: Option<&Relation>,
        opts: &ClusterOptions,
    ) -> bool {
        let inc = incarnation_of(to);
        if !st.must_hold(inc) {
            self.push(st, sender, bytes);
            return true;
        }
        if st
            .held
            .is_full(bytes.len(), opts.early_relations_max, opts.queue_max_bytes)
        {
            return false;
        }
        st.held.push(Waiting {
            inc,
            lane: sender,
            bytes,
            made: Instant::now(),
            rel: rel.cloned(),
        });
        true
    }

    /// Queues the change of a local membership for the peer (module `announce`), in the
    /// current epoch; the caller holds the state lock (`st`).
    pub(crate) fn announce(
        &self,
        st: &mut PeerState,
        scope: &str,
        group: &str,
        pid: &Pid,
        count: usize,
    ) {
        let was_empty = st.queue.is_empty();
        let epoch = st.epoch;
        st.queue
            .announcements
            .change(epoch, scope, group, pid, count);
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Queues one envelope of a group snapshot (module `announce`): the sync begin
    /// (`Begin`, which replaces the announcements still waiting), a chunk of members or
    /// the sync end.
    pub(crate) fn push_snapshot(&self, st: &mut PeerState, part: SnapshotPart, bytes: Bytes) {
        let was_empty = st.queue.is_empty();
        let out = Out {
            epoch: st.epoch,
            bytes,
        };
        let announcements = &mut st.queue.announcements;
        match part {
            SnapshotPart::Begin => announcements.begin_snapshot(out),
            SnapshotPart::Members => announcements.push_snapshot(out, true),
            SnapshotPart::End => announcements.push_snapshot(out, false),
        }
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Whether `sender` (a lane key, [`NODE_LANE`](crate::envelope::NODE_LANE) for none)
    /// should hold back what it sends to the peer. Below the queue's high-water marks no
    /// sender is; above them, a sender whose lane holds at least its even share of the
    /// queue (the queue's envelopes or bytes divided by the lanes holding any) is, and the
    /// others go on, so one process filling the queue holds back itself and not every
    /// relay client with a target on that node (their envelopes wait in lanes of their own
    /// and are served in turn). Past the hard mark, halfway from the high-water mark to the
    /// queue's limit, every sender is held: the queue stays bounded well below the limit at
    /// which sends fail.
    pub(crate) fn is_congested(&self, sender: u64, opts: &ClusterOptions) -> bool {
        let queued = self.queued.load(Ordering::Acquire);
        let bytes = self.queued_bytes.load(Ordering::Acquire);
        if queued < opts.queue_high_water && bytes < opts.queue_high_water_bytes {
            return false;
        }
        let hard = |high: usize, max: usize| high + max.saturating_sub(high) / 2;
        if queued >= hard(opts.queue_high_water, opts.queue_max)
            || bytes >= hard(opts.queue_high_water_bytes, opts.queue_max_bytes)
        {
            return true;
        }
        let share = self.state.lock().queue.share(sender);
        let lanes = share.lanes.max(1);
        share.envelopes > 0
            && (share.envelopes.saturating_mul(lanes) >= queued
                || share.bytes.saturating_mul(lanes) >= bytes)
    }

    /// Whether the queue is full: remote sends fail. An empty queue takes any envelope.
    pub(crate) fn is_full(&self, opts: &ClusterOptions) -> bool {
        self.queued.load(Ordering::Acquire) >= opts.queue_max
            || self.queued_bytes.load(Ordering::Acquire) >= opts.queue_max_bytes
    }

    /// Takes `n` envelopes of `bytes` off the queue counts (the writer took them), waking
    /// senders held at a high-water mark when either count falls below its mark (each
    /// count only falls here, so this sees every such fall).
    pub(crate) fn release(&self, n: usize, bytes: usize, opts: &ClusterOptions) {
        let crossed =
            |before: usize, taken: usize, mark: usize| before >= mark && before - taken < mark;
        let before = self.queued.fetch_sub(n, Ordering::AcqRel);
        let before_bytes = self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if crossed(before, n, opts.queue_high_water)
            || crossed(before_bytes, bytes, opts.queue_high_water_bytes)
        {
            self.space.notify_waiters();
        }
    }
}

impl Drop for Peer {
    /// Lets the writer, which holds the peer weakly, notice that it is gone.
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// Removes from `set` the pairs `gone` picks, and returns them.
fn take_pairs(
    set: &mut HashSet<(Pid, Pid)>,
    gone: impl Fn(&(Pid, Pid)) -> bool,
) -> Vec<(Pid, Pid)> {
    let taken: Vec<_> = set.iter().filter(|pair| gone(pair)).cloned().collect();
    set.retain(|pair| !gone(pair));
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_accept_in_order_and_fence_after_end() {
        let mut st = PeerState::new(Instant::now());
        assert_eq!(st.judge_data(7, 1, 100), Verdict::Accept);
        assert_eq!(st.judge_data(7, 2, 50), Verdict::Accept);
        assert_eq!(st.ack(), (7, 2, 150));
        assert_eq!(st.judge_data(7, 4, 10), Verdict::Gap);
        assert_eq!(st.ack(), (7, 2, 150));
        st.end();
        assert_eq!(st.ack(), (0, 0, 0));
        assert_eq!(st.judge_data(7, 3, 10), Verdict::Stale);
        assert_eq!(st.judge_heartbeat(7, 9), Verdict::Stale);
        assert_eq!(st.judge_data(8, 2, 10), Verdict::Gap);
        st.fence(8);
        assert_eq!(st.judge_data(9, 1, 30), Verdict::Accept);
        assert_eq!(st.ack(), (9, 1, 30));
        assert_eq!(st.judge_data(10, 1, 10), Verdict::NewSession);
        assert_eq!(st.judge_heartbeat(9, 1), Verdict::Accept);
        assert_eq!(st.judge_heartbeat(9, 2), Verdict::Gap);
    }

    #[test]
    fn above_the_high_water_mark_only_the_senders_that_fill_the_queue_are_held() {
        let mut opts = ClusterOptions::new("c", "a", vec![]);
        opts.queue_high_water = 10;
        opts.queue_max = 30;
        let peer = Peer::new("b", "wsr.c.n.b.a".to_owned(), Instant::now());
        let push = |sender: u64, n: usize| {
            let mut st = peer.state.lock();
            for _ in 0..n {
                peer.push(&mut st, sender, Bytes::from_static(b"0123456789"));
            }
        };
        let (hog, small, idle) = (1, 2, 3);
        push(hog, 9);
        // Below the mark no sender is held.
        assert!(!peer.is_congested(hog, &opts));
        push(small, 1);
        // At the mark (10 queued): the hog holds 9 of 10 in two lanes; the small sender and
        // a sender with nothing queued go on.
        assert!(peer.is_congested(hog, &opts));
        assert!(!peer.is_congested(small, &opts));
        assert!(!peer.is_congested(idle, &opts));
        // The small sender goes on until it holds its even share (8 of 17: not yet; 9 of 18:
        // yes).
        push(small, 7);
        assert!(!peer.is_congested(small, &opts));
        push(small, 1);
        assert!(peer.is_congested(small, &opts));
        assert!(!peer.is_congested(idle, &opts));
        // Past the hard mark, halfway to the limit (20), every sender is held.
        push(small, 2);
        assert!(peer.is_congested(idle, &opts));
    }

    fn pid(node: &str, inc: u32, n: u32) -> Pid {
        Pid::new(node, "app:p", (u64::from(inc) << 32) | u64::from(n))
    }

    #[test]
    fn relations_are_held_early_only_towards_a_run_not_seen_and_within_the_cap() {
        let t0 = Instant::now();
        let mut st = PeerState::new(t0);
        let me = pid("a", 1, 1);
        let monitor = |inc, n| Relation::Monitor {
            watcher: me.clone(),
            target: pid("b", inc, n),
        };
        // No run heard yet: nothing to tell a new one from.
        assert!(!st.hold_early(monitor(7, 1), t0, 8));
        st.new_incarnation(5);
        st.new_incarnation(6);
        assert!(!st.hold_early(monitor(6, 1), t0, 8), "the run counted down");
        assert!(!st.hold_early(monitor(5, 1), t0, 8), "an earlier run");
        assert!(st.hold_early(monitor(7, 1), t0, 2), "a run not seen yet");
        let link = Relation::Link {
            local: me.clone(),
            remote: pid("b", 7, 2),
        };
        assert!(st.hold_early(link.clone(), t0 + Duration::from_secs(1), 2));
        assert!(!st.hold_early(monitor(7, 3), t0, 2), "over the cap");
        assert_eq!((st.monitors.len(), st.links.len()), (1, 1));
        assert!(!st.retire_if_idle(), "not down");
        st.down_since = Some(t0);
        assert!(!st.retire_if_idle(), "holds relations early");
        // Expiry takes each relation once, when its own time is up.
        let after = Duration::from_secs(3);
        assert!(st
            .expire_early(t0 + Duration::from_secs(2), after)
            .is_empty());
        assert_eq!(st.expire_early(t0 + after, after), vec![monitor(7, 1)]);
        assert!(st.monitors.is_empty());
        // Undone before its time: nothing left to fail.
        assert!(st.take(&link));
        assert!(st.expire_early(t0 + 2 * after, after).is_empty());
        assert!(st.retire_if_idle());
        assert!(!st.hold_early(monitor(7, 4), t0, 8), "retired");
    }

    #[test]
    fn envelopes_for_a_run_not_seen_wait_unless_the_session_can_be_its_own() {
        let opts = ClusterOptions::new("c", "a", vec![]);
        let peer = Peer::new("b", "wsr.c.n.b.a".to_owned(), Instant::now());
        let mut st = peer.state.lock();
        let bytes = || Bytes::from_static(b"env");
        // No run heard yet: nothing waits.
        assert!(peer.push_to(&mut st, &pid("b", 7, 1), 1, bytes(), None, &opts));
        assert!(st.session_for.is_none());
        st.new_incarnation(5);
        // A session that sealed no frame yet becomes the new run's own.
        assert!(!st.must_hold(5), "the run heard");
        assert!(!st.must_hold(7));
        assert_eq!(st.session_for, Some(7));
        assert!(
            st.must_hold(8),
            "another new run: the session is the first one's"
        );
        // Once a frame is sealed, a session not started for a run cannot be claimed.
        st.session_for = None;
        st.next_seq = 2;
        assert_eq!(peer.queued.load(Ordering::Acquire), 1);
        let monitor = Relation::Monitor {
            watcher: pid("a", 1, 1),
            target: pid("b", 7, 2),
        };
        assert!(peer.push_to(&mut st, &pid("b", 7, 2), 1, bytes(), Some(&monitor), &opts));
        assert!(peer.push_to(&mut st, &pid("b", 5, 3), 1, bytes(), None, &opts));
        assert_eq!(
            peer.queued.load(Ordering::Acquire),
            2,
            "the run heard is served at once"
        );
        assert!(st.held.holds(7));
        // Behind what waits for a run, the rest for it waits too, even once it is heard.
        st.new_incarnation(7);
        assert!(st.must_hold(7));
        // The wait is bounded.
        let mut small = opts.clone();
        small.early_relations_max = 1;
        assert!(!peer.push_to(&mut st, &pid("b", 7, 4), 1, bytes(), None, &small));
        // Declared down: the `early` rules apply instead.
        let (waiting, _) = st.held.take_for(Some(7));
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].rel.as_ref(), Some(&monitor));
        st.down_since = Some(Instant::now());
        assert!(!st.must_hold(9));
    }

    /// A frame of a session not accepted here is meant for another run of this node when it
    /// acknowledges a session that is none of this node's: then ending the outbound session
    /// alone takes this side's relations and leaves the peer's.
    #[test]
    fn a_frame_for_another_run_ends_only_the_outbound_session() {
        let mut st = PeerState::new(Instant::now());
        let first = st.out_session;
        assert!(
            !st.sealed_for_another_run(0),
            "acknowledges nothing: not known"
        );
        assert!(!st.sealed_for_another_run(first), "this node's session");
        assert!(st.sealed_for_another_run(first ^ 1));
        st.monitors.insert((pid("a", 1, 1), pid("b", 7, 1)));
        st.links.insert((pid("a", 1, 2), pid("b", 7, 2)));
        st.watched.insert((pid("b", 7, 3), pid("a", 1, 3)));
        st.next_seq = 5;
        let epoch = st.epoch;
        let severed = st.end_outbound();
        assert_eq!((severed.monitors.len(), severed.links.len()), (1, 1));
        assert!(
            severed.watched.is_empty() && st.watched.len() == 1,
            "the peer's stay"
        );
        assert!(st.out_session != first && st.next_seq == 1 && st.epoch == epoch + 1);
        assert!(
            !st.sealed_for_another_run(first),
            "an earlier session of this node"
        );
        // Once something of the peer is accepted here, a gap is a loss like any other.
        assert_eq!(st.judge_data(9, 1, 10), Verdict::Accept);
        assert!(!st.sealed_for_another_run(first ^ 1));
    }

    #[test]
    fn a_run_heard_while_down_keeps_its_relations_and_fails_the_others() {
        let t0 = Instant::now();
        let mut st = PeerState::new(t0);
        st.new_incarnation(5);
        st.down_since = Some(t0);
        let me = pid("a", 1, 1);
        let ours = Relation::Monitor {
            watcher: me.clone(),
            target: pid("b", 7, 1),
        };
        let other = Relation::Link {
            local: me.clone(),
            remote: pid("b", 8, 1),
        };
        assert!(st.hold_early(ours.clone(), t0, 8));
        assert!(st.hold_early(other.clone(), t0, 8));
        st.watched.insert((pid("b", 5, 3), me.clone()));
        st.watched.insert((pid("b", 7, 3), me.clone()));
        st.new_incarnation(7);
        let severed = st.sever_other_runs(7);
        assert!(severed.monitors.is_empty());
        assert_eq!(severed.watched, vec![(pid("b", 5, 3), me.clone())]);
        assert_eq!(st.watched.len(), 1, "the new run's watcher stays");
        assert_eq!(severed.links, vec![(me.clone(), pid("b", 8, 1))]);
        assert!(st.links.is_empty());
        // The kept one still has its deadline until the run is heard.
        assert_eq!(st.early.len(), 1);
        assert!(st.early.contains_key(&ours));
        assert!(!st.is_unseen(7) && st.is_past(5));
    }

    #[test]
    fn credit_is_counted_in_bytes_and_a_frame_goes_alone_when_nothing_is_in_flight() {
        let own = Grant {
            bytes: 1000,
            frames: 8,
        };
        let mut st = PeerState::new(Instant::now());
        // Larger than the window, nothing in flight: it goes.
        assert!(st.has_credit(5000, own));
        st.next_seq = 2;
        st.sent_bytes = 5000;
        assert!(!st.has_credit(10, own));
        let mut hb = Heartbeat {
            session: 1,
            published: 0,
            ack_session: st.out_session,
            ack_seq: 1,
            ack_bytes: 5000,
            grant: own,
            probe: false,
        };
        assert!(st.on_ack(&hb));
        assert!(st.has_credit(5000, own));
        // Two frames in flight use 900 of the 1000 bytes granted.
        st.next_seq = 4;
        st.sent_bytes = 5900;
        assert!(st.has_credit(100, own));
        assert!(!st.has_credit(101, own));
        // The peer grants more: the grant replaces this node's own settings.
        hb.grant = Grant {
            bytes: 2000,
            frames: 8,
        };
        assert!(st.on_ack(&hb));
        assert!(st.has_credit(1100, own));
        // An acknowledgement of more than was sent is clamped.
        hb.ack_seq = 99;
        hb.ack_bytes = 1 << 40;
        assert!(st.on_ack(&hb));
        assert_eq!((st.acked_seq, st.acked_bytes), (3, 5900));
    }
}
