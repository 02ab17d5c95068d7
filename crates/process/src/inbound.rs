//! [`Inbound`]: the transport's handle on the local node, for what arrives from other nodes.
//!
//! A [`Transport`](crate::Transport) carries signals out (its trait methods) and hands what
//! arrives back in through this handle: messages, the remote ends of monitors and links,
//! exits and link downs, cancels and terminates. Each method is the counterpart of one
//! outgoing signal, so a transport needs nothing else from [`Node`].

use crate::cell::Side;
use crate::message::reason;
use crate::relations::exit_event;
use crate::{Event, Message, Node, Pid, SendError, Value};

/// What a transport may do to the local node when a signal arrives from another node.
///
/// Obtained with [`Node::inbound`]; cloning is cheap. Every method takes effect at once and
/// never blocks.
#[derive(Debug, Clone)]
pub struct Inbound {
    node: Node,
}

impl Node {
    /// The handle a transport uses to deliver what arrives from other nodes.
    pub fn inbound(&self) -> Inbound {
        Inbound { node: self.clone() }
    }
}

impl Inbound {
    /// The node this handle delivers to.
    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// A message for the local process `to` (the counterpart of [`Transport::send`](crate::Transport::send)).
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if `to` is not alive.
    pub fn send(&self, to: &Pid, msg: Message) -> Result<(), SendError> {
        self.node.send(to, msg)
    }

    /// The remote `watcher` starts monitoring the local `target`. If `target` is not alive,
    /// the `noproc` exit goes back to the watcher through the transport at once, so the
    /// watcher's monitor fires exactly once either way.
    pub fn monitor(&self, watcher: &Pid, target: &Pid) {
        if !self.node.add_relation(target, Side::Watchers, watcher) {
            self.node
                .deliver_event(watcher, exit_event(target, reason::NOPROC));
        }
    }

    /// The remote `watcher` no longer monitors the local `target` (it unmonitored, or the
    /// connection to its node is lost): `target`'s exit will not be sent to it.
    pub fn demonitor(&self, watcher: &Pid, target: &Pid) {
        self.node.remove_relation(target, Side::Watchers, watcher);
    }

    /// The remote `peer` links to the local `pid`; `false` if `pid` is not alive (the
    /// transport then answers with a `noproc` link down).
    pub fn link(&self, peer: &Pid, pid: &Pid) -> bool {
        self.node.add_relation(pid, Side::Links, peer)
    }

    /// The remote `peer` unlinks from the local `pid`.
    pub fn unlink(&self, peer: &Pid, pid: &Pid) {
        self.node.remove_relation(pid, Side::Links, peer);
    }

    /// An event for the local process `to` (the counterpart of
    /// [`Transport::event`](crate::Transport::event)): the [`Event::Exit`] of a remote
    /// process it monitors (the real one, `noproc` or `noconnection`), or the
    /// [`Event::LinkDown`] of a remote process it is linked to. A link down is handled as a
    /// link exit: the link is removed and, for an error exit, `to` is stopped unless it traps
    /// links. Returns whether the event was delivered.
    pub fn event(&self, to: &Pid, event: Event) -> bool {
        self.node.deliver_event(to, event)
    }

    /// `pid.cancel` from a remote process (or none) for the local process `to`.
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if `to` is not alive.
    pub fn cancel(&self, from: Option<&Pid>, to: &Pid, reason: Value) -> Result<(), SendError> {
        self.node.cancel(from, to, reason)
    }

    /// Stops the local process `to` at once with the error `terminated`.
    ///
    /// # Errors
    ///
    /// [`SendError::NoProcess`] if `to` is not alive.
    pub fn terminate(&self, to: &Pid) -> Result<(), SendError> {
        self.node.terminate(to)
    }
}
