//! Where a connection waits between wake-ups, so that a sender can write to its client.
//!
//! A connection task that has nothing to do leaves its connection in a [`Parked`] slot,
//! which the connection's process registers as its [`Shortcut`]. A `ws.send` to an idle
//! connection (its inbox empty, nothing waiting to be written) is then written by the sender,
//! in its own call: no message is queued and the task is not woken. That is the common case
//! twice over: a broadcast writes one frame to each of thousands of idle connections, and a
//! target answering its client's message finds the connection waiting for the next one.
//! A wake-up takes the connection out of the slot for as long as the task runs, so the task
//! and a sender never act on it at once, and no lock is held across an await.
//!
//! Only a sender on the connection's own thread writes: a connection of another shard is
//! woken to write on its own thread, as before, so a broadcast's writes stay spread over the
//! shards that own the sockets instead of all landing on the sender's core.
//!
//! Order per sender holds because the process only offers a message past an empty inbox
//! (`wsrelay_process::Shortcut`) and the task takes the connection out before it pops one:
//! while an earlier message is queued or being written, the offer is refused and the message
//! queued behind it.

use std::pin::Pin;
use std::task::{ready, Context as TaskContext, Poll};

use parking_lot::{MappedMutexGuard, Mutex, MutexGuard};
use tokio::time::Sleep;
use wsrelay_process::{Message, Shortcut, Unbuilt};

/// What waits in a [`Parked`] slot: the relay's connection (a trait so that this module needs
/// nothing of the connection's but these calls).
pub(crate) trait Parkable: Send + 'static {
    /// What woke it.
    type Wake;

    /// Polls its sources for the next wake-up; `timer` is the task's.
    fn poll_wake(&mut self, cx: &mut TaskContext<'_>, timer: Pin<&mut Sleep>) -> Poll<Self::Wake>;

    /// Writes `msg` to the client now, or gives it back to be queued.
    fn take_message(&mut self, msg: Message) -> Result<(), Message>;

    /// Writes a message whose payload is not built yet to the client now; `false` to have
    /// the sender build it and send it as usual.
    fn take_unbuilt(&mut self, topic: &str, payload: &dyn Unbuilt) -> bool;
}

/// A connection's slot: holds the connection while its task waits (module docs).
pub(crate) struct Parked<C> {
    slot: Mutex<Slot<C>>,
}

struct Slot<C> {
    connection: Option<Box<C>>,
    /// The thread the connection's task parked it from ([`this_thread`]).
    thread: usize,
}

impl<C> Default for Parked<C> {
    fn default() -> Self {
        Parked {
            slot: Mutex::new(Slot {
                connection: None,
                thread: 0,
            }),
        }
    }
}

impl<C: Parkable> Parked<C> {
    /// Leaves `connection` here until its task's next wake-up.
    pub(crate) fn park(&self, connection: Box<C>) {
        // Read on every park: a task of a multi-thread runtime (an embedding app's) can move.
        let thread = this_thread();
        *self.slot.lock() = Slot {
            connection: Some(connection),
            thread,
        };
    }

    /// Polls the parked connection for its next wake-up and, when there is one, takes it
    /// back out for the task. `None`: the slot is empty, which only [`Unpark`] does.
    pub(crate) fn poll_wake(
        &self,
        cx: &mut TaskContext<'_>,
        timer: Pin<&mut Sleep>,
    ) -> Poll<Option<(Box<C>, C::Wake)>> {
        let mut slot = self.slot.lock();
        let Some(connection) = slot.connection.as_mut() else {
            return Poll::Ready(None);
        };
        let wake = ready!(connection.poll_wake(cx, timer));
        Poll::Ready(slot.connection.take().map(|connection| (connection, wake)))
    }

    /// The connection, if it is parked and of this thread; a task that runs (or another
    /// sender that writes) has the slot.
    fn parked_here(&self) -> Option<MappedMutexGuard<'_, C>> {
        let slot = self.slot.try_lock()?;
        if slot.thread == 0 || slot.thread != this_thread() {
            return None;
        }
        MutexGuard::try_map(slot, |slot| slot.connection.as_deref_mut()).ok()
    }
}

impl<C: Parkable> Shortcut for Parked<C> {
    /// Writes a `ws.send` to the client now if the connection is parked, idle and of this
    /// thread; otherwise the message is queued.
    fn offer(&self, msg: Message) -> Result<(), Message> {
        match self.parked_here() {
            Some(mut connection) => connection.take_message(msg),
            None => Err(msg),
        }
    }

    /// As [`offer`](Self::offer), before the payload is built.
    fn offer_unbuilt(&self, topic: &str, payload: &dyn Unbuilt) -> bool {
        self.parked_here()
            .is_some_and(|mut connection| connection.take_unbuilt(topic, payload))
    }
}

/// Empties the slot when dropped: a connection task dropped while its connection is parked
/// (its runtime stops) drops the connection too, instead of leaving it to the process's
/// shortcut, which lives as long as the process's table entry.
pub(crate) struct Unpark<'a, C>(pub(crate) &'a Parked<C>);

impl<C> Drop for Unpark<'_, C> {
    fn drop(&mut self) {
        // Taken out under the lock, dropped after it: the connection's drop takes other locks.
        let connection = self.0.slot.lock().connection.take();
        drop(connection);
    }
}

thread_local! {
    static HERE: u8 = const { 0 };
}

/// A token of the current thread, distinct among live threads (the address of a
/// thread-local); 0 while the thread's locals are being torn down (then nothing is written
/// by a sender).
fn this_thread() -> usize {
    HERE.try_with(|here| std::ptr::from_ref(here).addr())
        .unwrap_or(0)
}
