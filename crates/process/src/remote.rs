//! The seam towards other nodes.
//!
//! The runtime routes every PID whose node is not its own to a [`Transport`], if one is set
//! with [`Node::set_transport`](crate::Node::set_transport). A transport carries messages and
//! control signals to the owner node and hands what arrives to the local node through its
//! [`Inbound`](crate::Inbound) handle ([`Node::inbound`](crate::Node::inbound)): one method
//! per arriving signal, the counterpart of one method of [`Transport`]. The runtime itself
//! never talks to the network.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{Event, Message, NameError, Pid, SendError, Unbuilt, Value};

/// The future returned by [`Transport::wait_for_space`].
pub type SpaceFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Carries messages and signals to processes on other nodes.
///
/// Every method is non-blocking: a transport queues and returns. Delivery failures that are
/// noticed later are reported as `noconnection` exits to the monitors and links involved.
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Queues `msg` for the remote process `to`.
    ///
    /// # Errors
    ///
    /// [`SendError::NodeUnreachable`] when the node of `to` is known to be down.
    fn send(&self, to: &Pid, msg: Message) -> Result<(), SendError>;

    /// [`send`](Transport::send) of a message from `from` on `topic` whose payload is not
    /// built yet ([`Node::send_lazy`](crate::Node::send_lazy)): the transport may encode it
    /// from what `payload` shows ([`Unbuilt::visit`]). `None` if it did not (then the sender
    /// builds the message and calls `send`). The default always returns `None`.
    fn send_unbuilt(
        &self,
        from: Option<&Pid>,
        to: &Pid,
        topic: &str,
        payload: &dyn Unbuilt,
    ) -> Option<Result<(), SendError>> {
        let _ = (from, to, topic, payload);
        None
    }

    /// The local `watcher` starts monitoring the remote `target`.
    ///
    /// The transport must eventually deliver exactly one [`Event::Exit`] for `target` to
    /// `watcher` (through [`Inbound::event`](crate::Inbound::event)) unless the
    /// monitor is removed first: the real one, `noproc`, or `noconnection`.
    fn monitor(&self, watcher: &Pid, target: &Pid);

    /// The local `watcher` stops monitoring the remote `target`.
    fn demonitor(&self, watcher: &Pid, target: &Pid);

    /// Links the local `local` with the remote `remote`.
    fn link(&self, local: &Pid, remote: &Pid);

    /// Removes the link between `local` and `remote`.
    fn unlink(&self, local: &Pid, remote: &Pid);

    /// Delivers an event (an exit to a remote watcher, a link exit to a remote linked process).
    fn event(&self, to: &Pid, event: Event);

    /// Asks the remote process `to` to stop (`pid.cancel`).
    fn cancel(&self, from: Option<&Pid>, to: &Pid, reason: Value);

    /// Stops the remote process `to` at once.
    fn terminate(&self, to: &Pid);

    /// Whether `from` (a local process, or none) should hold back what it sends to `to`
    /// because the queue towards the node of `to` is above its high-water mark: cooperative
    /// senders (the WebSocket relay) stop reading their input until
    /// [`wait_for_space`](Transport::wait_for_space) resolves. A transport may hold back only
    /// the senders that fill the queue. Default: never.
    fn is_congested(&self, _from: Option<&Pid>, _to: &Pid) -> bool {
        false
    }

    /// Resolves once `from` need no longer hold back what it sends to `to` (see
    /// [`is_congested`](Transport::is_congested)), or the node of `to` is declared down.
    /// Default: at once.
    ///
    /// # Cancel safety
    ///
    /// Implementations must be cancel safe: dropping the future loses nothing.
    fn wait_for_space(&self, _from: Option<&Pid>, _to: &Pid) -> SpaceFuture {
        Box::pin(std::future::ready(()))
    }

    /// Whether `name` is a cluster-scope name that this transport registers (for example
    /// names with a `global:` prefix). Default: none, every name is local.
    fn owns_name(&self, _name: &str) -> bool {
        false
    }

    /// Registers the cluster-scope `name` for the local live process `pid`. Called by
    /// [`Node::register`](crate::Node::register) only for names the transport owns; may
    /// block briefly (a round trip to the name store).
    ///
    /// # Errors
    ///
    /// [`NameError::Taken`] when another process holds it cluster-wide, or why the store
    /// cannot be reached.
    fn register_name(&self, name: &str, _pid: &Pid) -> Result<(), NameError> {
        Err(NameError::Invalid(name.to_owned()))
    }

    /// Releases the cluster-scope `name` if `pid` holds it (also called when `pid` exits).
    ///
    /// # Errors
    ///
    /// [`NameError::NotOwner`] if `pid` does not hold `name`.
    fn unregister_name(&self, name: &str, _pid: &Pid) -> Result<(), NameError> {
        Err(NameError::NotOwner(name.to_owned()))
    }

    /// The process holding the cluster-scope `name`, on any node.
    fn lookup_name(&self, _name: &str) -> Option<Pid> {
        None
    }

    /// The local `pid` is now in `group` of `scope` `count` times (0: it left): tell the
    /// other nodes. Called with the scope's lock held, so announcements of one scope are made
    /// in the order of the changes; an implementation only queues, to peers it knows already,
    /// and must not call back into the node's groups. Default: groups stay node-local.
    fn group_changed(&self, _scope: &str, _group: &str, _pid: &Pid, _count: usize) {}

    /// Sends `msg` to the members of `group` in `scope` on each of `nodes`: one envelope per
    /// node, fanned out there ([`Inbound::group_send`](crate::Inbound::group_send)). Called
    /// with no lock held. Default: nothing leaves the node.
    fn group_send(&self, _nodes: &[Arc<str>], _scope: &str, _group: &str, _msg: &Message) {}
}
