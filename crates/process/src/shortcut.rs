//! [`Shortcut`]: a process that can take a message in its sender's call.

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
}
