//! The state shared by the transport seam, the control loop and the per-peer writers, and
//! the few operations all of them need: finding or opening a peer, ending a connection,
//! building and publishing control frames.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use wsrelay_process::{reason, Event, ExitResult, Inbound, Node, Pid};

use crate::announce::GROUP_CHUNK;
use crate::envelope::Envelope;
use crate::frame::{Codec, Heartbeat};
use crate::names::Names;
use crate::peer::{incarnation_of, Peer, PeerState, Relation, Severed, SnapshotPart};
use crate::peers::{Admission, PeerTable};
use crate::stats::{ClusterStats, DropReason};
use crate::throttle::Throttle;
use crate::ClusterOptions;

/// Commands to the control loop.
#[derive(Debug)]
pub(crate) enum Ctl {
    /// NATS (re)connected: probe every peer.
    Reconnected,
    /// The writer could not publish: end the connection.
    PublishFailed(Arc<Peer>),
    /// A new peer: send it the snapshot of this node's group memberships.
    SyncGroups(Arc<Peer>),
}

/// Starts the writer task of a new peer (module `writer`; passed in so that this module,
/// which the writer uses, does not depend on it).
pub(crate) type StartWriter = fn(&Arc<Shared>, &Arc<Peer>);

/// State shared by the transport, the control loop and the writers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) node: Node,
    /// How arriving signals reach the local node.
    pub(crate) inbound: Inbound,
    pub(crate) me: String,
    pub(crate) inc: u32,
    pub(crate) client: async_nats::Client,
    pub(crate) opts: ClusterOptions,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) peers: PeerTable,
    pub(crate) stats: Arc<ClusterStats>,
    /// Since when NATS is disconnected (written by the connection's event callback).
    pub(crate) disconnected_since: Arc<Mutex<Option<Instant>>>,
    pub(crate) ctl: mpsc::UnboundedSender<Ctl>,
    pub(crate) names: Option<Names>,
    pub(crate) max_envelope: usize,
    pub(crate) codec: Codec,
    pub(crate) start_writer: StartWriter,
    /// Limits warnings about refused frames (anyone who can publish can cause them).
    pub(crate) refused_frames: Throttle,
    /// Limits warnings about remote group members over the cap.
    pub(crate) group_cap: Throttle,
    pub(crate) runtime: RuntimeGuard,
}

/// Owns the cluster runtime. The node and its transport refer to each other, so a started
/// cluster lives until `Cluster::shutdown` or the end of the OS process; the runtime is
/// shut down without blocking either way.
#[derive(Debug)]
pub(crate) struct RuntimeGuard(pub(crate) Mutex<Option<tokio::runtime::Runtime>>);

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if let Some(rt) = self.0.lock().take() {
            rt.shutdown_background();
        }
    }
}

impl Shared {
    /// `wsr.<cluster>.n.<peer>.<me>`: where this node publishes to `peer`.
    fn subject_to(&self, peer: &str) -> String {
        format!("wsr.{}.n.{}.{}", self.opts.cluster, peer, self.me)
    }

    /// The peer named `name`, if known; never creates one.
    pub(crate) fn peer(&self, name: &str) -> Option<Arc<Peer>> {
        self.peers.get(name)
    }

    /// The peer named `name`, created with its writer if there is room. `None` for this
    /// node, a name that cannot be a node, or a full table (counted there).
    pub(crate) fn open_peer(self: &Arc<Self>, name: &str) -> Option<Arc<Peer>> {
        if name == self.me || !crate::frame::valid_node_name(name) {
            return None;
        }
        match self.peers.admit(name, || self.subject_to(name)) {
            Admission::Known(peer) => Some(peer),
            Admission::New(peer) => {
                (self.start_writer)(self, &peer);
                if self.opts.groups {
                    // On the control loop: this may run where a group send is being made.
                    let _ = self.ctl.send(Ctl::SyncGroups(peer.clone()));
                }
                Some(peer)
            }
            Admission::Full => None,
        }
    }

    /// Whether sends to other nodes fail at once because NATS has been away too long.
    pub(crate) fn nats_unreachable(&self) -> bool {
        self.disconnected_since
            .lock()
            .is_some_and(|t| t.elapsed() >= self.opts.unreachable_grace)
    }

    /// Ends the connection with `peer`: fails what spans it, exactly once.
    pub(crate) fn end_connection(&self, peer: &Peer, why: &str) {
        self.end_connection_keeping(peer, why, None);
    }

    /// Ends the connection with `peer` after it restarted as incarnation `inc`. Monitors and
    /// links towards PIDs of *that* run were made after it started (their PIDs came from it),
    /// so they did not span the lost connection: they are kept and announced again in the
    /// new session instead of failing with `noconnection`. Announcing them twice is harmless
    /// (the peer records a watcher or link once).
    ///
    /// If the new run's frame says it accepted this node's current outbound session
    /// (`acked`): a node accepts a session only from its first frame, so the new run has
    /// every frame of it, in order (a loss would show as a gap there), and nothing of it
    /// reached the old run. That session goes on: only what belongs to other runs fails, and
    /// the old run's inbound session is fenced. Starting a new one instead would make the
    /// new run end its side in turn, and its new session would end this side's again,
    /// failing what was kept. The same if the session was started for the new run
    /// (`PeerState::session_for`): its first frame was sealed after the new run had started,
    /// so no frame of it reached the old run, and the new run accepts it from its start even
    /// if the frame that announced the run was sealed before it did (the two crossed).
    ///
    /// Either way the session then serves the new run: what waited for it (module `held`)
    /// goes out, after the relations announced again.
    ///
    /// A peer declared down had its connection ended then; the session this node started
    /// since carried only what was meant for a run not seen yet (module `routing`), so it
    /// goes on: ending it again would make the new run, which may have accepted it, end its
    /// side too, and the two would fail each other's new relations. Only the relations
    /// towards other runs fail. The early ones keep their deadline until the run is heard.
    pub(crate) fn end_restarted_connection(&self, peer: &Peer, inc: u32, acked: u64) {
        let severed = {
            let mut st = peer.state.lock();
            if st.down_since.is_some() {
                Some((
                    st.sever_other_runs(inc),
                    "cluster peer restarted while down",
                ))
            } else if (acked != 0 && acked == st.out_session) || st.session_for == Some(inc) {
                st.end_inbound();
                Some((
                    st.sever_other_runs(inc),
                    "cluster peer restarted; our session is one it accepts from its start",
                ))
            } else {
                None
            }
            .inspect(|_| self.serve_run(peer, &mut st, inc))
        };
        match severed {
            Some((severed, what)) => {
                tracing::info!(peer = %peer.name, monitors = severed.monitors.len(), links = severed.links.len(), "{what}");
                self.fail(severed);
            }
            None => self.end_connection_keeping(peer, "peer restarted", Some(inc)),
        }
    }

    /// The peer reset this node's outbound session but kept its own side (`Body::Reset` with
    /// `kept`): that session's frames were meant for another run of the peer, which now runs
    /// a new one that has accepted nothing of it (`PeerState::end_outbound`). A new outbound
    /// session, for the run heard; the monitors and links announced in the old one fail
    /// (the peer never got them; an unlink withdraws each link in case the peer holds it from
    /// its own side); the peer's session and its monitors here go on.
    pub(crate) fn end_outbound(&self, peer: &Peer) {
        let severed = {
            let mut st = peer.state.lock();
            let severed = st.end_outbound();
            st.session_for = st.peer_inc;
            for (local, remote) in &severed.links {
                let env = Envelope::Unlink {
                    from: local.clone(),
                    to: remote.clone(),
                };
                peer.push(&mut st, env.lane(), env.encode());
            }
            severed
        };
        self.stats.count_session_reset();
        tracing::info!(peer = %peer.name, monitors = severed.monitors.len(), links = severed.links.len(), "cluster session reset by peer (its side goes on)");
        peer.credit.notify_waiters();
        self.fail(severed);
        if !peer.is_down() {
            self.push_group_snapshot(peer);
        }
    }

    /// Fails with `noconnection` the relations `peer` held early (see `PeerState::early`)
    /// whose run was not heard from within `dead_after`, and withdraws them at the peer in
    /// case that run gets them after all.
    pub(crate) fn expire_early(&self, peer: &Peer, now: Instant) {
        let expired = {
            let mut st = peer.state.lock();
            if st.early.is_empty() {
                return;
            }
            let expired = st.expire_early(now, self.opts.dead_after);
            for rel in &expired {
                let env = match rel.clone() {
                    Relation::Monitor { watcher, target } => {
                        Envelope::Demonitor { watcher, target }
                    }
                    Relation::Link { local, remote } => Envelope::Unlink {
                        from: local,
                        to: remote,
                    },
                };
                peer.push(&mut st, env.lane(), env.encode());
            }
            expired
        };
        if expired.is_empty() {
            return;
        }
        tracing::info!(peer = %peer.name, relations = expired.len(), "monitors and links towards a run not heard from in time failed");
        self.fail_relations(expired);
    }

    /// Fails `rels`, taken from their peer, with `noconnection`.
    fn fail_relations(&self, rels: Vec<Relation>) {
        let mut severed = Severed::default();
        for rel in rels {
            match rel {
                Relation::Monitor { watcher, target } => severed.monitors.push((watcher, target)),
                Relation::Link { local, remote } => severed.links.push((local, remote)),
            }
        }
        self.fail(severed);
    }

    /// Makes the current session of `peer` the one that serves its run `inc`, which was
    /// just heard from: what waited for that run (module `held`) is queued in it, in order;
    /// what waited for other runs is dropped (their relations were failed with them).
    fn serve_run(&self, peer: &Peer, st: &mut PeerState, inc: u32) {
        st.session_for = Some(inc);
        let (waiting, others) = st.held.take_for(Some(inc));
        for w in waiting {
            peer.push(st, w.lane, w.bytes);
        }
        self.stats.count_drop(DropReason::NoProc, others as u64);
    }

    /// Drops what waited for a run of `peer` not heard from within `dead_after` (module
    /// `held`) and fails the monitors and links among it with `noconnection`. They were
    /// never sent, so nothing is withdrawn at the peer.
    pub(crate) fn expire_held(&self, peer: &Peer, now: Instant) {
        let failed: Vec<Relation> = {
            let mut st = peer.state.lock();
            let expired = st.held.expire(now, self.opts.dead_after);
            if expired.is_empty() {
                return;
            }
            self.stats
                .count_drop(DropReason::Unreachable, expired.len() as u64);
            expired
                .into_iter()
                .filter_map(|w| w.rel)
                .filter(|rel| st.take(rel))
                .collect()
        };
        tracing::info!(peer = %peer.name, relations = failed.len(), "what waited for a run not heard from in time dropped");
        self.fail_relations(failed);
    }

    fn end_connection_keeping(&self, peer: &Peer, why: &str, keep_inc: Option<u32>) {
        let severed = {
            let mut st = peer.state.lock();
            let mut severed = st.end();
            if let Some(inc) = keep_inc {
                let of_run = |pid: &Pid| incarnation_of(pid) == inc;
                let (keep, fail): (Vec<_>, Vec<_>) = std::mem::take(&mut severed.monitors)
                    .into_iter()
                    .partition(|(_, target)| of_run(target));
                severed.monitors = fail;
                for (watcher, target) in keep {
                    let env = Envelope::Monitor {
                        watcher: watcher.clone(),
                        target: target.clone(),
                    };
                    peer.push(&mut st, env.lane(), env.encode());
                    st.monitors.insert((watcher, target));
                }
                let (keep, fail): (Vec<_>, Vec<_>) = std::mem::take(&mut severed.links)
                    .into_iter()
                    .partition(|(_, remote)| of_run(remote));
                severed.links = fail;
                for (local, remote) in keep {
                    let env = Envelope::Link {
                        from: local.clone(),
                        to: remote.clone(),
                    };
                    peer.push(&mut st, env.lane(), env.encode());
                    st.links.insert((local, remote));
                }
                self.serve_run(peer, &mut st, inc);
            } else {
                let (_, dropped) = st.held.take_for(None);
                self.stats.count_drop(DropReason::Fenced, dropped as u64);
            }
            severed
        };
        self.stats.count_session_reset();
        tracing::info!(peer = %peer.name, why, monitors = severed.monitors.len(), links = severed.links.len(), "cluster session ended");
        peer.credit.notify_waiters();
        self.fail(severed);
        if !peer.is_down() {
            // Announcements in flight may be lost with the ended session: the new one starts
            // with a snapshot that the peer reconciles its view with.
            self.push_group_snapshot(peer);
        }
    }

    /// Queues this node's group memberships to `peer` (sync begin, the members, sync end) in
    /// the current epoch, in place of the announcements still waiting (module `announce`);
    /// see `wsrelay_process` `groups/remote.rs`. No-op unless groups span nodes.
    ///
    /// Each group is read and queued under its scope's lock (the visitor runs under it),
    /// which changes take to queue too: a change either is in the snapshot or follows it.
    pub(crate) fn push_group_snapshot(&self, peer: &Peer) {
        if !self.opts.groups {
            return;
        }
        let push = |part: SnapshotPart, env: &Envelope| {
            let bytes = env.encode();
            let mut st = peer.state.lock();
            peer.push_snapshot(&mut st, part, bytes);
        };
        push(SnapshotPart::Begin, &Envelope::GroupSync { end: false });
        // Chunks keep every envelope far below the server's max_payload.
        self.inbound.group_snapshot(&mut |scope, group, members| {
            for chunk in members.chunks(GROUP_CHUNK) {
                let env = Envelope::GroupSet {
                    scope: scope.to_owned(),
                    group: group.to_owned(),
                    members: chunk.to_vec(),
                };
                push(SnapshotPart::Members, &env);
            }
        });
        push(SnapshotPart::End, &Envelope::GroupSync { end: true });
    }

    fn fail(&self, severed: Severed) {
        for (watcher, target) in severed.monitors {
            self.inbound.event(
                &watcher,
                Event::Exit {
                    from: target,
                    result: ExitResult::error(reason::NOCONNECTION),
                },
            );
        }
        for (watcher, target) in severed.watched {
            self.inbound.demonitor(&watcher, &target);
        }
        for (local, remote) in severed.links {
            self.inbound.event(
                &local,
                Event::LinkDown {
                    from: remote,
                    result: ExitResult::error(reason::NOCONNECTION),
                },
            );
        }
    }

    /// A heartbeat to `peer` with this side's session and acknowledgement.
    pub(crate) fn heartbeat(&self, peer: &Peer, probe: bool) -> Bytes {
        let st = peer.state.lock();
        let (ack_session, ack_seq, ack_bytes) = st.ack();
        self.codec.heartbeat(
            &peer.name,
            &Heartbeat {
                session: st.out_session,
                published: st.published_seq,
                ack_session,
                ack_seq,
                ack_bytes,
                grant: self.opts.grant(),
                probe,
            },
        )
    }

    /// Publishes a control frame (heartbeat, reset) without waiting: it must never block the
    /// control loop when NATS is away.
    pub(crate) fn publish_control(&self, peer: &Peer, frame: Bytes) {
        let client = self.client.clone();
        let subject = peer.subject.clone();
        self.rt.spawn(async move {
            let _ = client.publish(subject, frame).await;
        });
    }
}
