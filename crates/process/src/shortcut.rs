//! [`Shortcut`]: a process that can take a message in its sender's call, and [`Unbuilt`]:
//! a payload it can read before it is built.

use crate::Message;

/// What a process does with a message offered in the sender's call.
///
/// A message normally waits in the receiver's inbox until the receiver's task wakes up and
/// takes it. For a process whose handling of some messages is short and needs nothing but
/// itself — a relay connection writing a `ws.send` to its client — the wake-up is most of the
/// cost: a broadcast to 10,000 connections is 10,000 task wake-ups, each polling the
/// connection to write one frame. A process that registers a shortcut
/// ([`Context::set_shortcut`](crate::Context::set_shortcut)) is offered each message before it
/// is queued, while its inbox is empty, and does the work in the sender's call.
///
/// The inbox must be empty for the offer: a message this sender queued earlier is then
/// already taken, so the shortcut cannot overtake it (order per sender is kept). Nor is a
/// message offered while a system event or a stop request waits: the process acts on those
/// first, as it would if the message were queued (a connection whose target exited closes
/// without writing what arrives after the exit). A shortcut that cannot act at once — its
/// process is busy, the message is of another kind — gives the message back and it is
/// queued as usual.
pub trait Shortcut: Send + Sync + 'static {
    /// Handles `msg` now, or gives it back to be queued in the inbox.
    ///
    /// Called from any thread, by any sender, with no lock of the runtime held; it must not
    /// block (a busy process gives the message back) and must not send messages itself.
    ///
    /// # Errors
    ///
    /// The message, when it must go to the inbox instead.
    fn offer(&self, msg: Message) -> Result<(), Message>;

    /// Handles now a message on `topic` whose payload is still in its sender's form
    /// ([`Unbuilt`]); `false` to have the sender build the message and send it as usual
    /// (it is then offered to [`offer`](Self::offer) like any other). Offered under the same
    /// conditions as `offer`. The default takes none.
    fn offer_unbuilt(&self, topic: &str, payload: &dyn Unbuilt) -> bool {
        let _ = (topic, payload);
        false
    }
}

/// A payload not built into a [`Value`](crate::Value) yet: a Lua table on its sender's stack,
/// say. For a small message, building the payload (and dropping it after) is most of what a
/// send costs, and a [`Shortcut`] that needs only a field or two of it can read them here
/// instead ([`Node::send_lazy`](crate::Node::send_lazy)).
pub trait Unbuilt {
    /// The field `key` of the payload, if the payload is a map.
    fn field(&self, key: &str) -> Field<'_>;

    /// Shows the whole payload to `visitor`, as its [`Value`](crate::Value) would
    /// ([`Value::visit`](crate::Value::visit)); `false`, having shown nothing, if it cannot
    /// (the sender then builds it). A transport encodes a payload for another node from it.
    /// The default shows nothing.
    fn visit(&self, visitor: &mut dyn crate::Visit) -> bool {
        let _ = visitor;
        false
    }
}

/// A field of an [`Unbuilt`] payload, as its [`Value`](crate::Value) would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// The payload is a map without that field.
    Missing,
    /// A string that is UTF-8 text ([`Value::String`](crate::Value::String)).
    Text(&'a str),
    /// A string that is not UTF-8 ([`Value::Bytes`](crate::Value::Bytes)).
    Bytes(&'a [u8]),
    /// Anything else, or not known without building the payload: the shortcut declines.
    Other,
}
