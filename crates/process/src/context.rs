//! What a running process uses to act: [`Context`].

use std::fmt;
use std::sync::Arc;

use crate::cell::{Cell, Changed, Received};
use crate::{
    Event, ExitResult, LinkError, Message, NameError, Node, Pid, SendError, SpawnError,
    SpawnOptions, Value,
};

/// The handle a process acts through: its PID, its inbox and events, and every operation of
/// docs/spec.md §2 with the process as the actor.
///
/// Receiving is meant for one task (the process's own); the handle can be cloned to send from
/// helper tasks. Operations after the process has exited fail or do nothing.
#[derive(Clone)]
pub struct Context {
    node: Node,
    pub(crate) cell: Arc<Cell>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Context").field(&self.cell.pid).finish()
    }
}

impl Context {
    pub(crate) fn new(node: Node, cell: Arc<Cell>) -> Context {
        Context { node, cell }
    }

    /// The process's PID.
    pub fn pid(&self) -> &Pid {
        &self.cell.pid
    }

    /// The node the process runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    // ===== receiving =====
    //
    // `recv`, `next_event` and `next` each spell out the same try-then-wait loop: folded into
    // one generic async helper, the nested future made every idle process 127 bytes larger
    // (1,100 instead of 973 in `benches/runtime.rs`, "memory per idle"). The loop is
    // cancel safe because `ready` keeps a permit for a wake-up that comes while nobody waits.

    /// Waits for the next inbox message.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is removed from the inbox only when it is returned.
    pub async fn recv(&self) -> Message {
        loop {
            let changed = self.changed();
            if let Some(msg) = self.cell.pop_message() {
                return msg;
            }
            changed.await;
        }
    }

    /// Takes the next inbox message if there is one.
    pub fn try_recv(&self) -> Option<Message> {
        self.cell.pop_message()
    }

    /// Waits for the next system event.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn next_event(&self) -> Event {
        loop {
            let changed = self.changed();
            if let Some(event) = self.cell.pop_event() {
                return event;
            }
            changed.await;
        }
    }

    /// Takes the next system event if there is one.
    pub fn try_next_event(&self) -> Option<Event> {
        self.cell.pop_event()
    }

    /// Waits for the next event or message, events first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn next(&self) -> Received {
        loop {
            let changed = self.changed();
            if let Some(received) = self.cell.pop_any() {
                return received;
            }
            changed.await;
        }
    }

    /// A future that completes at the first change (a message, an event or a stop request)
    /// made after this call. Drivers that poll [`try_recv`](Context::try_recv) and
    /// [`try_next_event`](Context::try_next_event) themselves create it *before* they check,
    /// then await it if nothing was there: no change can slip between the check and the wait.
    ///
    /// Only the task that drives the process should wait on it: a process has one waker slot.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub fn changed(&self) -> Changed {
        Changed::new(self.cell.clone())
    }

    /// Wakes `waker` at the next change, for drivers that poll by hand: register first, then
    /// check the queues, and wait only if they were empty.
    pub fn wake_on_change(&self, waker: &std::task::Waker) {
        self.cell.ready.register(waker);
    }

    /// Has `shortcut` offered each message sent to this process while its inbox is empty,
    /// before it is queued ([`Shortcut`](crate::Shortcut)). Set once: returns
    /// `false` if the process already has one.
    pub fn set_shortcut(&self, shortcut: Arc<dyn crate::Shortcut>) -> bool {
        self.cell.shortcut.set(shortcut).is_ok()
    }

    /// The number of messages waiting in the inbox.
    pub fn inbox_len(&self) -> usize {
        self.cell
            .inbox_len
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The estimated bytes held by messages waiting in the inbox.
    pub fn inbox_bytes(&self) -> usize {
        self.cell
            .inbox_bytes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether somebody asked the process to stop at once (terminate, a failed link), and with
    /// which exit. Task-driven processes are stopped by the runtime; detached drivers check this.
    pub fn stop_requested(&self) -> Option<ExitResult> {
        self.cell.kill_requested()
    }

    /// Waits until the process is asked to stop at once; returns the exit it must take.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn stopped(&self) -> ExitResult {
        self.cell.wait_killed().await
    }

    // ===== acting =====

    /// Sends `payload` on `topic` to `to`, with this process as the sender.
    ///
    /// # Errors
    ///
    /// [`SendError::ReservedTopic`] for topics starting with `@`, and as [`Node::send`].
    pub fn send(&self, to: &Pid, topic: &str, payload: impl Into<Value>) -> Result<(), SendError> {
        self.send_message(to, Message::new(Some(self.pid().clone()), topic, payload))
    }

    /// Sends a prepared message (its sender should be this process).
    ///
    /// # Errors
    ///
    /// As [`send`](Context::send).
    pub fn send_message(&self, to: &Pid, msg: Message) -> Result<(), SendError> {
        if msg.topic().starts_with('@') {
            return Err(SendError::ReservedTopic(msg.topic().to_owned()));
        }
        self.node.send(to, msg)
    }

    /// Spawns a process of `entry` on `host` (see [`Node::spawn_entry`]).
    ///
    /// # Errors
    ///
    /// As [`Node::spawn_entry`].
    pub fn spawn_entry(
        &self,
        entry: &str,
        host: &str,
        args: Vec<Value>,
    ) -> Result<Pid, SpawnError> {
        self.node
            .spawn_entry(entry, host, SpawnOptions::new(), args)
    }

    /// Spawns a process of `entry` that this process monitors from its first instant.
    ///
    /// # Errors
    ///
    /// As [`Node::spawn_entry`].
    pub fn spawn_monitored(
        &self,
        entry: &str,
        host: &str,
        args: Vec<Value>,
    ) -> Result<Pid, SpawnError> {
        let options = SpawnOptions::new().monitored_by(self.pid().clone());
        self.node.spawn_entry(entry, host, options, args)
    }

    /// Spawns a process of `entry` linked to this process from its first instant.
    ///
    /// # Errors
    ///
    /// As [`Node::spawn_entry`].
    pub fn spawn_linked(
        &self,
        entry: &str,
        host: &str,
        args: Vec<Value>,
    ) -> Result<Pid, SpawnError> {
        let options = SpawnOptions::new().linked_to(self.pid().clone());
        self.node.spawn_entry(entry, host, options, args)
    }

    /// Monitors `target`: exactly one [`Event::Exit`] arrives when it exits, at once (error
    /// `noproc`) if it is already dead. Monitoring the same target twice is one monitor.
    ///
    /// # Errors
    ///
    /// [`LinkError::SelfReference`] and [`LinkError::SelfDead`].
    pub fn monitor(&self, target: &Pid) -> Result<(), LinkError> {
        self.node.monitor(&self.cell, target)
    }

    /// Stops monitoring `target`. An EXIT already delivered stays in the events stream.
    pub fn unmonitor(&self, target: &Pid) {
        self.node.unmonitor(&self.cell, target);
    }

    /// Links this process and `other`: an error exit of either stops the other, or reaches it
    /// as [`Event::LinkDown`] if it traps links.
    ///
    /// # Errors
    ///
    /// [`LinkError::NoProc`] if `other` is not alive.
    pub fn link(&self, other: &Pid) -> Result<(), LinkError> {
        self.node.link(&self.cell, other)
    }

    /// Removes the link with `other`.
    pub fn unlink(&self, other: &Pid) {
        self.node.unlink(&self.cell, other);
    }

    /// Whether error exits of linked processes arrive as events instead of stopping this one.
    pub fn set_trap_links(&self, trap: bool) {
        self.cell.state.lock().trap_links = trap;
    }

    /// Delivers `pid.cancel` to `to`.
    ///
    /// # Errors
    ///
    /// As [`Node::cancel`].
    pub fn cancel(&self, to: &Pid, reason: impl Into<Value>) -> Result<(), SendError> {
        self.node.cancel(Some(self.pid()), to, reason.into())
    }

    /// Stops `to` at once with the error `terminated`.
    ///
    /// # Errors
    ///
    /// As [`Node::terminate`].
    pub fn terminate(&self, to: &Pid) -> Result<(), SendError> {
        self.node.terminate(to)
    }

    /// Registers `name` for this process.
    ///
    /// # Errors
    ///
    /// As [`Node::register`].
    pub fn register(&self, name: &str) -> Result<(), NameError> {
        self.node.register(name, self.pid())
    }

    /// Releases `name` if this process holds it.
    ///
    /// # Errors
    ///
    /// [`NameError::NotOwner`].
    pub fn unregister(&self, name: &str) -> Result<(), NameError> {
        self.node.unregister(name, self.pid())
    }
}
