//! Routing by node: the [`Transport`] installed on the node sends every signal for a PID of
//! another node into that peer's queue, as an envelope (module `envelope`).
//!
//! Local use may open a peer (module `peers`): the target node may have started a moment
//! ago. Undoing a relation (demonitor, unlink) or answering one (exit, link-down) only looks
//! a peer up: there is nothing to undo or answer on a peer not known.
//!
//! A peer declared down refuses what is meant for the run it was declared down in (sends
//! fail with `node unreachable`, monitors and links with `noconnection`), but not what is
//! meant for a run of it not seen here yet: such a PID came from that run, so it has
//! started, and this node has only not heard from it yet (a restart after the old run was
//! declared down). Sends, signals, monitors and links towards it are queued as if the peer
//! were up, in the session this node started when it declared the peer down; monitors and
//! links are also *held early* (`PeerState::early`): kept when that run is heard from (and
//! then answered as any other), failed with `noconnection` if it is not heard from within
//! `dead_after`, the time that declares a silent peer down.
//!
//! While the peer is up in another run, such a PID shows that run was restarted and this
//! node has not heard the new run yet. The current session goes to the new run if its first
//! frame comes after this (`PeerState::session_for`); if it has carried frames already, the
//! new run would take the next one as a gap, so what is meant for the new run waits (module
//! `held`) until it is heard, and goes out in the session that then serves it.

use std::sync::Arc;
use std::time::Instant;

use wsrelay_process::{
    reason, Event, ExitResult, Message, NameError, Pid, SendError, SpaceFuture, Transport, Unbuilt,
    Value,
};

use crate::envelope::{Envelope, NODE_LANE};
use crate::peer::{incarnation_of, Peer, PeerState, Relation};
use crate::shared::Shared;
use crate::stats::DropReason;

/// The [`Transport`] installed on the node.
#[derive(Debug, Clone)]
pub(crate) struct NatsTransport {
    pub(crate) shared: Arc<Shared>,
}

impl NatsTransport {
    /// The peer of `to`, if a send there can go out now: it is up, or `to` belongs to a run
    /// of it not seen yet (module docs).
    fn usable_peer(&self, to: &Pid) -> Result<Arc<Peer>, SendError> {
        let sh = &self.shared;
        let unreachable = || SendError::NodeUnreachable(to.node().to_owned());
        let peer = sh.open_peer(to.node()).ok_or_else(unreachable)?;
        if sh.nats_unreachable()
            || (peer.is_down() && !peer.state.lock().is_unseen(incarnation_of(to)))
        {
            sh.stats.count_drop(DropReason::Unreachable, 1);
            return Err(unreachable());
        }
        Ok(peer)
    }

    /// Queues a signal that needs no bookkeeping here (cancel, terminate).
    fn signal(&self, to: &Pid, env: &Envelope) {
        if let Ok(peer) = self.usable_peer(to) {
            let bytes = env.encode();
            let mut st = peer.state.lock();
            if !peer.push_to(&mut st, to, env.lane(), bytes, None, &self.shared.opts) {
                drop(st);
                self.shared.stats.count_drop(DropReason::Unreachable, 1);
            }
        }
    }

    /// Records a relation (monitor, link) across the connection to its remote process's node
    /// and queues `env` announcing it; `false` if that connection is down, and the caller
    /// fails the relation at once.
    ///
    /// "Down" is checked again under the peer's lock, which ending the connection takes too:
    /// a relation recorded after the connection's relations were taken would never be failed.
    /// So each relation is failed exactly once, here or by the end of the connection. A peer
    /// declared down (`down_since`) takes only relations it can hold early (module docs). A
    /// peer whose `down` flag is set while `down_since` is not is either being declared down
    /// (its relations not yet taken: this one will be failed with them) or being revived:
    /// recording normally is right for both.
    fn add_relation(&self, rel: Relation, env: Envelope) -> bool {
        let Ok(peer) = self.usable_peer(rel.remote()) else {
            return false;
        };
        let (opts, bytes) = (&self.shared.opts, env.encode());
        let mut st = peer.state.lock();
        if st.down_since.is_some() {
            if !st.hold_early(rel, Instant::now(), opts.early_relations_max) {
                return false;
            }
            peer.push(&mut st, env.lane(), bytes);
        } else {
            if !peer.push_to(&mut st, rel.remote(), env.lane(), bytes, Some(&rel), opts) {
                return false;
            }
            rel.record(&mut st);
        }
        true
    }

    /// Removes a relation held with the node of the remote process `to`; queues `env` only
    /// if it was still held (it may have been failed with the connection already). A peer
    /// not known holds none.
    fn drop_relation(&self, to: &Pid, env: Envelope, remove: impl FnOnce(&mut PeerState) -> bool) {
        let Some(peer) = self.shared.peer(to.node()) else {
            return;
        };
        let bytes = env.encode();
        let mut st = peer.state.lock();
        if remove(&mut st) {
            // A full wait loses the undoing, not the relation: it is gone here, and what
            // the peer sends for it is dropped on arrival.
            let _ = peer.push_to(&mut st, to, env.lane(), bytes, None, &self.shared.opts);
        }
    }

    /// Queues the encoded message envelope `bytes` for `to` in `lane` of its peer.
    ///
    /// Encoded before the peer's lock is taken, which is then taken once: to check the
    /// receiver's run and to queue (the refusals keep their order: no such process, a full
    /// queue, too big).
    fn queue_message(
        &self,
        peer: &Peer,
        to: &Pid,
        lane: u64,
        bytes: bytes::Bytes,
    ) -> Result<(), SendError> {
        let sh = &self.shared;
        let mut st = peer.state.lock();
        let refused = if st.is_past(incarnation_of(to)) {
            Some((DropReason::NoProc, SendError::NoProcess(to.to_string())))
        } else if peer.is_full(&sh.opts) {
            let unreachable = SendError::NodeUnreachable(to.node().to_owned());
            Some((DropReason::QueueFull, unreachable))
        } else if bytes.len() > sh.max_envelope {
            Some((DropReason::TooBig, SendError::TooBig(bytes.len())))
        } else {
            None
        };
        if let Some((reason, e)) = refused {
            drop(st);
            sh.stats.count_drop(reason, 1);
            return Err(e);
        }
        if !peer.push_to(&mut st, to, lane, bytes, None, &sh.opts) {
            drop(st);
            sh.stats.count_drop(DropReason::Unreachable, 1);
            return Err(SendError::NodeUnreachable(to.node().to_owned()));
        }
        Ok(())
    }

    fn deliver_noconnection_exit(&self, watcher: &Pid, target: &Pid) {
        self.shared.inbound.event(
            watcher,
            Event::Exit {
                from: target.clone(),
                result: ExitResult::error(reason::NOCONNECTION),
            },
        );
    }

    fn deliver_noconnection_link_down(&self, local: &Pid, remote: &Pid) {
        self.shared.inbound.event(
            local,
            Event::LinkDown {
                from: remote.clone(),
                result: ExitResult::error(reason::NOCONNECTION),
            },
        );
    }
}

impl Transport for NatsTransport {
    fn send(&self, to: &Pid, msg: Message) -> Result<(), SendError> {
        let peer = self.usable_peer(to)?;
        let env = Envelope::Message {
            to: to.clone(),
            msg,
        };
        let bytes = env.encode();
        self.queue_message(&peer, to, env.lane(), bytes)
    }

    /// A message whose payload shows itself (a Lua table of a few fields) is encoded from it,
    /// without building the payload first; any other is left to [`send`](Self::send).
    fn send_unbuilt(
        &self,
        from: Option<&Pid>,
        to: &Pid,
        topic: &str,
        payload: &dyn Unbuilt,
    ) -> Option<Result<(), SendError>> {
        let peer = match self.usable_peer(to) {
            Ok(peer) => peer,
            Err(e) => return Some(Err(e)),
        };
        let bytes = Envelope::encode_unbuilt(from, to, topic, payload)?;
        let lane = from.map_or(NODE_LANE, Pid::id);
        Some(self.queue_message(&peer, to, lane, bytes))
    }

    fn monitor(&self, watcher: &Pid, target: &Pid) {
        let env = Envelope::Monitor {
            watcher: watcher.clone(),
            target: target.clone(),
        };
        let rel = Relation::Monitor {
            watcher: watcher.clone(),
            target: target.clone(),
        };
        if !self.add_relation(rel, env) {
            self.deliver_noconnection_exit(watcher, target);
        }
    }

    fn demonitor(&self, watcher: &Pid, target: &Pid) {
        let env = Envelope::Demonitor {
            watcher: watcher.clone(),
            target: target.clone(),
        };
        let rel = Relation::Monitor {
            watcher: watcher.clone(),
            target: target.clone(),
        };
        self.drop_relation(target, env, |st| st.take(&rel));
    }

    fn link(&self, local: &Pid, remote: &Pid) {
        let env = Envelope::Link {
            from: local.clone(),
            to: remote.clone(),
        };
        let rel = Relation::Link {
            local: local.clone(),
            remote: remote.clone(),
        };
        if !self.add_relation(rel, env) {
            self.deliver_noconnection_link_down(local, remote);
        }
    }

    fn unlink(&self, local: &Pid, remote: &Pid) {
        let env = Envelope::Unlink {
            from: local.clone(),
            to: remote.clone(),
        };
        let rel = Relation::Link {
            local: local.clone(),
            remote: remote.clone(),
        };
        self.drop_relation(remote, env, |st| st.take(&rel));
    }

    /// An event for a remote process answers a relation it holds here: the EXIT of a local
    /// process it monitors, the link-down of a local process it is linked with.
    fn event(&self, to: &Pid, event: Event) {
        match event {
            Event::Exit { from, result } => {
                let key = (to.clone(), from.clone());
                let env = Envelope::Exit {
                    watcher: to.clone(),
                    target: from,
                    result,
                };
                self.drop_relation(to, env, |st| st.watched.remove(&key));
            }
            Event::LinkDown { from, result } => {
                let rel = Relation::Link {
                    local: from.clone(),
                    remote: to.clone(),
                };
                let env = Envelope::LinkDown {
                    from,
                    to: to.clone(),
                    result,
                };
                self.drop_relation(to, env, |st| st.take(&rel));
            }
            Event::Cancel { from, reason } => self.cancel(from.as_ref(), to, reason),
        }
    }

    fn cancel(&self, from: Option<&Pid>, to: &Pid, reason: Value) {
        let env = Envelope::Cancel {
            from: from.cloned(),
            to: to.clone(),
            reason,
        };
        self.signal(to, &env);
    }

    fn terminate(&self, to: &Pid) {
        self.signal(to, &Envelope::Terminate { to: to.clone() });
    }

    fn is_congested(&self, from: Option<&Pid>, to: &Pid) -> bool {
        let lane = from.map_or(NODE_LANE, Pid::id);
        self.shared
            .peer(to.node())
            .is_some_and(|p| !p.is_down() && p.is_congested(lane, &self.shared.opts))
    }

    fn wait_for_space(&self, from: Option<&Pid>, to: &Pid) -> SpaceFuture {
        let peer = self.shared.peer(to.node());
        let shared = self.shared.clone();
        let lane = from.map_or(NODE_LANE, Pid::id);
        Box::pin(async move {
            let Some(peer) = peer else { return };
            loop {
                let notified = peer.space.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if peer.is_down() || !peer.is_congested(lane, &shared.opts) {
                    return;
                }
                notified.await;
            }
        })
    }

    fn owns_name(&self, name: &str) -> bool {
        self.shared.names.is_some() && name.starts_with(crate::CLUSTER_NAME_PREFIX)
    }

    fn register_name(&self, name: &str, pid: &Pid) -> Result<(), NameError> {
        match &self.shared.names {
            Some(names) => names.register(name, pid),
            None => Err(NameError::Invalid(name.to_owned())),
        }
    }

    fn unregister_name(&self, name: &str, pid: &Pid) -> Result<(), NameError> {
        match &self.shared.names {
            Some(names) => names.unregister(name, pid),
            None => Err(NameError::NotOwner(name.to_owned())),
        }
    }

    fn lookup_name(&self, name: &str) -> Option<Pid> {
        self.shared
            .names
            .as_ref()
            .and_then(|names| names.lookup(name))
    }

    /// Queues the announcement to every peer known and up, where it merges with the changes
    /// still waiting (module `announce`). Peers not known yet get it in the snapshot that
    /// starts their session; a peer down gets one when it is back.
    fn group_changed(&self, scope: &str, group: &str, pid: &Pid, count: usize) {
        let sh = &self.shared;
        if !sh.opts.groups {
            return;
        }
        for peer in sh.peers.all() {
            if peer.is_down() {
                continue;
            }
            let mut st = peer.state.lock();
            peer.announce(&mut st, scope, group, pid, count);
        }
    }

    /// One envelope, encoded once, queued to each node with members.
    fn group_send(&self, nodes: &[Arc<str>], scope: &str, group: &str, msg: &Message) {
        let sh = &self.shared;
        let env = Envelope::GroupSend {
            scope: scope.to_owned(),
            group: group.to_owned(),
            msg: msg.clone(),
        };
        let (bytes, lane) = (env.encode(), env.lane());
        if bytes.len() > sh.max_envelope {
            sh.stats.count_drop(DropReason::TooBig, nodes.len() as u64);
            return;
        }
        for node in nodes {
            let Some(peer) = sh.peer(node) else { continue };
            if peer.is_down() || sh.nats_unreachable() {
                sh.stats.count_drop(DropReason::Unreachable, 1);
                continue;
            }
            if peer.is_full(&sh.opts) {
                sh.stats.count_drop(DropReason::QueueFull, 1);
                continue;
            }
            let mut st = peer.state.lock();
            peer.push(&mut st, lane, bytes.clone());
        }
    }
}
