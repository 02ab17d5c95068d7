//! Shared helpers: an in-memory transport that joins two nodes of one test.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use wsrelay_process::{
    reason, Event, ExitResult, Inbound, Message, Node, Pid, SendError, Transport, Value,
};

/// Hands every outgoing signal, group announcement and group send to the other node's
/// [`Inbound`], as a transport does once it has crossed the network (what `wsrelay-cluster`
/// does over NATS; its own tests cover the network). Counts the group sends.
#[derive(Debug, Default)]
pub struct Loopback {
    /// This node, for the answers a transport gives itself (a link to a dead process).
    me: OnceLock<Inbound>,
    peer: OnceLock<Inbound>,
    group_sends: AtomicUsize,
}

impl Loopback {
    fn peer(&self) -> &Inbound {
        self.peer.get().expect("both nodes joined")
    }

    /// How many group sends left this node (one envelope per other node and send).
    pub fn group_sends(&self) -> usize {
        self.group_sends.load(Ordering::Relaxed)
    }
}

/// Joins `a` and `b` with a [`Loopback`] each way; returns the one that carries `a`'s
/// signals to `b`.
pub fn join(a: &Node, b: &Node) -> Arc<Loopback> {
    let (to_b, to_a) = (Arc::new(Loopback::default()), Arc::new(Loopback::default()));
    for (node, transport, peer) in [(a, &to_b, b), (b, &to_a, a)] {
        transport.me.set(node.inbound()).unwrap();
        transport.peer.set(peer.inbound()).unwrap();
        assert!(node.set_transport(transport.clone()));
    }
    to_b
}

impl Transport for Loopback {
    fn send(&self, to: &Pid, msg: Message) -> Result<(), SendError> {
        self.peer().send(to, msg)
    }

    fn monitor(&self, watcher: &Pid, target: &Pid) {
        self.peer().monitor(watcher, target);
    }

    fn demonitor(&self, watcher: &Pid, target: &Pid) {
        self.peer().demonitor(watcher, target);
    }

    fn link(&self, local: &Pid, remote: &Pid) {
        if !self.peer().link(local, remote) {
            let down = Event::LinkDown {
                from: remote.clone(),
                result: ExitResult::error(reason::NOPROC),
            };
            self.me.get().expect("joined").event(local, down);
        }
    }

    fn unlink(&self, local: &Pid, remote: &Pid) {
        self.peer().unlink(local, remote);
    }

    fn event(&self, to: &Pid, event: Event) {
        self.peer().event(to, event);
    }

    fn cancel(&self, from: Option<&Pid>, to: &Pid, reason: Value) {
        let _ = self.peer().cancel(from, to, reason);
    }

    fn terminate(&self, to: &Pid) {
        let _ = self.peer().terminate(to);
    }

    fn group_changed(&self, scope: &str, group: &str, pid: &Pid, count: usize) {
        self.peer()
            .group_set(pid.node(), scope, group, &[(pid.clone(), count)]);
    }

    fn group_send(&self, nodes: &[Arc<str>], scope: &str, group: &str, msg: &Message) {
        assert_eq!(nodes.len(), 1, "one envelope per other node");
        self.group_sends.fetch_add(1, Ordering::Relaxed);
        self.peer().group_send(scope, group, msg.clone());
    }
}
